"""Scale: neighbour-sampled LightGCN on synthetic power-law graphs, and sampled against full-graph on Gowalla.

Two measurements, in one run:

1. **Synthetic power-law graphs** of 1M, 10M and 50M interactions (users = interactions / 20, items =
   interactions / 50; user activity lognormal, item popularity Zipf, each pair at most once). Each size is
   generated in one child process and trained in another, so each peak RSS (``os.wait4``) is that step's own.
   The training child does exactly what ``graphrec train --sampling neighbor`` does before and during an
   epoch, with the trainer's own parts: the LightGCN model with its normalised adjacency (``build_model``),
   the negative sampler, the neighbour sampler (``interaction_sampler``), the epoch's permutation and
   negatives for *every* training interaction (``SampledBatches.epoch``), then for a fixed number of batches
   after a warm-up each batch's subgraph and ``bpr_step`` (``embed_subgraph``, BPR + L2, backward, Adam).
   The epoch time is **extrapolated** as

   .. math::
       t_\\text{epoch} = t_\\text{epoch setup} + \\frac{t_\\text{timed batches}}{B_\\text{timed}}
       \\cdot \\frac{E_\\text{train}}{\\text{batch size}},

   and the cost per interaction is :math:`t_\\text{epoch} / E_\\text{train}`. Targets from the issue: 50M
   interactions train within 24 GiB, and the cost per interaction stays within 2x of the 1M graph's.
2. **Gowalla** (the LightGCN paper's split with its validation split): neighbour-sampled and full-graph
   LightGCN trained with ``graphrec.training.run.train`` for the same training-time budget each, selecting
   on validation; measured seconds per epoch, and test Recall@20 / NDCG@20 of the selected model.

Run: ``.venv/bin/python benchmarks/scale.py`` (about 40 minutes on 2 cores), ``--sizes 1M,10M``,
``--skip-gowalla``. Writes ``benchmarks/results/scale.{json,md,png}``; a partial run (other sizes, no
Gowalla) writes to ``results/smoke/``. ``--quick`` is the smoke test: a 50K-interaction graph, 3 timed
batches, and Gowalla on a 500-user excerpt for about a second of training each, into ``results/smoke/``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    DATA,
    RESULTS,
    columns_of,
    fmt_grouped,
    markdown_table,
    print_table,
    pyplot,
    results_dir,
    run_child,
    shown,
    tiny_gowalla,
    write_markdown,
    write_results,
)

HERE = Path(__file__).resolve().parent
GIB = 2**30
MEMORY_TARGET_GIB = 24.0
COST_RATIO_TARGET = 2.0

# A child runs one function of this module: ``python -c CHILD <function> <json arguments>``.
CHILD = ("import json, sys; sys.path.insert(0, {here!r}); import scale; "
         "print(json.dumps(getattr(scale, sys.argv[1])(**json.loads(sys.argv[2]))), flush=True)")


def call_child(function: str, **kwargs: Any) -> dict[str, Any]:
    """Run ``function(**kwargs)`` of this module in a fresh process; adds its wall time and peak RSS."""
    return run_child(CHILD.format(here=str(HERE)), function, json.dumps(kwargs))


# ------------------------------------------------------------------------------------------ generation
def power_law_interactions(num_interactions: int, seed: int = 0, users_per_interaction: float = 1 / 20,
                           items_per_interaction: float = 1 / 50, user_sigma: float = 1.0,
                           item_exponent: float = 0.8) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    r"""``num_interactions`` distinct (user, item) pairs of a synthetic power-law bipartite graph.

    User :math:`u` is drawn with probability proportional to :math:`a_u \sim \text{LogNormal}(0,
    \sigma^2)` (activity) and item :math:`i` with probability proportional to
    :math:`r_i^{-s}`, :math:`r` a random permutation of the ranks :math:`1..M` (Zipf popularity).
    Repeated pairs are collapsed and topped up with fresh draws, round by round, until there are
    exactly ``num_interactions``. Returns ``(users, items, num_users, num_items, rounds)``, the
    pairs sorted by user then item (int32).
    """
    rng = np.random.default_rng(seed)
    num_users = max(int(num_interactions * users_per_interaction), 1)
    num_items = max(int(num_interactions * items_per_interaction), 1)
    user_cdf = np.cumsum(rng.lognormal(0.0, user_sigma, num_users))
    user_cdf /= user_cdf[-1]
    item_cdf = np.cumsum(rng.permutation(np.arange(1, num_items + 1, dtype=np.float64) ** -item_exponent))
    item_cdf /= item_cdf[-1]
    keys = np.empty(0, dtype=np.int64)
    rounds = 0
    while len(keys) < num_interactions:
        rounds += 1
        if rounds > 50:
            raise RuntimeError(f"could not draw {num_interactions:,} distinct pairs in 50 rounds "
                               f"(have {len(keys):,}); the graph is too dense for these parameters")
        draws = int((num_interactions - len(keys)) * 1.05) + 1000
        users = np.searchsorted(user_cdf, rng.random(draws), side="right").astype(np.int64)
        items = np.searchsorted(item_cdf, rng.random(draws), side="right")
        keys = np.unique(np.concatenate([keys, users * num_items + items]))
        del users, items
    if len(keys) > num_interactions:  # drop the surplus uniformly, keep the user-major order
        keys = np.sort(keys[rng.permutation(len(keys))[:num_interactions]])
    return ((keys // num_items).astype(np.int32), (keys % num_items).astype(np.int32), num_users, num_items,
            rounds)


def generate(num_interactions: int, out: str, seed: int) -> dict[str, Any]:
    """Child: draw the graph and write ``users.npy``, ``items.npy`` and ``meta.json`` to ``out``."""
    started = time.perf_counter()
    users, items, num_users, num_items, rounds = power_law_interactions(num_interactions, seed)
    seconds = time.perf_counter() - started
    out_path = Path(out)
    out_path.mkdir(parents=True, exist_ok=True)
    np.save(out_path / "users.npy", users)
    np.save(out_path / "items.npy", items)
    user_degree = np.bincount(users, minlength=num_users)
    item_degree = np.bincount(items, minlength=num_items)
    meta = {"interactions": len(users), "users": num_users, "items": num_items, "rounds": rounds,
            "seconds": seconds, "users_with_interactions": int((user_degree > 0).sum()),
            "items_with_interactions": int((item_degree > 0).sum()),
            "user_degree": {"median": float(np.median(user_degree)), "max": int(user_degree.max())},
            "item_degree": {"median": float(np.median(item_degree)), "max": int(item_degree.max())},
            "top_1pct_items_share": float(np.sort(item_degree)[::-1][:max(num_items // 100, 1)].sum()
                                          / len(items))}
    # A scratch file, read back by the training child: plain json, so that this child imports no graphrec
    # (its peak RSS is reported as the generator's own).
    (out_path / "meta.json").write_text(json.dumps(meta))
    return meta


# ------------------------------------------------------------------------------------------ training
def measure_sampled_training(data: str, batch_size: int, batches: int, warmup: int, fanout: list[int],
                             dim: int, lr: float, reg: float, seed: int, threads: int,
                             sparse_embeddings: bool = True) -> dict[str, Any]:
    """Child: set up neighbour-sampled LightGCN training as the trainer does and time its steps."""
    import pandas as pd
    import torch

    from graphrec.data.dataset import SPLIT_DTYPE, Dataset
    from graphrec.models import ModelConfig, build_model
    from graphrec.training.batches import SampledBatches, interaction_sampler
    from graphrec.training.negatives import NegativeSampler
    from graphrec.training.optim import make_optimizer
    from graphrec.training.step import bpr_step

    torch.set_num_threads(threads)
    stages: list[dict[str, Any]] = []
    clock = [time.perf_counter()]

    def stage(name: str) -> None:
        now = time.perf_counter()
        stages.append({"stage": name, "seconds": now - clock[0], "peak_rss_so_far_mib": _peak_rss_mib()})
        clock[0] = now
        # On stderr, so that a child killed part-way (say, for memory) still tells how far it got.
        print(f"done: {name} ({stages[-1]['seconds']:.1f} s, peak RSS {stages[-1]['peak_rss_so_far_mib']:,.0f} MiB)",
              file=sys.stderr, flush=True)

    stage("python + torch + graphrec imported")
    path = Path(data)
    meta = json.loads((path / "meta.json").read_text())
    users_np, items_np = np.load(path / "users.npy"), np.load(path / "items.npy")
    interactions = pd.DataFrame({
        "user": users_np, "item": items_np,
        "split": pd.Categorical.from_codes(np.zeros(len(users_np), dtype=np.int8), dtype=SPLIT_DTYPE)})
    del users_np, items_np
    dataset = Dataset(name=path.name, interactions=interactions, items=pd.DataFrame(index=range(meta["items"])),
                      users=pd.DataFrame(index=range(meta["users"])))
    stage("dataset (all interactions are training interactions)")
    model = build_model(ModelConfig("lightgcn", dim=dim, layers=len(fanout)), dataset, seed=seed)
    stage("LightGCN with its normalised adjacency")
    # From here on, the trainer's own parts: its batch source in neighbour mode and its step.
    train_users_np, train_items_np = dataset.pairs("train")
    train_users, train_items = torch.from_numpy(train_users_np), torch.from_numpy(train_items_np)
    negatives = NegativeSampler(train_users, train_items, dataset.num_items, candidates=train_items)
    stage("negative sampler")
    # The trainer keeps only the sampler (its CSC copies), not the HeteroData it was built from.
    sampler = interaction_sampler(dataset, tuple(fanout), seed)
    stage("heterogeneous graph + neighbour sampler")
    # The trainer's default in neighbour mode on one process: sparse gradients, lazy Adam for the tables.
    optimizer = make_optimizer(model, lr, sparse_embeddings=sparse_embeddings)
    source = SampledBatches(sampler, train_users, train_items, negatives, batch_size, 1, torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    epoch_started = time.perf_counter()
    epoch = source.epoch(generator)
    epoch_setup_seconds = time.perf_counter() - epoch_started
    stage("epoch setup: permutation + one negative per interaction (all of them)")

    load_before = os.getloadavg()
    phases = ("sample", "forward", "backward", "adam")
    totals = dict.fromkeys(phases, 0.0)
    batch_seconds = []
    nodes = edges = 0
    losses = []
    marks: list[float] = []

    def mark(_: str = "") -> None:
        marks.append(time.perf_counter())

    for b in range(warmup + batches):
        marks.clear()
        mark()
        batch = next(epoch)
        mark()
        loss = bpr_step(model, batch, optimizer, reg=reg, phase=mark)
        losses.append(float(loss))
        if b >= warmup:
            for phase, start, stop in zip(phases, marks, marks[1:]):
                totals[phase] += stop - start
            batch_seconds.append(marks[-1] - marks[0])
            subgraph = batch.subgraph
            assert subgraph is not None
            nodes += sum(subgraph[t].num_nodes for t in subgraph.node_types)
            edges += sum(subgraph[e].num_edges for e in subgraph.edge_types)
    stage(f"{warmup} warm-up + {batches} timed batches")
    load_after = os.getloadavg()

    num_train = len(train_users)
    seconds_per_batch = sum(totals.values()) / batches
    batches_per_epoch = -(-num_train // batch_size)
    epoch_seconds = epoch_setup_seconds + seconds_per_batch * batches_per_epoch
    parameters = sum(p.numel() for p in model.parameters())
    return {
        "interactions": meta["interactions"], "users": meta["users"], "items": meta["items"],
        "train_interactions": num_train, "batch_size": batch_size, "fanout": list(fanout), "dim": dim,
        "layers": len(fanout), "threads": threads, "sparse_embeddings": sparse_embeddings,
        "warmup_batches": warmup, "timed_batches": batches,
        "seconds_per_batch": seconds_per_batch, "seconds_per_batch_std": float(np.std(batch_seconds)),
        "phase_seconds_per_batch": {phase: totals[phase] / batches for phase in phases},
        "subgraph_nodes_per_batch": nodes / batches, "subgraph_edges_per_batch": edges / batches,
        "epoch_setup_seconds": epoch_setup_seconds, "batches_per_epoch": batches_per_epoch,
        "extrapolated_epoch_seconds": epoch_seconds,
        "extrapolated_cost_us_per_interaction": 1e6 * epoch_seconds / num_train,
        "setup_seconds": sum(s["seconds"] for s in stages[1:4]),
        "parameters": parameters, "adjacency_nonzeros": int(model.adjacency.values().numel()),
        "loss_first_last": [losses[0], losses[-1]], "stages": stages,
        # Other work on the machine slows the timings; the 1-minute load averages say how busy it was.
        "load_average_before_after": [load_before[0], load_after[0]],
    }


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------ Gowalla
def train_gowalla(data: str, sampling: str, minutes: float, batch_size: int, fanout: list[int], layers: int,
                  lr: float, reg: float, eval_every: int, threads: int) -> dict[str, Any]:
    """Child: ``train()`` LightGCN on the converted Gowalla for ``minutes`` of training time."""
    import torch

    from graphrec.data.dataset import load_dataset
    from graphrec.training.run import ModelConfig, TrainConfig, train

    torch.set_num_threads(threads)
    dataset = load_dataset(data)
    config = TrainConfig(epochs=100_000, batch_size=batch_size, lr=lr, reg=reg, seed=2020, eval_every=eval_every,
                         patience=100_000, eval_ks=(20,), max_minutes=minutes, progress=False, sampling=sampling,
                         fanout=tuple(fanout))
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    run = train(dataset, ModelConfig("lightgcn", dim=64, layers=layers), config,
                log=lambda line: print(line, file=sys.stderr, flush=True))
    wall = time.perf_counter() - started
    epochs = run.metrics["epochs"]
    # A time-out may stop the last epoch part-way, so it does not count towards seconds per epoch.
    complete = epochs[:-1] if "time budget" in run.metrics["stopped_reason"] else epochs
    elapsed, curve = 0.0, []
    for e in epochs:
        elapsed += e["seconds"]
        if e["valid"]:
            curve.append({"epoch": e["epoch"], "train_seconds": elapsed, "valid_recall@20": e["valid"]["recall@20"]})
    return {"sampling": sampling, "batch_size": batch_size, "layers": layers,
            "fanout": list(fanout) if sampling == "neighbor" else None, "lr": lr, "reg": reg,
            "budget_minutes": minutes, "epochs_run": len(epochs), "complete_epochs": len(complete),
            "seconds_per_epoch": sum(e["seconds"] for e in complete) / len(complete) if complete else None,
            "train_seconds": run.metrics["train_seconds"], "wall_seconds_all_in": wall,
            "best_epoch": run.metrics["best_epoch"], "valid": run.metrics["valid"], "test": run.metrics["test"],
            "stopped_reason": run.metrics["stopped_reason"], "curve": curve,
            "load_average_before_after": [load_before, os.getloadavg()[0]]}


# ------------------------------------------------------------------------------------------ driver
def parse_size(text: str) -> int:
    text = text.strip().upper().replace("_", "")
    scale = {"K": 10**3, "M": 10**6}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KM" else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        raise SystemExit(f"--sizes: cannot read {text!r}; use numbers like 1M,10M,50M or 250K") from None
    if value < 1000:
        raise SystemExit(f"--sizes: {text!r} is too small (at least 1K interactions)")
    return value


def label(n: int) -> str:
    return f"{n // 10**6}M" if n % 10**6 == 0 else f"{n / 10**6:g}M" if n >= 10**6 else f"{n // 1000}K"


def run_scale(sizes: list[int], args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        directory = work / f"powerlaw-{label(n)}"
        row: dict[str, Any] = {"size": label(n)}
        print(f"\n[{label(n)}] generating ...", flush=True)
        try:
            generated = call_child("generate", num_interactions=n, out=str(directory), seed=args.seed)
            row["generate"] = generated
            print(f"[{label(n)}] {generated['interactions']:,} interactions, {generated['users']:,} users, "
                  f"{generated['items']:,} items in {generated['seconds']:.1f} s (peak "
                  f"{generated['peak_rss_mib'] / 1024:.2f} GiB); training {args.batches} batches ...", flush=True)
            trained = call_child("measure_sampled_training", data=str(directory), batch_size=args.batch_size,
                                 batches=args.batches, warmup=args.warmup, fanout=args.fanout, dim=args.dim,
                                 lr=args.lr, reg=args.reg, seed=args.seed, threads=args.threads,
                                 sparse_embeddings=not args.dense_adam)
            row["train"] = trained
            print(f"[{label(n)}] {trained['seconds_per_batch']:.3f} s/batch, epoch ~ "
                  f"{trained['extrapolated_epoch_seconds'] / 60:.1f} min (extrapolated), peak "
                  f"{trained['peak_rss_mib'] / 1024:.2f} GiB", flush=True)
        except RuntimeError as exc:  # a child that fails (e.g. killed for memory) is reported, not hidden
            row["error"] = str(exc)[-2000:]
            if "Traceback" not in row["error"]:
                row["error"] += "\n(no Python traceback: the process was killed, e.g. by the out-of-memory killer)"
            print(f"[{label(n)}] FAILED: {row['error']}", flush=True)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        rows.append(row)
    baseline = next((r["train"]["extrapolated_cost_us_per_interaction"] for r in rows if "train" in r), None)
    for row in rows:
        if "train" in row and baseline:
            row["cost_vs_smallest"] = row["train"]["extrapolated_cost_us_per_interaction"] / baseline
    return rows


def scale_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for row in rows:
        gen, train = row.get("generate", {}), row.get("train")
        if train is None:
            table.append({"size": row["size"], "interactions": gen.get("interactions"), "status": "FAILED"})
            continue
        phases = train["phase_seconds_per_batch"]
        table.append({
            "size": row["size"], "interactions": train["train_interactions"], "users": train["users"],
            "items": train["items"], "gen peak GiB": gen["peak_rss_mib"] / 1024,
            "train peak GiB": train["peak_rss_mib"] / 1024, "setup s": train["setup_seconds"],
            "s/batch": train["seconds_per_batch"], "s/batch std": train["seconds_per_batch_std"],
            "subgraph edges/batch": round(train["subgraph_edges_per_batch"]),
            "sample/fwd/bwd/adam s": "/".join(f"{phases[p]:.3f}" for p in ("sample", "forward", "backward", "adam")),
            "epoch min (extrap.)": train["extrapolated_epoch_seconds"] / 60,
            "us/interaction": train["extrapolated_cost_us_per_interaction"],
            "x smallest": row["cost_vs_smallest"],
            "load avg": "/".join(f"{v:.1f}" for v in train["load_average_before_after"]), "status": "ok"})
    return table


def run_gowalla(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from graphrec.data.convert import convert

    source = tiny_gowalla(work / "tiny-gowalla") if args.quick else DATA / "gowalla"
    started = time.perf_counter()
    convert("lightgcn", source, work / "gowalla", reader_options={"validation_dir": "validation"})
    convert_seconds = time.perf_counter() - started
    runs = {}
    for sampling in ("neighbor", "full"):
        print(f"\n[gowalla] {sampling}: training for {args.gowalla_minutes:g} minutes ...", flush=True)
        runs[sampling] = call_child("train_gowalla", data=str(work / "gowalla"), sampling=sampling,
                                    minutes=args.gowalla_minutes, batch_size=args.gowalla_batch_size,
                                    fanout=args.gowalla_fanout, layers=len(args.gowalla_fanout),
                                    lr=args.gowalla_lr, reg=args.reg, eval_every=args.gowalla_eval_every,
                                    threads=args.threads)
        result = runs[sampling]
        print(f"[gowalla] {sampling}: {result['complete_epochs']} complete epochs, {result['seconds_per_epoch']} "
              f"s/epoch, test recall@20 {result['test']['recall@20']:.4f}", flush=True)
    sampled, full = runs["neighbor"]["seconds_per_epoch"], runs["full"]["seconds_per_epoch"]
    return {"convert_seconds": convert_seconds, "runs": runs,
            "sampled_vs_full_epoch_time": sampled / full if sampled and full else None}


def gowalla_table(gowalla: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"training": "neighbour-sampled " + ",".join(map(str, r["fanout"])) if r["fanout"] else "full graph",
             "batch": r["batch_size"], "layers": r["layers"], "s/epoch": r["seconds_per_epoch"],
             "epochs in budget": r["epochs_run"], "budget min": r["budget_minutes"], "best epoch": r["best_epoch"],
             "valid recall@20": r["valid"]["recall@20"], "test recall@20": r["test"]["recall@20"],
             "test ndcg@20": r["test"]["ndcg@20"], "peak GiB": r["peak_rss_mib"] / 1024,
             "load avg": "/".join(f"{v:.1f}" for v in r["load_average_before_after"])}
            for r in gowalla["runs"].values()]


def write_scale_markdown(path: Path, scale_rows: list[dict[str, Any]], verdicts: list[str],
                   gowalla_rows: list[dict[str, Any]] | None, notes: list[str]) -> None:
    lines = ["# Scale benchmark", "", "Written by `benchmarks/scale.py`; the numbers are in `scale.json`.", "",
             "## Synthetic power-law graphs, neighbour-sampled LightGCN", ""]
    lines += markdown_table(scale_rows, cell=fmt_grouped) + [""] + [f"- {v}" for v in verdicts]
    if gowalla_rows:
        lines += ["", "## Gowalla: neighbour-sampled against full-graph LightGCN, same training-time budget", ""]
        lines += markdown_table(gowalla_rows, cell=fmt_grouped)
    lines += ["", "## Notes", ""] + [f"- {note}" for note in notes]
    write_markdown(path, "\n".join(lines) + "\n")


def plot(path: Path, rows: list[dict[str, Any]], gowalla: dict[str, Any] | None) -> None:
    plt = pyplot()
    ok = [r for r in rows if "train" in r]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), constrained_layout=True)
    loads = [v for r in ok for v in r["train"]["load_average_before_after"]]
    if gowalla:
        loads += [v for r in gowalla["runs"].values() for v in r["load_average_before_after"]]
    if loads:
        fig.suptitle(f"{os.cpu_count()} CPU cores shared with other work: 1-minute load average "
                     f"{min(loads):.1f} to {max(loads):.1f} while timing", fontsize=10)
    x = [r["train"]["train_interactions"] for r in ok]
    cost = [r["train"]["extrapolated_cost_us_per_interaction"] for r in ok]
    spread = [1e6 * r["train"]["seconds_per_batch_std"] * r["train"]["batches_per_epoch"]
              / r["train"]["train_interactions"] for r in ok]

    ax = axes[0, 0]
    ax.errorbar(x, cost, yerr=spread, fmt="o-", capsize=4,
                label="sampled epoch, extrapolated (bars: 1 s.d. of single batches)")
    if cost:
        ax.axhline(COST_RATIO_TARGET * cost[0], color="tab:red", ls="--",
                   label=f"target: {COST_RATIO_TARGET:g}x the {ok[0]['size']} cost")
    for xi, ci, r in zip(x, cost, ok):
        ax.annotate(f"{ci:,.0f} µs\n{r['train']['extrapolated_epoch_seconds'] / 60:,.0f} min/epoch", (xi, ci),
                    textcoords="offset points", xytext=(8, -4), ha="left", va="top", fontsize=8)
    ax.set(xscale="log", xlabel="training interactions", ylabel="µs per training interaction",
           title="Training time per interaction (neighbour-sampled LightGCN)")
    ax.set_ylim(0, max([c + e for c, e in zip(cost, spread)] + [COST_RATIO_TARGET * cost[0] if cost else 1]) * 1.25)
    ax.set_xlim(min(x, default=1e6) / 2, max(x, default=1e6) * 3)
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[0, 1]
    train_peak = [r["train"]["peak_rss_mib"] / 1024 for r in ok]
    gen_peak = [r["generate"]["peak_rss_mib"] / 1024 for r in ok]
    ax.plot(x, train_peak, "o-", label="training process")
    ax.plot(x, gen_peak, "s:", color="gray", label="generator process")
    ax.axhline(MEMORY_TARGET_GIB, color="tab:red", ls="--", label=f"target: {MEMORY_TARGET_GIB:g} GiB")
    for xi, peak in zip(x, train_peak):
        ax.annotate(f"{peak:.1f} GiB", (xi, peak), textcoords="offset points", xytext=(0, 8), ha="center",
                    fontsize=8)
    ax.set(xscale="log", xlabel="training interactions", ylabel="peak RSS (GiB)", title="Peak memory per process",
           ylim=(0, MEMORY_TARGET_GIB * 1.15), xlim=(min(x, default=1e6) / 2, max(x, default=1e6) * 3))
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[1, 0]
    bottom = np.zeros(len(ok))
    positions = np.arange(len(ok))
    for phase, colour in zip(("sample", "forward", "backward", "adam"),
                             ("tab:blue", "tab:orange", "tab:green", "tab:purple")):
        values = np.array([r["train"]["phase_seconds_per_batch"][phase] for r in ok])
        ax.bar(positions, values, bottom=bottom, color=colour, label=phase)
        bottom += values
    for position, r, height in zip(positions, ok, bottom):
        ax.annotate(f"{r['train']['subgraph_edges_per_batch'] / 1e6:.2f}M sampled edges", (position, height),
                    textcoords="offset points", xytext=(0, 4), ha="center", fontsize=8)
    ax.set_xticks(positions, [r["size"] for r in ok])
    batch_size = ok[0]["train"]["batch_size"] if ok else ""
    ax.set(xlabel="synthetic graph (interactions)", ylabel="seconds per batch",
           title=f"Where the time of a batch of {batch_size} goes", ylim=(0, max(bottom, default=1) * 1.2))
    ax.legend(fontsize=8, loc="upper left")

    ax = axes[1, 1]
    if gowalla:
        for r in gowalla["runs"].values():
            curve = r["curve"]
            text = f"sampled {','.join(map(str, r['fanout']))}" if r["fanout"] else "full graph"
            speed = ("no epoch completed" if r["seconds_per_epoch"] is None
                     else f"{r['seconds_per_epoch']:.0f} s/epoch")
            ax.plot([p["train_seconds"] / 60 for p in curve], [p["valid_recall@20"] for p in curve], "o-", ms=6,
                    label=f"{text}: {speed}; test Recall@20 {r['test']['recall@20']:.4f}")
        budget = max(r["budget_minutes"] for r in gowalla["runs"].values())
        ax.axvline(budget, color="gray", ls=":", label=f"budget: {budget:g} training minutes each")
        ax.set(xlabel="training minutes (validation passes not counted)", ylabel="validation Recall@20",
               title="Gowalla, 3-layer LightGCN: sampled vs full graph, same budget", xlim=(0, budget * 1.08))
        ax.set_ylim(0, ax.get_ylim()[1] * 1.2)
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "Gowalla part skipped (--skip-gowalla)", ha="center", va="center")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M,50M", help="interactions per synthetic graph, e.g. 1M,10M,50M")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per size (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--fanout", default="10,10", help="neighbours per hop; the number of hops is the layers")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--reg", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-gowalla", action="store_true")
    parser.add_argument("--dense-adam", action="store_true",
                        help="dense Adam over every parameter instead of the trainer's sparse embedding updates")
    parser.add_argument("--gowalla-minutes", type=float, default=8.0, help="training-time budget of each run")
    parser.add_argument("--gowalla-batch-size", type=int, default=8192)
    parser.add_argument("--gowalla-fanout", default="10,10,10",
                        help="sampled run's fan-out; both runs use this many layers")
    parser.add_argument("--gowalla-lr", type=float, default=0.005)
    parser.add_argument("--gowalla-eval-every", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: a 50K graph, 3 batches, Gowalla excerpt for ~1 s each (results/smoke/)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--replot", action="store_true",
                        help="measure nothing: rewrite the tables, scale.md and scale.png from scale.json")
    args = parser.parse_args()
    if args.replot:
        from graphrec.data.storage import write_json

        path = RESULTS / "scale.json"
        payload = json.loads(path.read_text())
        publish(payload)
        write_json(path, payload)
        return
    args.fanout = [int(f) for f in args.fanout.split(",")]
    args.gowalla_fanout = [int(f) for f in args.gowalla_fanout.split(",")]
    if args.quick:
        args.sizes, args.batches, args.warmup = "50K", 3, 1
        args.gowalla_minutes = min(args.gowalla_minutes, 0.01)
    # A smoke run, a subset of the sizes or no Gowalla must not replace the committed results of the full run.
    partial = args.quick or args.sizes != parser.get_default("sizes") or args.skip_gowalla
    out_dir = results_dir(partial)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    work = Path(tempfile.mkdtemp(prefix="graphrec-scale-", dir=args.work))
    started = time.perf_counter()
    try:
        rows = run_scale(sizes, args, work)
        gowalla = None if args.skip_gowalla else run_gowalla(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = [
        f"Machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB, "
        f"shared with other work (load averages in the tables); torch threads {args.threads}. Batch {args.batch_size}, "
        f"fan-out {','.join(map(str, args.fanout))} ({len(args.fanout)} LightGCN layers), dim {args.dim}; "
        + ("dense Adam." if args.dense_adam else
           "lazy Adam (LazyAdam) on the embedding tables (the trainer default for neighbour sampling)."),
        "Epoch time = epoch setup (measured over all interactions) + measured seconds per batch x batches per "
        f"epoch; each size timed {args.batches} batches after {args.warmup} warm-up batches. Not a full epoch.",
        "Peak RSS is each child process's own (os.wait4): the training child holds the dataset, LightGCN's "
        "normalised adjacency, the negative sampler's keys, the HeteroData graph (while the sampler is built), "
        "the sampler's CSC copies, the embeddings with the optimiser's moments and the epoch's permutation and "
        "negatives.",
        "Synthetic graphs: users = interactions / 20, items = interactions / 50, lognormal(0, 1) user activity, "
        "Zipf(0.8) item popularity, distinct pairs; every interaction is a training interaction.",
    ]
    if gowalla:
        notes.append("Gowalla: train() with the validation split for model selection; the budget counts training "
                     "seconds (validation passes are extra); test metrics are those of the best validation epoch; "
                     "seconds per epoch exclude the last epoch when the budget cut it short.")
    payload = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "targets": {"memory_gib": MEMORY_TARGET_GIB, "cost_ratio": COST_RATIO_TARGET},
               "synthetic": rows, "gowalla": gowalla, "notes": notes,
               "total_wall_seconds": time.perf_counter() - started}
    publish(payload, out_dir)
    write_results("scale", payload, out_dir)
    print(f"wrote {shown(out_dir)}/scale.md and scale.png ({(time.perf_counter() - started) / 60:.1f} min)")
    failed = [row["size"] for row in rows if "error" in row]
    if failed and args.quick:  # a full run reports a size that fails (say, out of memory) as one of its results
        sys.exit(f"quick run: training on the {', '.join(failed)} graph failed (the error is above)")


def publish(payload: dict[str, Any], out_dir: Path = RESULTS) -> None:
    """Print the tables and verdicts, add them to ``payload``, and write ``scale.md`` and ``scale.png``."""
    rows, gowalla = payload["synthetic"], payload["gowalla"]
    table = scale_table(rows)
    print("\nSynthetic power-law graphs, neighbour-sampled LightGCN (epoch time extrapolated from timed batches)\n")
    print_table(table, columns_of(table))
    verdicts = verdict_lines(rows, gowalla)
    gowalla_rows = None
    if gowalla:
        gowalla_rows = gowalla_table(gowalla)
        print("\nGowalla, LightGCN, same training-time budget (seconds per epoch measured)\n")
        print_table(gowalla_rows, list(gowalla_rows[0]))
    print()
    for line in verdicts:
        print("- " + line)
    payload["synthetic_table"], payload["verdicts"] = table, verdicts
    out_dir.mkdir(parents=True, exist_ok=True)
    write_scale_markdown(out_dir / "scale.md", table, verdicts, gowalla_rows, payload["notes"])
    plot(out_dir / "scale.png", rows, gowalla)


def verdict_lines(rows: list[dict[str, Any]], gowalla: dict[str, Any] | None) -> list[str]:
    out = []
    for row in rows:
        if "error" in row:
            lines = row["error"].strip().splitlines()
            reached = [line for line in lines if line.startswith("done: ")]
            where = f" after {reached[-1][6:]}" if reached else ""
            out.append(f"{row['size']}: FAILED{where}: {lines[-1][:300]}")
    ok = [r for r in rows if "train" in r]
    if not ok:
        return out
    largest = ok[-1]
    peak = largest["train"]["peak_rss_mib"] / 1024
    out.append(f"memory: {largest['size']} trains with a peak of {peak:.1f} GiB: "
               f"{'within' if peak <= MEMORY_TARGET_GIB else 'OVER'} the {MEMORY_TARGET_GIB:g} GiB target")
    ratio = largest["cost_vs_smallest"]
    if len(ok) == 1:
        out.append(f"cost per interaction: one graph size only, nothing to compare against the "
                   f"{COST_RATIO_TARGET:g}x target")
    else:
        out.append(f"cost per interaction: {largest['size']} costs {ratio:.2f}x the {ok[0]['size']} graph per "
                   f"interaction: {'within' if ratio <= COST_RATIO_TARGET else 'OVER'} the "
                   f"{COST_RATIO_TARGET:g}x target")
    if len(ok) > 1:
        first, last = ok[0]["train"], largest["train"]
        edges = last["subgraph_edges_per_batch"] / first["subgraph_edges_per_batch"]
        phases = ", ".join(
            f"{phase} {last['phase_seconds_per_batch'][phase] / first['phase_seconds_per_batch'][phase]:.1f}x"
            for phase in first["phase_seconds_per_batch"])
        reach = "; ".join(
            f"{r['size']} {r['train']['subgraph_nodes_per_batch']:,.0f} of "
            f"{r['train']['users'] + r['train']['items']:,} nodes "
            f"({r['train']['subgraph_nodes_per_batch'] / (r['train']['users'] + r['train']['items']):.0%})" for r in ok)
        out.append(f"why: the work of a batch grows with the distinct nodes its sampled subgraph reaches (each is "
                   f"looked up, gets a sparse gradient row and an optimiser update), and a batch of "
                   f"{first['batch_size']:,} triplets with fan-out {','.join(map(str, first['fanout']))} reaches: "
                   f"{reach}. On the small graph the neighbourhoods overlap and nearly every batch covers the "
                   f"whole graph, which makes its cost per interaction low; per batch, {largest['size']} against "
                   f"{ok[0]['size']}: {edges:.1f}x the edges, {phases}")
        if len(ok) > 2:
            before = ok[-2]
            tail = largest["train"]["extrapolated_cost_us_per_interaction"] / before["train"][
                "extrapolated_cost_us_per_interaction"]
            out.append(f"between the two largest graphs, where batches overlap less: {largest['size']} costs "
                       f"{tail:.2f}x the {before['size']} graph per interaction")
    if gowalla:
        sampled, full = gowalla["runs"]["neighbor"], gowalla["runs"]["full"]
        if gowalla.get("sampled_vs_full_epoch_time"):
            out.append(f"Gowalla: a sampled epoch takes {gowalla['sampled_vs_full_epoch_time']:.1f}x a full-graph "
                       f"epoch; after {full['budget_minutes']:g} training minutes each, test Recall@20 is "
                       f"{sampled['test']['recall@20']:.4f} sampled and {full['test']['recall@20']:.4f} full graph")
    return out


if __name__ == "__main__":
    main()

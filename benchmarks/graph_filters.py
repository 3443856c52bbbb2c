"""Training-free graph filters against LightGCN, side by side on the same splits: accuracy, all-in
time and peak memory.

Each run is one fresh process (so its peak RSS is its own) that reads the converted dataset, builds
the model, chooses its options on the **validation** split, refits the chosen configuration on
train + valid (the refit protocol, ``--refit``) and tests it. "All in" is that child's wall time
from reading the converted dataset to the test metrics. LightGCN follows the Gowalla recipe of
``gowalla_lightgcn.py`` (time budget ``--lightgcn-minutes``, then its refit for the selected
epochs); its row without refit comes from the same run (``test_without_refit``).

Datasets: Gowalla (LightGCN split with its validation split), MovieLens-1M binarised, Amazon Baby
5-core (``../shared/data``). Published figures on Gowalla for comparison: GF-CF 0.1849 / 0.1518
(Shen et al., CIKM 2021), BSPM-EM 0.1920 / 0.1597 (Choi et al., SIGIR 2023), LightGCN 0.1830 /
0.1554 (He et al., SIGIR 2020), Recall@20 / NDCG@20, all trained on the whole ``train.txt``.

Run: ``.venv/bin/python benchmarks/graph_filters.py`` (the filters on the three datasets, minutes);
``--models gfcf,bspm,lightgcn`` adds LightGCN (about an hour a dataset on two cores). ``--quick``:
the filters on a 500-user Gowalla excerpt, written to ``results/smoke/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    DATA,
    fmt_4f,
    markdown_table,
    print_table,
    results_dir,
    run_child,
    tiny_gowalla,
    write_markdown,
    write_results,
)

#: dataset name -> (format, folder under DATA, reader options)
DATASETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "gowalla": ("lightgcn", "gowalla", {"validation_dir": "validation"}),
    "ml-1m": ("lightgcn", "ml-1m-lightgcn", {}),
    "amazon-baby": ("json-split", "amazon-baby-5core", {}),
}
PUBLISHED = {("gowalla", "gfcf"): (0.1849, 0.1518), ("gowalla", "bspm"): (0.1920, 0.1597),
             ("gowalla", "lightgcn"): (0.1830, 0.1554)}
#: (dataset, model) -> (minimum test Recall@20, maximum seconds all in); and the memory bound on Gowalla.
TARGETS = {("gowalla", "gfcf"): (0.1849, 120.0), ("gowalla", "bspm"): (0.190, 300.0)}
MAX_GOWALLA_RSS_MIB = 4096

CHILD = """
import json, sys, time
started = time.perf_counter()
from graphrec.data.dataset import load_dataset
from graphrec.training.run import ModelConfig, TrainConfig, train
dataset = load_dataset(sys.argv[1])
model, train_options = sys.argv[2], json.loads(sys.argv[3])
run = train(dataset, ModelConfig(model, json.loads(sys.argv[4])), TrainConfig(**train_options), log=lambda _: None)
m = run.metrics
print(json.dumps({"seconds_all_in": time.perf_counter() - started, "valid": m["valid"], "test": m["test"],
                  "test_without_refit": m.get("test_without_refit"), "selection": m.get("selection"),
                  "model_config": m["model_config"], "best_epoch": m["best_epoch"], "train_seconds": m["train_seconds"],
                  "refit_seconds": m.get("refit", {}).get("train_seconds")}))
"""


def train_options(model: str, minutes: float, quick: bool) -> dict[str, Any]:
    common = {"refit": True, "progress": False, "eval_ks": [20], "select_metric": "recall@20", "seed": 2020}
    if model != "lightgcn":
        return common
    # gowalla_lightgcn.py's recipe
    return {**common, "batch_size": 16384, "lr": 0.01, "num_negatives": 4, "lr_decay_patience": 1,
            "eval_every": 1 if quick else 10, "patience": 1_000, "max_minutes": minutes,
            "epochs": 2 if quick else 10_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default="gfcf,bspm")
    parser.add_argument("--lightgcn-minutes", type=float, default=26.5, help="LightGCN's training budget")
    parser.add_argument("--quick", action="store_true", help="smoke test on a 500-user Gowalla excerpt")
    args = parser.parse_args()
    names = ["gowalla"] if args.quick else [name for name in args.datasets.split(",") if name]
    models = [name for name in args.models.split(",") if name]
    out_dir = results_dir(partial=args.quick or names != list(DATASETS))
    work = Path(tempfile.mkdtemp(prefix="graphrec-filters-"))
    rows = []
    try:
        from graphrec.data.convert import ConvertConfig, convert

        for name in names:
            form, folder, reader_options = DATASETS[name]
            source = tiny_gowalla(work / "tiny") if args.quick else DATA / folder
            converted = work / name
            convert(form, source, converted, ConvertConfig(split="given"), reader_options=reader_options,
                    log=lambda _: None)
            for model in models:
                result = run_child(CHILD, str(converted), model,
                                   json.dumps(train_options(model, args.lightgcn_minutes, args.quick)), "{}")
                rows += result_rows(name, model, result)
                print_table(rows[-1:], list(rows[-1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    columns = ["dataset", "model", "protocol", "chosen", "valid recall@20", "test recall@20", "test ndcg@20",
               "published", "all-in s", "peak RSS MiB"]
    print_table(rows, columns)
    verdicts = targets(rows)
    for line in verdicts:
        print(line)
    write_results("graph_filters", {"rows": rows, "targets": verdicts}, out_dir)
    table = markdown_table(rows, columns, cell=fmt_4f)
    write_markdown(out_dir / "graph_filters.md", "\n".join(
        ["# Graph filters against LightGCN", "", f"`{' '.join(['python', *sys.argv])}`", "", *table, "",
         *(f"- {line}" for line in verdicts)]) + "\n")


def result_rows(dataset: str, model: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    published = PUBLISHED.get((dataset, model))
    chosen = (result["selection"] or {}).get("chosen") or {}
    base = {"dataset": dataset, "model": model, "chosen": ", ".join(f"{k}={v}" for k, v in chosen.items()),
            "valid recall@20": result["valid"]["recall@20"],
            "published": "" if published is None else f"{published[0]:.4f} / {published[1]:.4f}",
            "all-in s": result["seconds_all_in"], "peak RSS MiB": result["peak_rss_mib"],
            "best epoch": result["best_epoch"], "train s": result["train_seconds"], "refit s": result["refit_seconds"]}
    rows = [{**base, "protocol": "refit", "test recall@20": result["test"]["recall@20"],
             "test ndcg@20": result["test"]["ndcg@20"]}]
    if result["test_without_refit"] is not None:
        rows.append({**base, "protocol": "validation only", "test recall@20": result["test_without_refit"]["recall@20"],
                     "test ndcg@20": result["test_without_refit"]["ndcg@20"]})
    return rows


def targets(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for (dataset, model), (recall, seconds) in TARGETS.items():
        found = [row for row in rows if (row["dataset"], row["model"], row["protocol"]) == (dataset, model, "refit")]
        if not found:
            continue
        row = found[0]
        met = row["test recall@20"] >= recall and row["all-in s"] <= seconds
        lines.append(f"{model} on {dataset}: test Recall@20 {row['test recall@20']:.4f} (target >= {recall}), "
                     f"{row['all-in s']:.0f} s all in (target <= {seconds:.0f} s): {'met' if met else 'NOT met'}")
    gowalla = [row for row in rows if row["dataset"] == "gowalla" and row["protocol"] == "refit"]
    if gowalla:
        peak = max(row["peak RSS MiB"] for row in gowalla)
        lines.append(f"peak RSS on Gowalla {peak:,.0f} MiB (target <= {MAX_GOWALLA_RSS_MIB:,} MiB): "
                     f"{'met' if peak <= MAX_GOWALLA_RSS_MIB else 'NOT met'}")
    return lines


if __name__ == "__main__":
    main()

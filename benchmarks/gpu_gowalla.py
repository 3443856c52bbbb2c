"""Gowalla LightGCN on a GPU: to convergence within a time budget, and sampled against full-graph epochs.

Trains LightGCN (3 layers, dim 64, batch 2048, lr 1e-3, reg 1e-4: the paper's setting) with the
validation split for early stopping, in chunks of ``--chunk`` epochs (resumed from the checkpoint,
which is exact), testing the validation-selected model after each chunk, so the curve shows test
Recall@20 / NDCG@20 against training time. Then times an epoch of neighbour-sampled training
(fan-out 10,10,10), with the sampling on the CPU and on the GPU, against a full-graph epoch on the
same device, in the same run (the second of two epochs each, so that start-up costs are left out).
``--speed-only`` skips the curve.

Run on a GPU machine: ``python benchmarks/gpu_gowalla.py --data DIR_WITH_gowalla --minutes 7``.
It wrote ``results/gpu_gowalla_h100_lr*.json``; ``--speed-only --batch-size 2048`` (and 8192) wrote
``results/gpu_gowalla_h100_sampling_b*.json``. For the accuracy run, ``gowalla_lightgcn.py --device
cuda`` now does the same on a GPU without restarting from checkpoints (it replays the test metric
from snapshots; ``results/gowalla_lightgcn_h100.json``); what only this script measures is the
sampled against full-graph epoch on the device.

``--quick`` is the smoke test: a 500-user Gowalla-format excerpt (no ``--data`` needed), one chunk of
2 epochs, written to ``results/smoke/gpu_gowalla.json``. Without a GPU it runs the CPU path and says so
(the arm that samples on the GPU is left out).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from _common import SMOKE_RESULTS, print_table, tiny_gowalla

from graphrec.data.convert import convert
from graphrec.data.storage import write_json
from graphrec.training.run import ModelConfig, TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder holding gowalla/ (required but with --quick)")
    parser.add_argument("--out", type=Path, default=None,
                        help="result file (default gpu_gowalla.json; with --quick results/smoke/gpu_gowalla.json)")
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--chunk", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-negatives", type=int, default=1,
                        help="negatives per interaction (the CPU benchmark's recipe uses 4)")
    parser.add_argument("--lr-decay-patience", type=int, default=None,
                        help="halve the learning rate after this many non-improving validation checks")
    parser.add_argument("--speed-only", action="store_true", help="only time the epochs (no accuracy curve)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: a small Gowalla excerpt, one chunk of 2 epochs (no --data needed)")
    args = parser.parse_args()
    if args.data is None and not args.quick:
        parser.error("--data is required (except with --quick)")
    if args.quick:
        args.minutes, args.chunk = 0.01, 2  # one chunk: the loop runs once before it looks at the clock
    if args.out is None:
        args.out = SMOKE_RESULTS / "gpu_gowalla.json" if args.quick else Path("gpu_gowalla.json")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        print("no CUDA device: everything runs on the CPU, and the arm that samples on the GPU is left out",
              flush=True)
    work = Path(tempfile.mkdtemp())
    try:
        run_benchmark(args, device, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_benchmark(args: argparse.Namespace, device: str, work: Path) -> None:
    """Convert Gowalla into ``work``, train the accuracy curve, time the epochs, write ``args.out``."""
    source = tiny_gowalla(work / "tiny-gowalla") if args.quick else args.data / "gowalla"
    dataset = convert("lightgcn", source, work / "gowalla", reader_options={"validation_dir": "validation"}).dataset
    model = ModelConfig("lightgcn", dim=64, layers=3)
    wall = time.perf_counter()
    curve, first_018, first_017 = [], None, None
    epochs = 0
    run = None
    while not args.speed_only and time.perf_counter() - wall < args.minutes * 60:
        epochs += args.chunk
        run = train(dataset, model, TrainConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr, reg=1e-4,
                                                 eval_every=5, patience=10, eval_ks=(20,), device=device,
                                                 progress=False, num_negatives=args.num_negatives,
                                                 lr_decay_patience=args.lr_decay_patience),
                    out=work / "run", resume=epochs > args.chunk, log=lambda _: None)
        m = run.metrics
        point = {"epochs": epochs, "train_seconds": m["train_seconds"], "wall_seconds": time.perf_counter() - wall,
                 "best_epoch": m["best_epoch"], "valid_recall@20": m["valid"]["recall@20"],
                 "test_recall@20": m["test"]["recall@20"], "test_ndcg@20": m["test"]["ndcg@20"]}
        curve.append(point)
        print(json.dumps(point), flush=True)
        if first_017 is None and point["test_recall@20"] >= 0.17:
            first_017 = point
        if first_018 is None and point["test_recall@20"] >= 0.18:
            first_018 = point
        if "early stopping" in m["stopped_reason"]:
            break
    speed = {}
    arms = {"full": {"sampling": "full"},
            "neighbor, sampled on the CPU": {"sampling": "neighbor", "sample_on": "cpu"},
            "neighbor, sampled on the GPU": {"sampling": "neighbor", "sample_on": "device"}}
    for arm, options in arms.items():
        if device == "cpu" and options.get("sample_on") == "device":
            continue
        config = TrainConfig(epochs=2, batch_size=args.batch_size, lr=args.lr, eval_ks=(20,), device=device,
                             fanout=(10, 10, 10), progress=False, **options)
        started = time.perf_counter()
        timing = train(dataset, model, config, log=lambda _: None)
        speed[arm] = {"seconds_per_epoch": timing.metrics["epochs"][-1]["seconds"],
                      "first_epoch_seconds": timing.metrics["epochs"][0]["seconds"],
                      "wall_seconds": time.perf_counter() - started,
                      "valid_recall@20_after_2_epochs": timing.metrics["valid"]["recall@20"]}
    full = speed["full"]["seconds_per_epoch"]
    for row in speed.values():
        row["ratio_to_full"] = row["seconds_per_epoch"] / full
    print(f"\n{device} epochs, Gowalla, batch {args.batch_size}, fan-out 10,10,10:")
    print_table([{"arm": arm, **row} for arm, row in speed.items()], ["arm", "seconds_per_epoch", "ratio_to_full"])
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "torch": torch.__version__,
              "config": {k: v for k, v in vars(args).items() if k != "quick" or args.quick}
              | {"data": str(args.data), "out": str(args.out)},
              "sampled_vs_full_epoch": speed}
    if curve:
        result |= {"seconds_per_epoch_full": run.metrics["seconds_per_epoch"], "curve": curve,
                   "best_by_validation": max(curve, key=lambda p: p["valid_recall@20"]),
                   "first_test_recall_ge_0.17": first_017, "first_test_recall_ge_0.18": first_018}
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}, indent=2))


if __name__ == "__main__":
    main()

"""Data-parallel training with torch.distributed: several processes train one model together.

What it shows
    * launching ``graphrec train`` under PyTorch's launcher (torchrun, run here as
      ``python -m torch.distributed.run`` so that it is this interpreter's)::

          python -m torch.distributed.run --standalone --nproc_per_node N \\
              -m graphrec train DATASET --out RUN --model lightgcn ...

      Each process joins the process group (gloo on CPUs, nccl on GPUs), trains on its 1/N share
      of every batch, and DistributedDataParallel averages the gradients, so every rank holds the
      same parameters after every step; only rank 0 validates, writes the run and logs;
    * reading ``RUN/metrics.json``: the test metrics and ``metrics["distributed"]``, with each
      rank's SHA-256 checksum of its final parameters and whether they are identical.

    This example launches the processes itself (``subprocess``), because that is what the
    launcher is for; everything else is the library API.

    On several machines, run the same command on every node with the node count and a
    rendezvous endpoint that all nodes reach (the dataset must be at the same path on each)::

        python -m torch.distributed.run --nnodes 2 --nproc_per_node 4 \\
            --rdzv_backend c10d --rdzv_endpoint HOST:29500 --rdzv_id graphrec-job \\
            -m graphrec train DATASET --out RUN --model lightgcn

How to run (from the repository root)
    python examples/distributed_train.py                     # 2 processes, MovieLens 100K
    python examples/distributed_train.py --nproc-per-node 4 --epochs 50
    python examples/distributed_train.py --smoke             # 2 processes, 2 epochs: well under a minute

The real data is read from ``--data-root`` (default ``../shared/data`` beside the repository).

Expected output
    The conversion summary, then the launcher's rank-0 log (``distributed: 2 processes (gloo)``,
    epoch lines, validation and test metrics), then::

        test recall@20 = 0.xxxx   ndcg@20 = 0.xxxx
        world size 2, backend gloo
          rank 0 parameters sha256 1a2b3c...
          rank 1 parameters sha256 1a2b3c...
        checksums identical across ranks: True
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from graphrec.data.convert import ConvertConfig, convert

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE_DEFAULTS = {"epochs": 2, "dim": 32, "layers": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder holding ml-100k/ (default: ../shared/data beside the repository)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/distributed"))
    parser.add_argument("--nproc-per-node", type=int, default=2, help="processes on this machine")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2048, help="global batch, shared by the processes")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--smoke", action="store_true", help="tiny run: d=32, 2 layers, 2 epochs")
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE_DEFAULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset_dir = args.out / "ml-100k-r4-5core"
    print("== converting MovieLens 100K (rating >= 4, 5-core)")
    convert("movielens", args.data_root / "ml-100k", dataset_dir,
            ConvertConfig(min_rating=4, kcore=5, seed=args.seed, name="ml-100k-r4-5core"), overwrite=True, log=print)

    run_dir = args.out / f"{args.model}-{args.nproc_per_node}proc"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(args.nproc_per_node), "-m", "graphrec", "train", str(dataset_dir), "--out", str(run_dir),
               "--model", args.model, "--epochs", str(args.epochs), "--dim", str(args.dim), "--layers",
               str(args.layers), "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed",
               str(args.seed), "--device", "cpu", "--no-progress", "--plot", "--overwrite"]
    print("\n== launching: " + " ".join(command), flush=True)
    completed = subprocess.run(command)
    if completed.returncode != 0:
        print(f"the launcher exited with status {completed.returncode}", file=sys.stderr)
        return completed.returncode

    metrics = json.loads((run_dir / "metrics.json").read_text())
    distributed = metrics["distributed"]
    print(f"\n== {run_dir / 'metrics.json'}")
    print(f"best validation epoch {metrics['best_epoch']} ({metrics['stopped_reason']}), "
          f"{metrics['seconds_per_epoch']:.1f} s per epoch")
    print(f"test recall@20 = {metrics['test']['recall@20']:.4f}   ndcg@20 = {metrics['test']['ndcg@20']:.4f}")
    print(f"world size {distributed['world_size']}, backend {distributed['backend']}")
    for rank, checksum in enumerate(distributed["rank_checksums"]):
        print(f"  rank {rank} parameters sha256 {checksum}")
    print(f"checksums identical across ranks: {distributed['identical_across_ranks']}")
    return 0 if distributed["identical_across_ranks"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

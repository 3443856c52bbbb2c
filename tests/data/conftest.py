"""Small, valid sources of every format, written for real into temporary directories.

The ``samples`` fixture maps a sample name to its files (name -> bytes); ``sample(name,
replace)`` writes one into a fresh directory, with files replaced (bytes, or a function
of the original bytes) or removed (None), and returns the directory. The expected
parse of each sample is spelled out in ``test_formats.py``.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _npy(matrix: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, matrix)
    return buffer.getvalue()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


_SAMPLES: dict[str, dict[str, bytes]] = {
    "movielens-100k": {
        "u.data": b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881251000\n",
        "u.item": ("242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)"
                   "|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                   "302|Misérables, Les (1995)|01-Jan-1995||http://us.imdb.com/x|0|0|0|0|0|0|0|0|1|0|0|0|1"
                   "|0|0|0|0|0|0\n"
                   "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n").encode("latin-1"),
        "u.genre": (b"unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\nComedy|5\nCrime|6\n"
                    b"Documentary|7\nDrama|8\nFantasy|9\nFilm-Noir|10\nHorror|11\nMusical|12\nMystery|13\n"
                    b"Romance|14\nSci-Fi|15\nThriller|16\nWar|17\nWestern|18\n\n"),
        "u.user": b"186|39|F|executive|00000\n196|49|M|writer|55105\n",
    },
    "movielens-1m": {
        "ratings.dat": b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n",
        "movies.dat": ("661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                       "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                       "3::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure\n"
                       "4::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n").encode("latin-1"),
        "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n",
    },
    "movielens-csv": {
        "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,1,0.5,1445714835\n",
        "movies.csv": ('movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n'
                       '3,"American President, The (1995)",Comedy|Drama|Romance\n'
                       '5,Pokémon Heroes (2003),(no genres listed)\n').encode(),
    },
    "lightgcn": {
        "train.txt": b"0 0 1\n1 2\n2\n",
        "valid.txt": b"0 2\n",
        "test.txt": b"1 0 1\n",
    },
    "lightgcn-lists": {
        "train.txt": b"1 0\n0 1 2\n",
        "test.txt": b"0 0\n",
        "user_list.txt": b"org_id remap_id\nalice 1\nbob 0\n",
        "item_list.txt": b"org_id remap_id\n900 0\n700 1\n800 2\n",
    },
    "json-split": {
        "train.json": b'{"0": [1, 0], "1": [2]}',
        "val.json": b'{"1": [0]}',
        "test.json": b'{"0": [2]}',
        "user2id.json": b'{"A2USER": 1, "A1USER": 0}',
        "item2id.json": b'{"B0003": 2, "B0001": 0, "B0002": 1}',
    },
    "mmrec": {
        "toy.inter": (b"userID\titemID\trating\ttimestamp\tx_label\n"
                      b"0\t1\t5.0\t1400000000\t0\n1\t0\t3.0\t1400000100\t1\n0\t2\t4.0\t1400000200\t2\n"),
        "image_feat.npy": _npy(np.arange(12, dtype=np.float32).reshape(4, 3)),
        "text_feat.npy": _npy(np.arange(8, dtype=np.float32).reshape(4, 2) / 10),
    },
    "recbole": {
        "toy.inter": (b"user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                      b"u1\ti1\t5\t881250949\nu2\ti2\t3.5\t881250950.0\nu1\ti2\t\t\n"),
        "toy.item": (b"item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tprice:float"
                     b"\tembedding:float_seq\n"
                     b"i2\tThe Big Sleep\t1946\tCrime Film-Noir\t9.5\t0.5 1.5\n"
                     b"i1\tToy Story\t1995\tAnimation\t\t\n"
                     b"i3\tHeat\t\tAction Crime\t4\t2\n"),
        "toy.user": b"user_id:token\tage:token\tgender:token\nu2\t49\tM\nu1\t24\tF\n",
    },
    "recbole-benchmark": {
        "toy.train.inter": b"user_id:token\titem_id:token\nu1\ti1\nu2\ti2\n",
        "toy.valid.inter": b"user_id:token\titem_id:token\nu1\ti2\n",
        "toy.test.inter": b"user_id:token\titem_id:token\nu2\ti1\n",
    },
    "amazon-2014": {
        "reviews_Baby_5.json.gz": gzip.compress(
            b'{"reviewerID": "A1", "asin": "B001", "reviewerName": "Ann", "helpful": [0, 0], '
            b'"reviewText": "Good.", "overall": 5.0, "summary": "ok", "unixReviewTime": 1370563200, '
            b'"reviewTime": "06 7, 2013"}\n'
            b'{"reviewerID": "A2", "asin": "B002", "overall": 3.0, "unixReviewTime": 1370649600}\n', mtime=0),
        "meta_Baby.json.gz": gzip.compress(
            b"{'asin': 'B001', 'title': 'Soft Blanket', 'description': 'A warm blanket.', "
            b"'imUrl': 'http://ecx.images-amazon.com/images/I/1.jpg', 'categories': [['Baby', 'Nursery'], "
            b"['Baby', 'Bedding']], 'brand': 'Cozy', 'salesRank': {'Baby': 12}}\n"
            b"{'asin': 'B003', 'categories': [['Baby']], 'related': {'also_bought': ['B001']}}\n", mtime=0),
    },
    "amazon-2018": {
        "Baby.json": (b'{"overall": 4.0, "vote": "2", "verified": true, "reviewTime": "01 1, 2018", '
                      b'"reviewerID": "R1", "asin": "X1", "style": {"Size:": " Small"}, "unixReviewTime": '
                      b'1514764800}\n\n'
                      b'{"overall": 1.0, "reviewerID": "R2", "asin": "X1", "unixReviewTime": 1514851200}\n'),
        "meta_Baby.json": (b'{"asin": "X1", "title": "Stroller", "description": ["Light.", "Folds flat."], '
                           b'"category": ["Baby", "Strollers"], "brand": "Go", "imageURL": ["http://s/1.jpg"], '
                           b'"imageURLHighRes": ["http://l/1.jpg", "http://l/2.jpg"]}\n'
                           b'{"asin": "X1", "title": "Stroller (again)"}\n'
                           b'{"asin": "X2", "title": "", "description": [], "category": [], "imageURL": []}\n'),
    },
    "amazon-2023": {
        "Baby_Products.jsonl": (b'{"rating": 5.0, "title": "Nice", "text": "Fine", "images": [], '
                                b'"asin": "C1a", "parent_asin": "C1", "user_id": "U1", '
                                b'"timestamp": 1588615855070, "helpful_vote": 0, "verified_purchase": true}\n'
                                b'{"rating": 2.0, "asin": "C2", "parent_asin": "C2", "user_id": "U1", '
                                b'"timestamp": 1588615856999}\n'),
        "meta_Baby_Products.jsonl": (b'{"main_category": "Baby", "title": "Bottle", "average_rating": 4.5, '
                                     b'"features": ["BPA free"], "description": ["Glass bottle.", "Dishwasher safe."], '
                                     b'"price": 9.99, "images": [{"thumb": "http://t/1.jpg", "large": "http://L/1.jpg",'
                                     b' "variant": "MAIN", "hi_res": null}], "videos": [], "store": "Glassy", '
                                     b'"categories": ["Baby Products", "Feeding"], "details": {}, '
                                     b'"parent_asin": "C1", "bought_together": null}\n'),
    },
    "csv": {
        "interactions.csv": (b'user_id,item_id,rating,timestamp,split,comment\n'
                             b'u1,i1,4,1600000000,train,"nice, really"\nu1,i2,,1600000100,valid,\n'
                             b'u2,"i,3",2.5,,test,x\n'),
    },
    "parquet": {
        "interactions.parquet": _parquet(pd.DataFrame({
            "uid": [10, 11, 10],
            "iid": ["a", "b", "b"],
            "stars": [5.0, None, 1.0],
            "when": pd.to_datetime(["2020-01-01 00:00:01", "2020-01-02 00:00:00", None]),
            "split": [0, 2, 1],
        })),
    },
}


Replacement = bytes | Callable[[bytes], bytes] | None


def _write_sample(directory: Path, name: str, replace: dict[str, Replacement] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes | None] = dict(_SAMPLES[name])
    for file_name, replacement in (replace or {}).items():
        files[file_name] = replacement(files[file_name]) if callable(replacement) else replacement
    for file_name, content in files.items():
        if content is not None:
            path = directory / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    return directory


@pytest.fixture(scope="session")
def samples() -> dict[str, dict[str, bytes]]:
    """Sample name -> {file name: bytes}."""
    return _SAMPLES


@pytest.fixture(scope="session")
def write_sample() -> Callable[..., Path]:
    """``write_sample(directory, name, replace=None)`` writes a sample into ``directory``."""
    return _write_sample


@pytest.fixture
def sample(tmp_path: Path) -> Callable[..., Path]:
    """``sample(name, replace=None)`` writes a sample into a fresh directory under ``tmp_path``."""
    counter = iter(range(1_000_000))

    def make(name: str, replace: dict[str, Replacement] | None = None) -> Path:
        return _write_sample(tmp_path / f"{name}-{next(counter)}", name, replace)

    return make

"""Junk in, DataFormatError out: no reader lets any other exception escape.

Hypothesis replaces one file of a valid source with random bytes, a truncated real
snippet (from ../shared/data where the file has a real counterpart), a mutated one, or
an empty file, and checks that the reader either parses it or raises DataFormatError.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from graphrec.data.formats import get_reader
from graphrec.data.raw import RawDataset
from graphrec.errors import DataFormatError

# format, sample, file replaced, real file (under ../shared/data) whose head seeds the junk
TARGETS = [
    ("movielens", "movielens-100k", "u.data", "ml-100k/u.data"),
    ("movielens", "movielens-100k", "u.item", "ml-100k/u.item"),
    ("movielens", "movielens-100k", "u.user", "ml-100k/u.user"),
    ("movielens", "movielens-100k", "u.genre", "ml-100k/u.genre"),
    ("movielens", "movielens-1m", "ratings.dat", None),
    ("movielens", "movielens-1m", "movies.dat", None),
    ("movielens", "movielens-1m", "users.dat", None),
    ("movielens", "movielens-csv", "ratings.csv", None),
    ("movielens", "movielens-csv", "movies.csv", None),
    ("lightgcn", "lightgcn", "train.txt", "ml-1m-lightgcn/train.txt"),
    ("lightgcn", "lightgcn-lists", "test.txt", "gowalla/test.txt"),
    ("lightgcn", "lightgcn-lists", "user_list.txt", "gowalla/user_list.txt"),
    ("lightgcn", "lightgcn-lists", "item_list.txt", "gowalla/item_list.txt"),
    ("json-split", "json-split", "train.json", "amazon-baby-5core/train.json"),
    ("json-split", "json-split", "val.json", "amazon-baby-5core/val.json"),
    ("json-split", "json-split", "item2id.json", "amazon-baby-5core/item2id.json"),
    ("json-split", "json-split", "user2id.json", "amazon-baby-5core/user2id.json"),
    ("mmrec", "mmrec", "toy.inter", None),
    ("mmrec", "mmrec", "image_feat.npy", None),
    ("recbole", "recbole", "toy.inter", None),
    ("recbole", "recbole", "toy.item", None),
    ("recbole", "recbole", "toy.user", None),
    ("amazon", "amazon-2014", "reviews_Baby_5.json.gz", None),
    ("amazon", "amazon-2014", "meta_Baby.json.gz", None),
    ("amazon", "amazon-2018", "Baby.json", None),
    ("amazon", "amazon-2018", "meta_Baby.json", None),
    ("amazon", "amazon-2023", "Baby_Products.jsonl", None),
    ("amazon", "amazon-2023", "meta_Baby_Products.jsonl", None),
    ("csv", "csv", "interactions.csv", None),
    ("parquet", "parquet", "interactions.parquet", None),
]
OPTIONS = {"mmrec": {"name": "toy"}, "recbole": {"name": "toy"}}
# Bytes that carry structure in one format or another, and a few that break encodings.
SIGNIFICANT = [*b"\t\n\r:|,;{}[]\"' -.0123456789eE", 0x00, 0x1F, 0x80, 0xE9, 0xFF]
SNIPPET_BYTES = 3000


@pytest.fixture(scope="module")
def sample_file(samples):
    """``sample_file(name, file)``: the bytes of one sample file (a function keeps failure reports short)."""
    return lambda name, file_name: samples[name][file_name]


@st.composite
def junk(draw: st.DrawFn, base: bytes) -> bytes:
    """Random bytes, ``base`` cut short, ``base`` with bytes changed, or an (almost) empty file."""
    kind = draw(st.sampled_from(["random", "truncated", "mutated", "empty"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b" \n\n", b"\t", b"{}", b"[]"]))
    data = bytearray(base[:draw(st.integers(0, len(base)))] if kind == "truncated" else base)
    if kind == "mutated" and data:
        edits = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.sampled_from(SIGNIFICANT)),
                              min_size=1, max_size=6))
        for position, value in edits:
            data[position] = value
    return bytes(data)


@pytest.mark.parametrize(("format", "name", "target", "real"), TARGETS,
                         ids=[f"{t[0]}-{t[2]}" for t in TARGETS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_reader_raises_only_data_format_errors(request, sample_file, write_sample, format, name, target, real, data):
    original = sample_file(name, target)
    compressed = target.endswith(".gz")
    base = gzip.decompress(original) if compressed else original
    if real is not None:
        # only the targets with a real counterpart need (and skip without) the real datasets
        with open(request.getfixturevalue("shared_data") / real, "rb") as handle:
            base = data.draw(st.sampled_from([base, handle.read(SNIPPET_BYTES)]), label="base")
    payload = data.draw(junk(base), label="payload")
    if compressed and data.draw(st.booleans(), label="gzip"):
        payload = gzip.compress(payload, mtime=0)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_sample(Path(tmp), name, {target: payload})
        if format in ("csv", "parquet"):
            src = src / target
        try:
            raw = get_reader(format)(src, **OPTIONS.get(format, {}))
        except DataFormatError as error:
            assert str(error)  # a message for the user, naming the file
            assert error.path is not None
        else:
            assert isinstance(raw, RawDataset)
            assert {"user_id", "item_id", "rating", "timestamp"} <= set(raw.interactions.columns)


#: Any JSON value: what a split file's item lists may hold when the file is damaged or hand-made.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=2),
    max_leaves=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(split={"0": [1.5]}, with_map=False)
@example(split={"0": [True]}, with_map=False)
@example(split={"0": [True]}, with_map=True)
@example(split={"0": [1, None]}, with_map=False)
@given(split=st.dictionaries(st.sampled_from(["0", "1", "2", "x"]), st.lists(JSON_VALUES, max_size=4) | JSON_VALUES,
                             max_size=3),
       with_map=st.booleans())
def test_json_split_values_of_any_json_type_raise_only_data_format_errors(split, with_map):
    """Booleans, floats, nulls, nested lists and objects among the items (issue 19: ``[1.5]`` and
    ``[true]`` used to end in a StopIteration)."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "train.json").write_text('{"0": [0, 1], "1": [1]}')
        (root / "val.json").write_text(json.dumps(split))
        (root / "test.json").write_text('{"1": [0]}')
        if with_map:
            (root / "item2id.json").write_text('{"a": 0, "b": 1}')
        try:
            raw = get_reader("json-split")(root)
        except DataFormatError as error:
            assert error.path is not None
        else:
            assert isinstance(raw, RawDataset)

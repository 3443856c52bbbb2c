"""Exports to RecBole, MMRec and LightGCN formats re-import to identical interactions."""

from __future__ import annotations

import numpy as np
import pytest

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import ModalityFeatures
from graphrec.data.export import export_dataset

READER_OF_EXPORT = {"recbole": "recbole", "mmrec": "mmrec", "lightgcn": "lightgcn"}


@pytest.fixture(scope="module")
def movielens(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ml")
    dataset = convert("movielens", shared_data / "ml-100k", root / "ml100k",
                      ConvertConfig(min_rating=3, split="random", seed=11)).dataset
    rng = np.random.default_rng(0)
    text = rng.normal(size=(dataset.num_items, 8)).astype(np.float32)
    return dataset.with_features(ModalityFeatures("text", text, np.ones(dataset.num_items, bool), {"model": "rnd"}))


def interaction_table(dataset):
    inter = dataset.interactions
    return np.stack([inter["user"].to_numpy(), inter["item"].to_numpy(), inter["split"].cat.codes.to_numpy()])


def sorted_columns(table):
    order = np.lexsort(table[::-1])
    return table[:, order]


@pytest.mark.parametrize("format", ["recbole", "mmrec", "lightgcn"])
def test_round_trip_gives_identical_interactions(movielens, tmp_path, format):
    out = export_dataset(movielens, format, tmp_path / format)
    back = convert(READER_OF_EXPORT[format], out, tmp_path / "back", ConvertConfig(split="given"),
                   reader_options={"name": movielens.name} if format in ("mmrec", "recbole") else None).dataset
    assert back.num_users == movielens.num_users
    assert back.num_items == movielens.num_items
    assert np.array_equal(sorted_columns(interaction_table(back)), sorted_columns(interaction_table(movielens)))
    if format != "lightgcn":
        original = movielens.interactions.sort_values(["user", "item"])["rating"].to_numpy()
        again = back.interactions.sort_values(["user", "item"])["rating"].to_numpy()
        assert np.array_equal(original, again)
    if format == "mmrec":
        assert np.allclose(back.features["text"].values, movielens.features["text"].values)
    if format in ("recbole", "lightgcn"):
        assert back.users["user_id"].tolist() == movielens.users["user_id"].tolist()
        assert back.items["item_id"].tolist() == movielens.items["item_id"].tolist()


def test_recbole_export_uses_benchmark_filenames(movielens, tmp_path):
    out = export_dataset(movielens, "recbole", tmp_path / "rb")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{movielens.name}.{s}.inter" for s in ("train", "valid", "test")]
                           + [f"{movielens.name}.item", f"{movielens.name}.user"])
    header = (out / f"{movielens.name}.train.inter").read_text().splitlines()[0]
    assert header.split("\t")[:2] == ["user_id:token", "item_id:token"]

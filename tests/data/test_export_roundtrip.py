"""Exports to RecBole, MMRec and LightGCN formats re-import to identical interactions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.data.export import EXPORT_MARKER, export_dataset, export_notes
from graphrec.errors import GraphrecError

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
                           + [f"{movielens.name}.item", f"{movielens.name}.user", EXPORT_MARKER])
    header = (out / f"{movielens.name}.train.inter").read_text().splitlines()[0]
    assert header.split("\t")[:2] == ["user_id:token", "item_id:token"]


def _odd_ids_dataset(tmp_path, ids):
    rows = ["user,item,timestamp"] + [f"{user},{item},{t}" for t, (user, item) in enumerate(ids)]
    (tmp_path / "odd.csv").write_text("\n".join(rows) + "\n")
    return convert("csv", tmp_path / "odd.csv", tmp_path / "odd", ConvertConfig(split="leave-last")).dataset


@pytest.mark.parametrize("format", ["recbole", "mmrec"])
def test_ids_with_quotes_and_spaces_come_back_unchanged(tmp_path, format):
    ids = [('"u1" x', "i 1"), ('"u1" x', "i2"), ('"u1" x', 'i"3'), ("u2", "i 1"), ("u2", "i2"), ("u2", 'i"3')]
    # csv quoting of the source: quotes doubled inside a quoted field
    rows = ["user,item,timestamp"] + ['"' + u.replace('"', '""') + f'",{i.replace(chr(34), "")},{t}'
                                      for t, (u, i) in enumerate(ids)]
    (tmp_path / "odd.csv").write_text("\n".join(rows) + "\n")
    dataset = convert("csv", tmp_path / "odd.csv", tmp_path / "odd", ConvertConfig(split="leave-last")).dataset
    assert '"u1" x' in dataset.users["user_id"].tolist()
    out = export_dataset(dataset, format, tmp_path / format)
    back = convert(format, out, tmp_path / "back", ConvertConfig(split="given"),
                   reader_options={"name": dataset.name}).dataset
    assert back.users["user_id"].tolist() == dataset.users["user_id"].tolist()
    assert back.items["item_id"].tolist() == dataset.items["item_id"].tolist()


def test_lightgcn_export_refuses_ids_with_whitespace_instead_of_rewriting_them(tmp_path):
    dataset = _odd_ids_dataset(tmp_path, [("u1", "a b"), ("u1", "a_b"), ("u1", "c"), ("u2", "c")])
    with pytest.raises(GraphrecError, match="item id 'a b' contains whitespace"):
        export_dataset(dataset, "lightgcn", tmp_path / "lg")
    assert not (tmp_path / "lg").exists()


def test_mmrec_export_keeps_missing_features_missing(movielens, tmp_path):
    mask = np.ones(movielens.num_items, bool)
    mask[::7] = False
    values = movielens.features["text"].values * mask[:, None]
    dataset = movielens.with_features(ModalityFeatures("text", values, mask, {"model": "rnd"}))
    out = export_dataset(dataset, "mmrec", tmp_path / "mm")
    back = convert("mmrec", out, tmp_path / "back", ConvertConfig(split="given"),
                   reader_options={"name": dataset.name}).dataset
    assert np.array_equal(back.features["text"].mask, mask)
    assert np.allclose(back.features["text"].values[mask], values[mask])


def test_lightgcn_export_without_a_test_split_re_imports(tmp_path):
    dataset = _odd_ids_dataset(tmp_path, [("u1", "a"), ("u1", "b"), ("u2", "a")])
    no_test = dataset.interactions.assign(split=dataset.interactions["split"].where(
        dataset.interactions["split"] != "test", "train"))
    dataset = Dataset(dataset.name, no_test, dataset.items, dataset.users)
    out = export_dataset(dataset, "lightgcn", tmp_path / "lg")
    result = convert("lightgcn", out, tmp_path / "back", ConvertConfig(split="given"))
    assert result.dataset.split_counts() == {"train": 3, "valid": 0, "test": 0}
    assert any("test.txt is empty" in note for note in result.notes)


def test_an_export_cannot_replace_the_dataset_it_reads(movielens, tmp_path):
    with pytest.raises(GraphrecError, match="which this command reads"):
        export_dataset(movielens, "recbole", movielens.path, overwrite=True)
    assert (movielens.path / "manifest.json").is_file()


def test_mmrec_export_notes_trailing_items_without_interactions(movielens, tmp_path):
    """MMRec counts items from its .inter file: an export whose last items never occur says so, and still
    writes every feature row (the export stays a faithful round trip)."""
    assert export_notes(movielens, "recbole") == []
    last = movielens.interactions["item"].max()
    kept = movielens.interactions[movielens.interactions["item"] < last - 1]
    dropped = movielens.interactions["item"].ge(last - 1).sum()
    assert dropped > 0
    dataset = Dataset(movielens.name, kept, movielens.items, movielens.users, features=movielens.features)
    notes = export_notes(dataset, "mmrec")
    assert len(notes) == 1
    assert f"the last {movielens.num_items - (last - 1)} of {movielens.num_items} items" in notes[0]
    assert f"past item id {last - 2}" in notes[0]
    saved = dataset.save(tmp_path / "trailing")
    completed = subprocess.run([sys.executable, "-m", "graphrec", "export", str(saved), str(tmp_path / "mm"),
                                "--format", "mmrec"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert f"note: {notes[0]}" in completed.stderr
    assert np.load(tmp_path / "mm" / "text_feat.npy").shape[0] == movielens.num_items

"""Each real dataset in ../shared/data converts with exactly its published counts."""

from __future__ import annotations

import pytest

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset


def counts(dataset):
    return dataset.num_users, dataset.num_items, dataset.split_counts()


def test_movielens_100k(shared_data, tmp_path):
    result = convert("movielens", shared_data / "ml-100k", tmp_path / "ml", ConvertConfig(seed=1))
    dataset = load_dataset(tmp_path / "ml")
    assert (dataset.num_users, dataset.num_items, dataset.num_interactions) == (943, 1682, 100_000)
    assert sum(dataset.split_counts().values()) == 100_000
    assert dataset.items.loc[0, "title"] == "Toy Story (1995)"
    assert "Animation" in list(dataset.items.loc[0, "genres"])
    assert result.reports == []  # nothing filtered without options


def test_movielens_100k_implicit_threshold(shared_data, tmp_path):
    result = convert("movielens", shared_data / "ml-100k", tmp_path / "ml", ConvertConfig(min_rating=3))
    # 82,520 ratings are >= 3 in u.data
    assert result.dataset.num_interactions == 82_520
    assert result.reports[0].removed_interactions == 17_480


@pytest.mark.slow
def test_gowalla_paper_split(shared_data, tmp_path):
    dataset = convert("lightgcn", shared_data / "gowalla", tmp_path / "g").dataset
    assert counts(dataset) == (29_858, 40_981, {"train": 810_128, "valid": 0, "test": 217_242})
    assert dataset.manifest["split"]["protocol"] == "given"


@pytest.mark.slow
def test_gowalla_with_validation_split(shared_data, tmp_path):
    dataset = convert("lightgcn", shared_data / "gowalla", tmp_path / "g",
                      reader_options={"validation_dir": "validation"}).dataset
    assert counts(dataset) == (29_858, 40_981, {"train": 719_081, "valid": 91_047, "test": 217_242})


@pytest.mark.slow
def test_ml1m_lightgcn(shared_data, tmp_path):
    dataset = convert("lightgcn", shared_data / "ml-1m-lightgcn", tmp_path / "m").dataset
    assert dataset.split_counts() == {"train": 590_733, "valid": 80_897, "test": 164_848}
    assert dataset.num_items == 3_628


@pytest.mark.slow
def test_amazon_baby_json_split(shared_data, tmp_path):
    dataset = convert("json-split", shared_data / "amazon-baby-5core", tmp_path / "a").dataset
    assert counts(dataset) == (19_445, 7_050, {"train": 119_674, "valid": 20_559, "test": 20_559})


@pytest.mark.parametrize("k", [5, 10])
def test_kcore_on_real_data_leaves_k_core(shared_data, tmp_path, k):
    dataset = convert("movielens", shared_data / "ml-100k", tmp_path / "ml",
                      ConvertConfig(min_rating=4, kcore=k)).dataset
    inter = dataset.interactions
    assert inter.groupby("user").size().min() >= k
    assert inter.groupby("item").size().min() >= k
    assert inter["user"].nunique() == dataset.num_users and inter["item"].nunique() == dataset.num_items

"""The cold-user protocol: users without training interactions, ranked over all items, measured apart."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.errors import GraphrecError
from graphrec.evaluation import EvalConfig, cold_users, evaluate


@pytest.fixture(scope="module")
def movielens(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    path = tmp_path_factory.mktemp("cold-users-eval") / "ml"
    return convert("movielens", shared_data / "ml-100k", path, ConvertConfig(cold_users=0.1, seed=3)).dataset


def make_dataset(users, items, splits, num_users: int, num_items: int, cold_users_held_out: int = 0) -> Dataset:
    inter = pd.DataFrame({"user": np.asarray(users, np.int32), "item": np.asarray(items, np.int32),
                          "rating": np.ones(len(users), np.float32),
                          "timestamp": pd.array(np.zeros(len(users), np.int64), dtype="Int64"),
                          "split": pd.Categorical(splits, dtype=SPLIT_DTYPE)})
    return Dataset(name="t", interactions=inter, items=pd.DataFrame({"item_id": [str(i) for i in range(num_items)]}),
                   users=pd.DataFrame({"user_id": [str(u) for u in range(num_users)]}),
                   manifest={"split": {"cold_users": cold_users_held_out}})


def random_scorer(dataset: Dataset, seed: int = 0, boost: str | None = None):
    """Fixed random scores per (user, item); with ``boost``, the user's items in that split score highest."""
    scores = torch.rand(dataset.num_users, dataset.num_items, generator=torch.Generator().manual_seed(seed))
    if boost is not None:
        users, items = dataset.pairs(boost)
        scores[torch.as_tensor(users, dtype=torch.long), torch.as_tensor(items, dtype=torch.long)] += 10.0
    return lambda users: scores[users]


def test_cold_users_are_those_with_held_out_but_no_training_interactions():
    dataset = make_dataset([0, 0, 1, 1, 2, 4], [0, 1, 2, 3, 0, 0], ["train", "test", "valid", "test", "test", "train"],
                           num_users=5, num_items=4)
    assert cold_users(dataset).tolist() == [1, 2]  # user 3 has no interaction at all, user 4 only training


def test_the_protocol_ranks_all_items_for_the_cold_users_only(movielens):
    cold = cold_users(movielens)
    for split in ("valid", "test"):
        result = evaluate(random_scorer(movielens), movielens, split, EvalConfig(protocol="cold_users"))
        with_truth = np.flatnonzero(np.diff(movielens.csr(split).indptr) > 0)
        assert result.users.tolist() == np.intersect1d(cold, with_truth).tolist()
        assert result.protocol == "cold_users" and result.num_users == len(result.users) > 80
        assert result.metrics["coverage@20"] > 0.2  # ranked over every item, not a subset


def test_a_cold_users_validation_items_are_masked_when_testing(movielens):
    """Scoring a cold user's validation items highest wins at validation and gains nothing at test."""
    config = EvalConfig(protocol="cold_users", beyond_accuracy=False)
    honest, cheat = random_scorer(movielens), random_scorer(movielens, boost="valid")
    assert evaluate(cheat, movielens, "valid", config).metrics["recall@20"] > 0.5
    assert evaluate(honest, movielens, "valid", config).metrics["recall@20"] < 0.1
    assert evaluate(cheat, movielens, "test", config).metrics == evaluate(honest, movielens, "test", config).metrics


def test_masking_at_test_removes_the_validation_item_from_the_list():
    dataset = make_dataset([0, 0, 1, 1], [0, 1, 0, 1], ["train", "test", "valid", "test"], num_users=2, num_items=3,
                           cold_users_held_out=1)
    scores = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.5, 0.0]])
    result = evaluate(lambda users: scores[users], dataset, "test",
                      EvalConfig(ks=(1,), protocol="cold_users", beyond_accuracy=False))
    assert result.users.tolist() == [1] and result.metrics["hit@1"] == 1.0  # item 0 (valid) masked, item 1 first


def test_the_warm_protocol_leaves_held_out_cold_users_out(movielens):
    cold = cold_users(movielens)
    result = evaluate(random_scorer(movielens), movielens, "test", EvalConfig())
    assert not np.isin(result.users, cold).any()
    assert result.num_users == movielens.num_users - len(cold)


def test_warm_numbers_equal_those_of_the_dataset_without_the_cold_users(movielens):
    """Leaving the cold users out of the warm averages makes them the numbers of the same data without them."""
    inter = movielens.interactions
    without = dataclasses.replace(movielens, interactions=inter[~inter["user"].isin(cold_users(movielens))],
                                  manifest={"split": {}})
    for split in ("valid", "test"):
        assert (evaluate(random_scorer(movielens), movielens, split).metrics
                == evaluate(random_scorer(movielens), without, split).metrics)


def test_elsewhere_the_warm_protocol_keeps_users_without_training_interactions(movielens):
    not_declared = dataclasses.replace(movielens, manifest={"split": {}})
    result = evaluate(random_scorer(movielens), not_declared, "test", EvalConfig())
    assert np.isin(cold_users(movielens), result.users).all()


def test_the_protocol_needs_cold_users():
    dataset = make_dataset([0, 0, 1, 1], [0, 1, 0, 1], ["train", "test", "train", "test"], num_users=2, num_items=3)
    with pytest.raises(GraphrecError, match="the cold_users protocol needs users without training interactions"):
        evaluate(lambda users: torch.zeros(len(users), 3), dataset, "test", EvalConfig(protocol="cold_users"))

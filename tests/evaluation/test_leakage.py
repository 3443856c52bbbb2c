"""Masking: what the user has already seen can neither help nor hurt a score function."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.evaluation import EvalConfig, evaluate

BOOST = 1e6


def make_dataset(users, items, splits, num_users: int, num_items: int) -> Dataset:
    n = len(users)
    interactions = pd.DataFrame({
        "user": np.asarray(users, dtype=np.int32),
        "item": np.asarray(items, dtype=np.int32),
        "rating": np.full(n, np.nan, dtype=np.float32),
        "timestamp": pd.array([None] * n, dtype="Int64"),
        "split": pd.Categorical(list(splits), dtype=SPLIT_DTYPE),
    })
    return Dataset("leak", interactions,
                   items=pd.DataFrame({"item_id": [str(i) for i in range(num_items)]}),
                   users=pd.DataFrame({"user_id": [str(u) for u in range(num_users)]}))


def random_dataset(seed: int, num_users: int = 80, num_items: int = 150) -> Dataset:
    rng = np.random.default_rng(seed)
    # distinct (user, item) pairs, so no test item was also seen in training
    cells = rng.choice(num_users * num_items, 3000, replace=False)
    splits = rng.choice(np.array(["train", "valid", "test"]), len(cells), p=[0.6, 0.15, 0.25])
    return make_dataset(cells // num_items, cells % num_items, splits, num_users, num_items)


@pytest.fixture(scope="module")
def movielens(shared_data: Path) -> Dataset:
    frame = pd.read_csv(shared_data / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    splits = np.random.default_rng(99).choice(np.array(["train", "valid", "test"]), len(frame), p=[0.7, 0.1, 0.2])
    return make_dataset(frame["user"] - 1, frame["item"] - 1, splits, 943, 1682)


def indicator(dataset: Dataset, splits) -> torch.Tensor:
    return torch.as_tensor(dataset.csr(splits).toarray() > 0)


def shifted_scorer(base: torch.Tensor, where: torch.Tensor, shift: float):
    scores = base + shift * where.to(base.dtype)
    return lambda users: scores[users]


def assert_identical(first, second) -> None:
    assert first.metrics.keys() == second.metrics.keys()
    for name, value in first.metrics.items():
        assert second.metrics[name] == value, name
    assert first.num_users == second.num_users


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seen_items_scored_highest_or_lowest_give_identical_test_metrics(seed):
    dataset = random_dataset(seed)
    base = torch.randn(dataset.num_users, dataset.num_items, generator=torch.Generator().manual_seed(seed))
    seen = indicator(dataset, ["train", "valid"])
    config = EvalConfig(ks=(5, 20, 50))
    features = np.random.default_rng(seed).normal(size=(dataset.num_items, 4))
    highest = evaluate(shifted_scorer(base, seen, +BOOST), dataset, "test", config, item_features=features)
    lowest = evaluate(shifted_scorer(base, seen, -BOOST), dataset, "test", config, item_features=features)
    assert_identical(highest, lowest)
    # the boosted scorer is adversarial: unmasked, its top 5 would be seen items only
    boosted_top = torch.topk(base + BOOST * seen, 5).indices
    enough_seen = seen.sum(dim=1) >= 5
    assert bool(seen.gather(1, boosted_top)[enough_seen].all())
    assert highest.metrics["recall@50"] > 0.0


def test_masking_on_movielens(movielens):
    base = torch.randn(943, 1682, generator=torch.Generator().manual_seed(0))
    seen = indicator(movielens, ["train", "valid"])
    config = EvalConfig(ks=(10, 20))
    highest = evaluate(shifted_scorer(base, seen, +BOOST), movielens, "test", config)
    lowest = evaluate(shifted_scorer(base, seen, -BOOST), movielens, "test", config)
    assert_identical(highest, lowest)
    assert highest.num_users > 900


def test_scorer_that_puts_test_items_first_is_perfect():
    dataset = random_dataset(3)
    truth = indicator(dataset, "test")
    max_truth = int(truth.sum(dim=1).max())
    config = EvalConfig(ks=(max_truth, 100))
    result = evaluate(shifted_scorer(torch.zeros(truth.shape), truth, 1.0), dataset, "test", config)
    for k in config.ks:
        assert result.metrics[f"recall@{k}"] == 1.0
        assert result.metrics[f"ndcg@{k}"] == pytest.approx(1.0)
        assert result.metrics[f"map@{k}"] == pytest.approx(1.0)
        assert result.metrics[f"hit@{k}"] == 1.0
    assert result.metrics["mrr"] == 1.0


def test_validation_masks_train_items_but_not_validation_items():
    dataset = random_dataset(4)
    train, valid = indicator(dataset, "train"), indicator(dataset, "valid")
    config = EvalConfig(ks=(10, 40))
    # validation items first: perfect at validation time (they are not masked) ...
    most = int(valid.sum(dim=1).max())
    perfect = evaluate(shifted_scorer(torch.zeros(valid.shape), valid, 1.0), dataset, "valid",
                       EvalConfig(ks=(most,)))
    assert perfect.metrics[f"recall@{most}"] == 1.0 and perfect.metrics["mrr"] == 1.0
    # ... and train items do not matter: masked
    base = torch.randn(valid.shape, generator=torch.Generator().manual_seed(4))
    assert_identical(evaluate(shifted_scorer(base, train, +BOOST), dataset, "valid", config),
                     evaluate(shifted_scorer(base, train, -BOOST), dataset, "valid", config))
    # whereas test items are unseen at validation time, so pushing them up changes the result
    test = indicator(dataset, "test")
    pushed_up = evaluate(shifted_scorer(base, test, +BOOST), dataset, "valid", config)
    pushed_down = evaluate(shifted_scorer(base, test, -BOOST), dataset, "valid", config)
    assert pushed_up.metrics["recall@10"] < pushed_down.metrics["recall@10"]


def test_test_evaluation_masks_validation_items():
    dataset = random_dataset(5)
    valid = indicator(dataset, "valid")
    base = torch.randn(valid.shape, generator=torch.Generator().manual_seed(5))
    config = EvalConfig(ks=(10,))
    assert_identical(evaluate(shifted_scorer(base, valid, +BOOST), dataset, "test", config),
                     evaluate(shifted_scorer(base, valid, -BOOST), dataset, "test", config))
    # and the validation items are real competitors: unmasked at validation time, boosting them helps there
    assert (evaluate(shifted_scorer(base, valid, +BOOST), dataset, "valid", config).metrics["recall@10"]
            > evaluate(shifted_scorer(base, valid, -BOOST), dataset, "valid", config).metrics["recall@10"])


def test_repeated_interactions_are_not_counted_as_reachable_ground_truth():
    # user 0 trained on item 1 and has it again in test, plus a new test item 2
    dataset = make_dataset([0, 0, 0], [1, 1, 2], ["train", "test", "test"], num_users=1, num_items=4)
    result = evaluate(lambda users: torch.tensor([[0.0, 9.0, 5.0, 1.0]]), dataset, "test", EvalConfig(ks=(1,)))
    assert result.num_seen_ground_truth == 1
    assert result.metrics["recall@1"] == 1.0  # item 2 is the only reachable test item, ranked first

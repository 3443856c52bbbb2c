"""Metric formulas: hand-computed cases, a pure-Python reference, beyond-accuracy measures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.errors import GraphrecError
from graphrec.evaluation import (
    EvalConfig,
    evaluate,
    gini_index,
    metric_names,
    ranking_metrics,
    reciprocal_rank,
)


def make_dataset(users, items, splits, num_users: int, num_items: int) -> Dataset:
    n = len(users)
    interactions = pd.DataFrame({
        "user": np.asarray(users, dtype=np.int32),
        "item": np.asarray(items, dtype=np.int32),
        "rating": np.full(n, np.nan, dtype=np.float32),
        "timestamp": pd.array([None] * n, dtype="Int64"),
        "split": pd.Categorical(list(splits), dtype=SPLIT_DTYPE),
    })
    return Dataset("tiny", interactions,
                   items=pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)]}),
                   users=pd.DataFrame({"user_id": [f"u{u}" for u in range(num_users)]}))


def fixed_scores(matrix) -> callable:
    table = torch.as_tensor(np.asarray(matrix, dtype=np.float32))
    return lambda users: table[users]


# ------------------------------------------------------- pure-Python reference
def reference_list_metrics(hits: list[bool], num_relevant: int, k: int) -> dict[str, float]:
    top = hits[:k]
    num_hits = sum(top)
    dcg = sum(1.0 / math.log2(position + 2) for position, hit in enumerate(top) if hit)
    idcg = sum(1.0 / math.log2(position + 2) for position in range(min(num_relevant, k)))
    first = next((position for position, hit in enumerate(top) if hit), None)
    running, precision_sum = 0, 0.0
    for position, hit in enumerate(top):
        if hit:
            running += 1
            precision_sum += running / (position + 1)
    return {"recall": num_hits / num_relevant, "precision": num_hits / k, "hit": float(num_hits > 0),
            "ndcg": dcg / idcg, "mrr": 0.0 if first is None else 1.0 / (first + 1),
            "map": precision_sum / min(num_relevant, k)}


# ------------------------------------------------------------ hand-computed
def test_each_metric_on_a_hand_computed_list():
    # Ranking 0 > 1 > 2 > 3 > 4 > 5; relevant {1, 4}: hits at ranks 2 and 5.
    dataset = make_dataset([0, 0, 0], [1, 4, 5], ["test", "test", "train"], num_users=1, num_items=7)
    scores = fixed_scores([[7, 6, 5, 4, 3, 2, 1]])  # item 5 is masked (train), so item 6 is 6th
    result = evaluate(scores, dataset, "test", EvalConfig(ks=(1, 3, 5), beyond_accuracy=False))
    m = result.metrics
    g3 = 1 / math.log2(3)
    assert m["recall@1"] == 0 and m["precision@1"] == 0 and m["hit@1"] == 0
    assert m["ndcg@1"] == 0 and m["mrr@1"] == 0 and m["map@1"] == 0
    assert m["recall@3"] == pytest.approx(1 / 2)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["hit@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx(g3 / (1 + g3))
    assert m["mrr@3"] == pytest.approx(1 / 2)
    assert m["map@3"] == pytest.approx((1 / 2) / 2)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["precision@5"] == pytest.approx(2 / 5)
    assert m["ndcg@5"] == pytest.approx((g3 + 1 / math.log2(6)) / (1 + g3))
    assert m["map@5"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    assert m["mrr"] == pytest.approx(1 / 2)
    assert list(m) == metric_names((1, 3, 5), beyond_accuracy=False)


def test_recall_divides_by_all_relevant_items_and_ndcg_ideal_is_truncated_at_k():
    # Five relevant items, K = 2, both top items relevant.
    dataset = make_dataset([0] * 5, [0, 1, 2, 3, 4], ["test"] * 5, num_users=1, num_items=8)
    result = evaluate(fixed_scores([[8, 7, 6, 5, 4, 3, 2, 1]]), dataset, "test",
                      EvalConfig(ks=(2,), beyond_accuracy=False))
    assert result.metrics["recall@2"] == pytest.approx(2 / 5)  # not 2 / min(5, 2)
    assert result.metrics["ndcg@2"] == pytest.approx(1.0)
    assert result.metrics["map@2"] == pytest.approx(1.0)


def test_metrics_are_averaged_over_users():
    dataset = make_dataset([0, 1], [0, 3], ["test", "test"], num_users=2, num_items=4)
    result = evaluate(fixed_scores([[4, 3, 2, 1], [4, 3, 2, 1]]), dataset, "test",
                      EvalConfig(ks=(1, 4), beyond_accuracy=False))
    assert result.metrics["hit@1"] == pytest.approx(0.5)
    assert result.metrics["mrr@4"] == pytest.approx((1 + 1 / 4) / 2)
    assert result.metrics["ndcg@4"] == pytest.approx((1 + 1 / math.log2(5)) / 2)
    np.testing.assert_allclose(result.per_user["mrr"], [1.0, 0.25])
    np.testing.assert_array_equal(result.users, [0, 1])


def test_precision_uses_nominal_k_when_fewer_items_can_be_ranked():
    dataset = make_dataset([0, 0], [0, 1], ["test", "train"], num_users=1, num_items=3)
    result = evaluate(fixed_scores([[1, 2, 3]]), dataset, "test", EvalConfig(ks=(10,), beyond_accuracy=False))
    # Candidates are items 0 and 2 only; the relevant item 0 is ranked 2nd.
    assert result.metrics["precision@10"] == pytest.approx(1 / 10)
    assert result.metrics["recall@10"] == pytest.approx(1.0)
    assert result.metrics["mrr@10"] == pytest.approx(1 / 2)


# ------------------------------------------------------------ reference check
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_reference_on_random_hit_patterns(seed):
    rng = np.random.default_rng(seed)
    num_users, length = 200, 30
    hits = rng.random((num_users, length)) < rng.uniform(0.02, 0.5)
    num_relevant = hits.sum(axis=1) + rng.integers(0, 6, num_users)
    num_relevant[num_relevant == 0] = 1
    ks = (1, 3, 10, 30, 45)  # 45 > list length: padded with misses
    fast = ranking_metrics(torch.as_tensor(hits), torch.as_tensor(num_relevant), ks)
    for user in range(num_users):
        for k in ks:
            expected = reference_list_metrics(list(hits[user]), int(num_relevant[user]), k)
            for name, value in expected.items():
                assert fast[f"{name}@{k}"][user].item() == pytest.approx(value, abs=1e-12), (user, name, k)


def test_reciprocal_rank_breaks_ties_by_lower_index_and_ignores_minus_inf():
    inf = float("-inf")
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0],    # relevant 2 tied with 1 (lower index): rank 2
                           [5.0, 5.0, 5.0, 1.0],    # relevant 0 first among ties: rank 1
                           [inf, 2.0, 1.0, inf],    # only relevant item at -inf: 0
                           [0.0, 1.0, 2.0, 3.0]])   # relevant 0 and 2: best is 2 at rank 2
    relevant = torch.tensor([[False, False, True, False], [True, False, True, False],
                             [True, False, False, False], [True, False, True, False]])
    np.testing.assert_allclose(reciprocal_rank(scores, relevant).numpy(), [1 / 2, 1.0, 0.0, 1 / 2])


def test_ranking_metrics_reject_users_without_ground_truth():
    with pytest.raises(ValueError, match="at least one ground-truth"):
        ranking_metrics(torch.zeros(2, 3, dtype=torch.bool), torch.tensor([1, 0]), (3,))


# ----------------------------------------------------------- beyond accuracy
def test_gini_index_hand_cases():
    assert gini_index(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    assert gini_index(np.array([0, 0, 0, 4])) == pytest.approx(3 / 4)
    # mean absolute difference form: sum |r_i - r_j| / (2 n sum r)
    counts = np.array([1, 2, 7])
    expected = np.abs(counts[:, None] - counts[None, :]).sum() / (2 * 3 * counts.sum())
    assert gini_index(counts) == pytest.approx(expected)


def test_beyond_accuracy_hand_computed():
    # 2 users, 4 items. Train popularity (distinct users): item0: 2, item1: 1, items 2, 3: 0.
    users = [0, 1, 0, 1, 0, 1]
    items = [0, 0, 1, 2, 3, 3]
    splits = ["train", "train", "train", "test", "test", "test"]
    dataset = make_dataset(users, items, splits, num_users=2, num_items=4)
    features = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    # user 0 has seen 0, 1 -> list [3, 2]; user 1 has seen 0 -> list [1, 3, 2]
    scores = fixed_scores([[9, 8, 1, 2], [9, 5, 2, 3]])
    result = evaluate(scores, dataset, "test", EvalConfig(ks=(1, 2)), item_features=features)
    m = result.metrics
    # p_i = (c_i + 1) / (3 train pairs + 4 items)
    info = {item: -math.log2((count + 1) / 7) for item, count in enumerate([2, 1, 0, 0])}
    assert m["coverage@1"] == pytest.approx(2 / 4)  # items 3 and 1
    assert m["coverage@2"] == pytest.approx(3 / 4)  # items 3, 2, 1
    assert m["gini@1"] == pytest.approx((1 * 1 + 3 * 1) / (4 * 2))  # sorted counts 0, 0, 1, 1; weights -3, -1, 1, 3
    assert m["gini@2"] == pytest.approx((-1 * 1 + 1 * 1 + 3 * 2) / (4 * 4))  # 0, 1, 1, 2
    assert m["avg_pop@1"] == pytest.approx((0 + 1) / 2)
    assert m["avg_pop@2"] == pytest.approx((0 + (1 + 0) / 2) / 2)
    assert m["novelty@1"] == pytest.approx((info[3] + info[1]) / 2)
    assert m["novelty@2"] == pytest.approx(((info[3] + info[2]) / 2 + (info[1] + info[3]) / 2) / 2)
    # [3, 2]: cos([1, 1], [0, 1]) = 1/sqrt(2); [1, 3]: cos([1, 0], [1, 1]) = 1/sqrt(2)
    assert m["ild@2"] == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-6)
    # one-item lists have no pairs: ILD@1 is undefined for every user and not reported
    assert np.isnan(result.per_user["ild@1"]).all() and "ild@1" not in m


def test_ild_is_one_for_orthogonal_and_zero_for_identical_features():
    dataset = make_dataset([0, 1], [0, 0], ["test", "test"], num_users=2, num_items=3)
    scores = fixed_scores([[3, 2, 1], [3, 2, 1]])
    orthogonal = evaluate(scores, dataset, "test", EvalConfig(ks=(3,)), item_features=np.eye(3))
    identical = evaluate(scores, dataset, "test", EvalConfig(ks=(3,)), item_features=np.ones((3, 4)))
    assert orthogonal.metrics["ild@3"] == pytest.approx(1.0)
    assert identical.metrics["ild@3"] == pytest.approx(0.0, abs=1e-6)
    without = evaluate(scores, dataset, "test", EvalConfig(ks=(3,)))
    assert "ild@3" not in without.metrics and "coverage@3" in without.metrics
    off = evaluate(scores, dataset, "test", EvalConfig(ks=(3,), beyond_accuracy=False))
    assert not any(name.startswith(("coverage", "gini", "novelty")) for name in off.metrics)


# ------------------------------------------------------------------ errors
def test_bad_config_and_bad_scores_are_reported():
    with pytest.raises(ValueError, match="ks"):
        EvalConfig(ks=(0, 10))
    with pytest.raises(ValueError, match="protocol"):
        EvalConfig(protocol="lukewarm")
    with pytest.raises(ValueError, match="batch_size"):
        EvalConfig(batch_size=0)
    dataset = make_dataset([0, 1], [0, 1], ["test", "test"], num_users=2, num_items=3)
    with pytest.raises(GraphrecError, match=r"shape \(2, 2\).*expected \(2, 3\)"):
        evaluate(lambda users: torch.zeros(len(users), 2), dataset)
    with pytest.raises(GraphrecError, match=r"NaN.*first: user 1"):
        evaluate(fixed_scores([[1, 2, 3], [np.nan, 0, 0]]), dataset)
    # a NaN on an item the user has seen is masked away and cannot change a ranking
    seen = make_dataset([0, 1, 1], [0, 1, 0], ["test", "test", "train"], num_users=2, num_items=3)
    assert evaluate(fixed_scores([[1, 2, 3], [np.nan, 0, 0]]), seen).num_users == 2
    with pytest.raises(GraphrecError, match=r"item_features must have shape \(3, d\)"):
        evaluate(fixed_scores(np.zeros((2, 3))), dataset, item_features=np.ones((4, 2)))
    with pytest.raises(ValueError, match="split"):
        evaluate(fixed_scores(np.zeros((2, 3))), dataset, split="train")
    with pytest.raises(GraphrecError, match="no user has warm ground truth in split 'valid'"):
        evaluate(fixed_scores(np.zeros((2, 3))), dataset, split="valid")

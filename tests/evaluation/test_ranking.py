"""The batched, vectorised evaluation against a slow pure-Python reference."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.errors import GraphrecError
from graphrec.evaluation import (
    EvalConfig,
    cold_items,
    evaluate,
    evaluate_embeddings,
    evaluate_many,
    evaluate_splits,
    top_k,
)
from graphrec.evaluation.ranking import metric_names


def make_dataset(users, items, splits, num_users: int, num_items: int, name: str = "t") -> Dataset:
    n = len(users)
    interactions = pd.DataFrame({
        "user": np.asarray(users, dtype=np.int32),
        "item": np.asarray(items, dtype=np.int32),
        "rating": np.full(n, np.nan, dtype=np.float32),
        "timestamp": pd.array([None] * n, dtype="Int64"),
        "split": pd.Categorical(list(splits), dtype=SPLIT_DTYPE),
    })
    return Dataset(name, interactions,
                   items=pd.DataFrame({"item_id": [str(i) for i in range(num_items)]}),
                   users=pd.DataFrame({"user_id": [str(u) for u in range(num_users)]}))


def random_dataset(seed: int, num_users: int = 60, num_items: int = 90, num_interactions: int = 1500,
                   cold_fraction: float = 0.0) -> Dataset:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, num_users, num_interactions)
    items = rng.integers(0, num_items, num_interactions)
    splits = rng.choice(np.array(["train", "valid", "test"]), num_interactions, p=[0.6, 0.15, 0.25])
    if cold_fraction:
        cold = items < int(cold_fraction * num_items)
        splits[cold] = rng.choice(np.array(["valid", "test"]), int(cold.sum()))
    return make_dataset(users, items, splits, num_users, num_items)


@pytest.fixture(scope="module")
def movielens(shared_data: Path) -> Dataset:
    frame = pd.read_csv(shared_data / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    rng = np.random.default_rng(2024)
    splits = rng.choice(np.array(["train", "valid", "test"]), len(frame), p=[0.7, 0.1, 0.2])
    return make_dataset(frame["user"] - 1, frame["item"] - 1, splits, 943, 1682, name="ml-100k")


# ------------------------------------------------------------- the reference
def reference_evaluate(scores: np.ndarray, dataset: Dataset, split: str, ks, protocol: str = "warm",
                       features: np.ndarray | None = None) -> tuple[dict[str, float], int]:
    """Loops over users and sorted lists; ties ranked by lower item index first."""
    frame = dataset.interactions
    by_split: dict[str, dict[int, set[int]]] = {name: defaultdict(set) for name in ("train", "valid", "test")}
    for user, item, name in zip(frame["user"].tolist(), frame["item"].tolist(), frame["split"].tolist()):
        by_split[name][user].add(item)
    masked_splits = ["train"] if split == "valid" else ["train", "valid"]
    trained = set().union(*by_split["train"].values())
    candidates = [i for i in range(dataset.num_items) if protocol == "warm" or i not in trained]
    candidate_set = set(candidates)
    popularity = [0] * dataset.num_items
    for items in by_split["train"].values():
        for item in items:
            popularity[item] += 1
    total = sum(popularity)

    per_user: dict[str, list[float]] = defaultdict(list)
    lists: dict[int, list[list[int]]] = defaultdict(list)
    skipped = 0
    for user in range(dataset.num_users):
        seen = set().union(*(by_split[name][user] for name in masked_splits))
        truth = {i for i in by_split[split][user] if i in candidate_set and i not in seen}
        if not truth:
            skipped += 1
            continue
        ranked = sorted((i for i in candidates if i not in seen and scores[user, i] != -np.inf),
                        key=lambda i: (-scores[user, i], i))
        first = next((rank for rank, item in enumerate(ranked, start=1) if item in truth), None)
        per_user["mrr"].append(0.0 if first is None else 1.0 / first)
        for k in ks:
            top = ranked[:k]
            lists[k].append(top)
            hits = [item in truth for item in top]
            dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(hits, start=1) if hit)
            idcg = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(truth), k) + 1))
            first_k = next((rank for rank, hit in enumerate(hits, start=1) if hit), None)
            correct, precision_sum = 0, 0.0
            for rank, hit in enumerate(hits, start=1):
                if hit:
                    correct += 1
                    precision_sum += correct / rank
            per_user[f"recall@{k}"].append(sum(hits) / len(truth))
            per_user[f"precision@{k}"].append(sum(hits) / k)
            per_user[f"hit@{k}"].append(float(any(hits)))
            per_user[f"ndcg@{k}"].append(dcg / idcg)
            per_user[f"mrr@{k}"].append(0.0 if first_k is None else 1.0 / first_k)
            per_user[f"map@{k}"].append(precision_sum / min(len(truth), k))
            if top:
                per_user[f"novelty@{k}"].append(
                    float(np.mean([-math.log2((popularity[i] + 1) / (total + dataset.num_items)) for i in top])))
                per_user[f"avg_pop@{k}"].append(float(np.mean([popularity[i] for i in top])))
            if features is not None and len(top) >= 2:
                vectors = features[top]
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=float), where=norms > 0)
                cosine = unit @ unit.T
                off_diagonal = ~np.eye(len(top), dtype=bool)
                per_user[f"ild@{k}"].append(float(np.mean(1.0 - cosine[off_diagonal])))
    metrics = {name: float(np.mean(values)) for name, values in per_user.items()}
    for k in ks:
        recommended = [item for top in lists[k] for item in top]
        metrics[f"coverage@{k}"] = len(set(recommended)) / len(candidates)
        counts = np.bincount(recommended, minlength=dataset.num_items)[candidates]
        metrics[f"gini@{k}"] = float(np.abs(counts[:, None] - counts[None, :]).sum()
                                     / (2 * len(counts) * counts.sum()))
    return metrics, skipped


def assert_same_metrics(fast: dict[str, float], reference: dict[str, float]) -> None:
    assert set(fast) == set(reference)
    for name, value in reference.items():
        assert fast[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


# ----------------------------------------------------------- random scores
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_matches_reference_on_random_scores_with_ties(seed, split):
    dataset = random_dataset(seed)
    rng = np.random.default_rng(100 + seed)
    # few distinct values: many ties, so the tie rule is exercised; some -inf from the scorer itself
    scores = rng.integers(0, 6, (dataset.num_users, dataset.num_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    features = rng.normal(size=(dataset.num_items, 5))
    features[:3] = 0.0  # items without the modality
    ks = (1, 5, 20, 100)  # 100 > number of items
    table = torch.as_tensor(scores)
    result = evaluate(lambda users: table[users], dataset, split, EvalConfig(ks=ks, batch_size=16),
                      item_features=features)
    expected, skipped = reference_evaluate(scores, dataset, split, ks, features=features)
    assert_same_metrics(result.metrics, expected)
    assert result.num_skipped_users == skipped
    assert result.num_users + result.num_skipped_users == dataset.num_users


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference_on_tie_free_scores(seed):
    dataset = random_dataset(seed, num_users=80, num_items=120)
    rng = np.random.default_rng(seed)
    scores = np.stack([rng.permutation(dataset.num_items) for _ in range(dataset.num_users)]).astype(np.float64)
    table = torch.as_tensor(scores)
    ks = (3, 10, 50)
    result = evaluate(lambda users: table[users], dataset, "test", EvalConfig(ks=ks, batch_size=7))
    expected, skipped = reference_evaluate(scores, dataset, "test", ks)
    assert_same_metrics(result.metrics, expected)
    assert result.num_skipped_users == skipped


@pytest.mark.parametrize("protocol", ["warm", "cold"])
def test_evaluate_many_equals_evaluate_of_each_even_when_scorings_share_a_tensor(protocol):
    """One pass over the users for several scorings, one tensor standing for two of them (as the graph
    filters return it for settings that come to the same scores): each is measured as evaluate would."""
    dataset = random_dataset(7, cold_fraction=0.2 if protocol == "cold" else 0.0)
    rng = np.random.default_rng(3)
    tables = [torch.as_tensor(rng.normal(size=(dataset.num_users, dataset.num_items)).astype(np.float32))
              for _ in range(2)]
    config = EvalConfig(ks=(5, 20), batch_size=9, protocol=protocol, beyond_accuracy=False)

    def score_fn(users):
        first, second = tables[0][users].clone(), tables[1][users].clone()
        return [first, second, first]  # the first scoring twice, as one tensor

    many = evaluate_many(score_fn, 3, dataset, "test", config)
    single = [evaluate(lambda users, t=table: t[users], dataset, "test", config).metrics for table in tables]
    assert many[0].metrics == single[0] and many[2].metrics == single[0] and many[1].metrics == single[1]


@pytest.mark.parametrize("splits", [("valid", "test"), ("test", "valid")])
@pytest.mark.parametrize("owns_scores", [False, True])
def test_evaluate_splits_equals_evaluate_of_each_split(owns_scores, splits):
    """Valid and test in one pass (one tensor a batch, which both mask in turn), over users that only
    one of them evaluates as well as both: each split's metrics and per-user measures are evaluate's."""
    dataset = random_dataset(11, num_interactions=400)
    valid_users = set(dataset.interactions.query("split == 'valid'")["user"])
    test_users = set(dataset.interactions.query("split == 'test'")["user"])
    assert valid_users - test_users and test_users - valid_users and valid_users & test_users
    table = torch.as_tensor(np.random.default_rng(4).normal(size=(dataset.num_users, dataset.num_items)),
                            dtype=torch.float32)
    calls = []

    def score_fn(users):
        calls.append(len(users))
        return table[users].clone() if owns_scores else table[users]

    config = EvalConfig(ks=(5, 20), batch_size=7)
    results = evaluate_splits(score_fn, dataset, list(splits), config, owns_scores=owns_scores)
    assert sum(calls) == len(valid_users | test_users)
    for result, split in zip(results, splits):
        assert result.split == split
        alone = evaluate(lambda users: table[users], dataset, split, config)
        assert result.metrics == alone.metrics
        np.testing.assert_array_equal(result.users, alone.users)
        for name, values in alone.per_user.items():
            np.testing.assert_array_equal(result.per_user[name], values)


def test_batch_size_does_not_change_results():
    dataset = random_dataset(5)
    table = torch.as_tensor(np.random.default_rng(5).integers(0, 4, (60, 90)).astype(np.float32))
    features = np.random.default_rng(6).normal(size=(90, 3))
    results = [evaluate(lambda users: table[users], dataset, "test", EvalConfig(batch_size=b),
                        item_features=features) for b in (1, 7, 60, 4096)]
    for other in results[1:]:
        assert other.metrics == pytest.approx(results[0].metrics, rel=1e-12, nan_ok=True)
        np.testing.assert_array_equal(other.users, results[0].users)
        for name, values in results[0].per_user.items():
            np.testing.assert_allclose(other.per_user[name], values, rtol=1e-12)


def test_skipped_users_are_counted():
    # users 0 and 2 have test items, user 1 only train, user 3 nothing, user 4 a test item it also trained on
    dataset = make_dataset([0, 1, 2, 2, 4, 4], [0, 1, 2, 3, 1, 1],
                           ["test", "train", "test", "test", "train", "test"], num_users=5, num_items=4)
    result = evaluate(lambda users: torch.zeros(len(users), 4), dataset, "test", EvalConfig(ks=(2,)))
    assert result.num_users == 2
    assert result.num_skipped_users == 3
    assert result.num_seen_ground_truth == 1
    np.testing.assert_array_equal(result.users, [0, 2])
    assert len(result.per_user["recall@2"]) == 2
    assert result.to_dict()["num_skipped_users"] == 3


def test_scores_returned_by_score_fn_are_not_modified():
    dataset = random_dataset(0)
    table = torch.randn(60, 90)
    before = table.clone()
    evaluate(lambda users: table, dataset, "test", EvalConfig(batch_size=1000))
    assert torch.equal(table, before)


# ------------------------------------------------------------ top-k rule
def test_top_k_orders_ties_by_lower_index_like_a_stable_sort():
    rng = np.random.default_rng(0)
    scores = torch.as_tensor(rng.integers(0, 3, (200, 40)).astype(np.float32))
    scores[rng.random((200, 40)) < 0.3] = float("-inf")
    for k in (1, 5, 17, 40, 60):
        values, columns = top_k(scores, k)
        expected_values, expected_columns = torch.sort(scores, dim=1, descending=True, stable=True)
        assert torch.equal(columns, expected_columns[:, :k])
        assert torch.equal(values, expected_values[:, :k])


def test_k_larger_than_candidates():
    dataset = make_dataset([0, 0, 0], [0, 1, 2], ["train", "train", "test"], num_users=1, num_items=3)
    result = evaluate(lambda users: torch.tensor([[3.0, 2.0, 1.0]]), dataset, "test", EvalConfig(ks=(1, 50)))
    assert result.metrics["recall@1"] == 1.0 and result.metrics["precision@50"] == pytest.approx(1 / 50)
    assert result.metrics["coverage@50"] == pytest.approx(1 / 3)  # masked items are not recommended


# ----------------------------------------------------------- cold protocol
def test_cold_items_are_those_without_training_interactions():
    dataset = make_dataset([0, 0, 1, 1], [0, 2, 2, 4], ["train", "test", "train", "valid"],
                           num_users=2, num_items=6)
    np.testing.assert_array_equal(cold_items(dataset), [1, 3, 4, 5])


@pytest.mark.parametrize("split", ["valid", "test"])
def test_cold_protocol_matches_reference(split):
    dataset = random_dataset(3, num_users=70, num_items=100, cold_fraction=0.2)
    assert len(cold_items(dataset)) >= 20
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, (70, 100)).astype(np.float32)
    table = torch.as_tensor(scores)
    ks = (2, 10, 30)  # 30 > number of cold items left for some users
    features = rng.normal(size=(100, 4))
    result = evaluate(lambda users: table[users], dataset, split, EvalConfig(ks=ks, protocol="cold"),
                      item_features=features)
    expected, skipped = reference_evaluate(scores, dataset, split, ks, protocol="cold", features=features)
    assert_same_metrics(result.metrics, expected)
    assert result.num_skipped_users == skipped and result.protocol == "cold"


def test_cold_protocol_ranks_only_cold_items_and_skips_users_without_cold_truth():
    # item 0 warm (trained), items 1, 2 cold. user 0: test items 0 (warm) and 2 (cold); user 1: only warm 0.
    dataset = make_dataset([2, 0, 0, 1], [0, 0, 2, 0], ["train", "test", "test", "test"],
                           num_users=3, num_items=3)
    scores = torch.tensor([[9.0, 5.0, 1.0], [9.0, 5.0, 1.0], [0.0, 0.0, 0.0]])
    result = evaluate(lambda users: scores[users], dataset, "test", EvalConfig(ks=(1, 2), protocol="cold"))
    assert result.num_users == 1 and result.num_skipped_users == 2
    # warm item 0 scores highest but is no candidate: ranking is [1, 2]
    assert result.metrics["recall@1"] == 0.0 and result.metrics["mrr@2"] == pytest.approx(1 / 2)
    assert result.metrics["coverage@1"] == pytest.approx(1 / 2)
    warm = evaluate(lambda users: scores[users], dataset, "test", EvalConfig(ks=(1,)))
    assert warm.num_users == 2 and warm.metrics["recall@1"] == pytest.approx((1 / 2 + 1) / 2)


def test_cold_protocol_without_cold_items_is_an_error():
    dataset = make_dataset([0, 0, 1], [0, 1, 1], ["train", "test", "train"], num_users=2, num_items=2)
    with pytest.raises(GraphrecError, match="cold protocol"):
        evaluate(lambda users: torch.zeros(len(users), 2), dataset, "test", EvalConfig(protocol="cold"))


# ------------------------------------------------------------- real data
@pytest.mark.parametrize("kind", ["gaussian", "integer"])
def test_movielens_random_embeddings_match_reference(movielens, kind):
    generator = torch.Generator().manual_seed(7)
    if kind == "gaussian":
        user_emb = torch.randn(943, 16, generator=generator, dtype=torch.float64)
        item_emb = torch.randn(1682, 16, generator=generator, dtype=torch.float64)
    else:  # exact integer scores with many ties
        user_emb = torch.randint(-2, 3, (943, 6), generator=generator).float()
        item_emb = torch.randint(-2, 3, (1682, 6), generator=generator).float()
    features = torch.randn(1682, 8, generator=generator).numpy()
    ks = (10, 20, 50)
    result = evaluate_embeddings(user_emb, item_emb, movielens, "test", EvalConfig(ks=ks, batch_size=256),
                                 item_features=features)
    scores = (user_emb @ item_emb.T).numpy()
    expected, skipped = reference_evaluate(scores, movielens, "test", ks, features=features)
    assert_same_metrics(result.metrics, expected)
    assert result.num_users + skipped == 943 and result.num_skipped_users == skipped
    assert 0.0 < result.metrics["recall@20"] < 0.2  # random embeddings are far from perfect


def test_evaluate_embeddings_checks_shapes(movielens):
    with pytest.raises(GraphrecError, match="943 and 1682"):
        evaluate_embeddings(torch.zeros(943, 4), torch.zeros(1000, 4), movielens)
    with pytest.raises(GraphrecError, match=r"\[num_users, d\]"):
        evaluate_embeddings(torch.zeros(943, 4), torch.zeros(1682, 5), movielens)


def test_diversity_features_may_require_grad_and_numpy_cut_offs_are_accepted():
    dataset = random_dataset(3)
    features = torch.randn(dataset.num_items, 4, requires_grad=True)
    scores = torch.randn(dataset.num_users, dataset.num_items)
    metrics = evaluate(lambda users: scores[users], dataset, "test",
                       EvalConfig(ks=(np.int64(5), np.int64(10))), item_features=features).metrics
    assert 0.0 <= metrics["ild@10"] <= 2.0 and "ild@1" not in metrics
    assert list(metrics) == metric_names((5, 10))


def test_diversity_of_a_run_weighs_each_modality_alike():
    from graphrec.data.dataset import ModalityFeatures
    from graphrec.training.run import _item_features_for_diversity

    dataset = random_dataset(4)
    rng = np.random.default_rng(0)
    text = rng.normal(size=(dataset.num_items, 8)).astype(np.float32)
    image = 50.0 * np.abs(rng.normal(size=(dataset.num_items, 8))).astype(np.float32)  # CNN-like norms
    mask = np.ones(dataset.num_items, bool)
    dataset = dataset.with_features(ModalityFeatures("text", text, mask)).with_features(
        ModalityFeatures("image", image, mask))
    features = _item_features_for_diversity(dataset)
    torch.testing.assert_close(features[:, :8].norm(dim=1), torch.ones(dataset.num_items))
    torch.testing.assert_close(features[:, 8:].norm(dim=1), torch.ones(dataset.num_items))

"""Agreement with OGB's link-prediction evaluators where the definitions coincide.

Leave-one-out on MovieLens-100K gives every user a single held-out test item, so
OGB's per-edge MRR (ogbl-citation2: the positive ranked among its negatives) and
Hits@K (ogbl-ddi / -collab / -ppa: the positive beats the K-th best negative) are
per-user measures. The negatives of a user are all items that are not masked:
everything except the user's train and validation items and the positive itself.
OGB ranks ties pessimistically/optimistically averaged, graphrec by item index,
so the scores here are tie-free.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ogb.linkproppred import Evaluator

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.evaluation import EvalConfig, evaluate

NUM_USERS, NUM_ITEMS = 943, 1682


@pytest.fixture(scope="module")
def leave_one_out(shared_data: Path) -> Dataset:
    frame = pd.read_csv(shared_data / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    frame = frame.sort_values(["user", "timestamp", "item"], kind="stable")
    from_last = frame.groupby("user").cumcount(ascending=False).to_numpy()
    split = np.where(from_last == 0, "test", np.where(from_last == 1, "valid", "train"))
    n = len(frame)
    interactions = pd.DataFrame({
        "user": (frame["user"].to_numpy() - 1).astype(np.int32),
        "item": (frame["item"].to_numpy() - 1).astype(np.int32),
        "rating": frame["rating"].to_numpy(np.float32),
        "timestamp": pd.array(frame["timestamp"].to_numpy(), dtype="Int64"),
        "split": pd.Categorical(split, dtype=SPLIT_DTYPE),
    })
    assert n == 100_000
    return Dataset("ml-100k-loo", interactions,
                   items=pd.DataFrame({"item_id": [str(i) for i in range(1, NUM_ITEMS + 1)]}),
                   users=pd.DataFrame({"user_id": [str(u) for u in range(1, NUM_USERS + 1)]}))


@pytest.fixture(scope="module", params=["permutation", "embeddings"])
def scores(request) -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    if request.param == "permutation":  # tie-free by construction
        return torch.rand(NUM_USERS, NUM_ITEMS, generator=generator).argsort(dim=1).to(torch.float32)
    user_emb = torch.randn(NUM_USERS, 32, generator=generator, dtype=torch.float64)
    item_emb = torch.randn(NUM_ITEMS, 32, generator=generator, dtype=torch.float64)
    return user_emb @ item_emb.T


def positives_and_negatives(dataset: Dataset, scores: torch.Tensor, users: np.ndarray):
    """Per user: the held-out item's score and the scores of every other unmasked item."""
    seen = dataset.csr(["train", "valid"]).toarray().astype(bool)
    test_users, test_items = dataset.pairs("test")
    positive_item = dict(zip(test_users.tolist(), test_items.tolist()))
    positives, negatives = [], []
    for user in users.tolist():
        item = positive_item[user]
        keep = ~seen[user]
        keep[item] = False
        row = scores[user].numpy()
        assert not np.isin(row[keep], row[item]).any(), "a tie with the positive would make OGB differ"
        positives.append(row[item])
        negatives.append(row[keep])
    return np.array(positives), negatives


def test_full_mrr_and_hits_match_ogbl_citation2(leave_one_out, scores):
    result = evaluate(lambda users: scores[users], leave_one_out, "test",
                      EvalConfig(ks=(1, 3, 10, NUM_ITEMS), batch_size=300, beyond_accuracy=False))
    assert result.num_users == NUM_USERS and result.num_skipped_users == 0
    positives, negatives = positives_and_negatives(leave_one_out, scores, result.users)
    width = max(len(row) for row in negatives)
    # -inf padding never outranks a positive, so it leaves OGB's ranks unchanged.
    padded = np.full((len(negatives), width), -np.inf)
    for row, values in enumerate(negatives):
        padded[row, :len(values)] = values
    ogb = Evaluator(name="ogbl-citation2").eval({"y_pred_pos": torch.as_tensor(positives),
                                                 "y_pred_neg": torch.as_tensor(padded)})
    np.testing.assert_allclose(result.per_user["mrr"], ogb["mrr_list"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.per_user[f"mrr@{NUM_ITEMS}"], ogb["mrr_list"].numpy(), rtol=1e-6)
    assert result.metrics["mrr"] == pytest.approx(float(ogb["mrr_list"].mean()), rel=1e-6)
    for k in (1, 3, 10):
        np.testing.assert_array_equal(result.per_user[f"hit@{k}"], ogb[f"hits@{k}_list"].numpy())


@pytest.mark.parametrize("name", ["ogbl-ddi", "ogbl-collab", "ogbl-ppa"])
def test_hit_rate_matches_ogb_hits_at_k(leave_one_out, scores, name):
    evaluator = Evaluator(name=name)
    k = evaluator.K
    result = evaluate(lambda users: scores[users], leave_one_out, "test",
                      EvalConfig(ks=(k,), beyond_accuracy=False))
    positives, negatives = positives_and_negatives(leave_one_out, scores, result.users)
    ogb_hits = np.array([evaluator.eval({"y_pred_pos": positives[row:row + 1], "y_pred_neg": negatives[row]})
                         [f"hits@{k}"] for row in range(len(positives))])
    assert 0 < ogb_hits.sum() < len(ogb_hits)  # both outcomes occur, so the comparison means something
    np.testing.assert_array_equal(result.per_user[f"hit@{k}"], ogb_hits)
    assert result.metrics[f"hit@{k}"] == pytest.approx(ogb_hits.mean())
    # with one relevant item, recall@K is the hit rate
    assert result.metrics[f"recall@{k}"] == pytest.approx(ogb_hits.mean())

"""Recommendations from real trained runs: nothing seen, the true top-k, original ids, cold items, new users."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphrec.data.convert import ConvertConfig, convert
from graphrec.errors import GraphrecError
from graphrec.evaluation import cold_items
from graphrec.serving import new_user_recommend, recommend
from graphrec.training.run import ModelConfig, TrainConfig, load_run, train

QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def movielens_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    dataset = convert("movielens", shared_data / "ml-100k", root / "ml",
                      ConvertConfig(min_rating=3, split="random")).dataset
    return train(dataset, ModelConfig("lightgcn", dim=16), TrainConfig(epochs=2, progress=False, batch_size=4096),
                 out=root / "run", **QUIET)


@pytest.fixture(scope="module")
def synthetic_gat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving_gat")
    dataset = convert("synthetic", "-", root / "syn", reader_options={"users": 200, "items": 150}).dataset
    config = TrainConfig(epochs=2, progress=False, batch_size=4096)
    return train(dataset, ModelConfig("gat", dim=16, layers=1), config, out=root / "run", **QUIET)


def _items_by_user(dataset, splits=("train", "valid", "test")) -> dict[int, set[int]]:
    inter = dataset.interactions[dataset.interactions["split"].isin(list(splits))]
    return {int(user): set(items.tolist()) for user, items in inter.groupby("user", observed=True)["item"]}


def _user_index(dataset, user_id: str) -> int:
    return int(np.flatnonzero(dataset.users["user_id"].astype(str).to_numpy() == user_id)[0])


def _item_index(dataset) -> dict[str, int]:
    return {item_id: index for index, item_id in enumerate(dataset.items["item_id"].astype(str))}


def test_recommendations_are_the_best_unseen_items_with_original_ids(movielens_run):
    dataset = movielens_run.dataset
    seen = _items_by_user(dataset)
    user_ids = dataset.users["user_id"].sample(30, random_state=0).tolist()
    recommendations = recommend(movielens_run, user_ids, k=20, explain=False)
    user_emb, item_emb = movielens_run.embeddings()
    index_of = _item_index(dataset)
    assert [r.user_id for r in recommendations] == [str(u) for u in user_ids]
    for rec in recommendations:
        user = _user_index(dataset, rec.user_id)
        items = np.array([index_of[item_id] for item_id in rec.items])
        assert len(items) == 20 and len(set(items)) == 20
        assert not set(items) & seen.get(user, set())
        assert np.all(np.diff(rec.scores) <= 0)
        full = movielens_run.model.full_scores(user_emb, item_emb, torch.tensor([user]))[0].numpy()
        np.testing.assert_allclose(rec.scores, full[items], rtol=1e-6)
        # and they are the best 20: the 20 highest scores among every unseen item
        unseen = np.setdiff1d(np.arange(dataset.num_items), sorted(seen.get(user, set())))
        np.testing.assert_allclose(rec.scores, np.sort(full[unseen])[::-1][:20], rtol=1e-6)


def test_without_exclusion_seen_items_compete(movielens_run):
    dataset = movielens_run.dataset
    heavy = dataset.interactions["user"].value_counts().index[0]
    user_id = str(dataset.users["user_id"].iat[heavy])
    rec = recommend(movielens_run, [user_id], k=50, explain=False, exclude_seen=False)[0]
    user_emb, item_emb = movielens_run.embeddings()
    full = movielens_run.model.full_scores(user_emb, item_emb, torch.tensor([heavy]))[0].numpy()
    np.testing.assert_allclose(rec.scores, np.sort(full)[::-1][:50], rtol=1e-6)
    index_of = _item_index(dataset)
    assert {index_of[i] for i in rec.items} & _items_by_user(dataset)[heavy]


def test_unknown_user_is_named_with_suggestions(movielens_run):
    with pytest.raises(GraphrecError, match="'no-such-user'") as error:
        recommend(movielens_run, ["1", "no-such-user"], k=5)
    known = set(movielens_run.dataset.users["user_id"].astype(str))
    suggested = [word.strip("',") for word in str(error.value).split("such as", 1)[1].split()]
    assert suggested and set(suggested) <= known


def test_k_beyond_the_catalogue_returns_every_unseen_item(movielens_run):
    dataset = movielens_run.dataset
    user_id = str(dataset.users["user_id"].iat[3])
    rec = recommend(movielens_run, [user_id], k=dataset.num_items + 100, explain=False)[0]
    seen = _items_by_user(dataset)[3]
    index_of = _item_index(dataset)
    assert sorted(index_of[i] for i in rec.items) == sorted(set(range(dataset.num_items)) - seen)
    assert len(rec.scores) == len(rec.items) and np.all(np.isfinite(rec.scores))
    with pytest.raises(GraphrecError, match="k must be at least 1"):
        recommend(movielens_run, [user_id], k=0)


def test_a_reloaded_run_recommends_the_same(movielens_run):
    user_ids = ["1", "7", "42"]
    reloaded = load_run(movielens_run.path)
    before = recommend(movielens_run, user_ids, k=10)
    after = recommend(reloaded, user_ids, k=10)
    assert [r.items for r in before] == [r.items for r in after]
    for a, b in zip(before, after):
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5)


def test_recommendations_are_json_serialisable(movielens_run):
    rec = recommend(movielens_run, ["1"], k=5)[0]
    payload = json.loads(json.dumps(rec.to_dict()))
    assert payload == rec.to_dict()
    again = recommend(movielens_run, "1", k=5)[0].to_dict()  # a lone id is one user, not characters
    assert again["user_id"] == "1" and again["items"] == payload["items"]
    assert again["scores"] == pytest.approx(payload["scores"], rel=1e-5)  # a fresh forward pass (GPU: to rounding)
    assert payload["user_id"] == "1" and len(payload["items"]) == 5
    assert [e["item_id"] for e in payload["explanations"]] == payload["items"]
    assert all(set(b) == {"item_id", "similarity"} for e in payload["explanations"] for b in e["because_of"])


def test_cold_items_stay_candidates(synthetic_gat_run):
    dataset = synthetic_gat_run.dataset
    cold = cold_items(dataset)
    assert len(cold) > 0, "the synthetic dataset is expected to hold cold items"
    seen = _items_by_user(dataset)
    index_of = _item_index(dataset)
    user_ids = dataset.users["user_id"].astype(str).tolist()[:20]
    for rec in recommend(synthetic_gat_run, user_ids, k=dataset.num_items, explain=False):
        user = _user_index(dataset, rec.user_id)
        ranked = {index_of[i] for i in rec.items}
        assert set(cold.tolist()) - seen.get(user, set()) <= ranked
        assert np.all(np.isfinite(rec.scores))


def test_new_user_fold_in_beats_random(movielens_run):
    """Folding in a user's training items ranks their held-out items far above chance."""
    dataset = movielens_run.dataset
    train_items = _items_by_user(dataset, ("train",))
    held_out = _items_by_user(dataset, ("valid", "test"))
    item_ids = dataset.items["item_id"].astype(str).to_numpy()
    index_of = _item_index(dataset)
    candidates = [u for u in sorted(held_out) if len(train_items.get(u, ())) >= 10 and len(held_out[u]) >= 5]
    users = np.random.default_rng(0).choice(candidates, size=40, replace=False)
    recall, random_recall = [], []
    for user in users:
        given = sorted(train_items[user])
        rec = new_user_recommend(movielens_run, item_ids[given].tolist(), k=20, explain=False)
        ranked = {index_of[i] for i in rec.items}
        assert not ranked & set(given) and len(ranked) == 20
        recall.append(len(ranked & held_out[user]) / len(held_out[user]))
        # a random 20 of the candidates finds each held-out item with probability 20 / candidates
        random_recall.append(20 / (dataset.num_items - len(given)))
    print(f"fold-in recall@20 {np.mean(recall):.4f} vs random {np.mean(random_recall):.4f}")
    assert np.mean(recall) > 4 * np.mean(random_recall)


def test_new_user_explanations_point_to_the_given_items(movielens_run):
    given = ["1", "50", "100", "181"]
    rec = new_user_recommend(movielens_run, [*given, "50"], k=10)
    assert not set(rec.items) & set(given)
    assert len(rec.explanations) == 10
    for explanation in rec.explanations:
        assert {item for item, _ in explanation.because_of} <= set(given)
        assert len(explanation.because_of) == 3


def test_new_user_input_errors(movielens_run):
    with pytest.raises(GraphrecError, match="'not-an-item'"):
        new_user_recommend(movielens_run, ["1", "not-an-item"])
    with pytest.raises(GraphrecError, match="at least one item"):
        new_user_recommend(movielens_run, [])

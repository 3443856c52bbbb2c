"""Explanations: nearest training items by cosine, and GAT modality attention weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrec.data.convert import ConvertConfig, convert
from graphrec.graph import GraphConfig, build_graph
from graphrec.models import ModalityGAT
from graphrec.serving import modality_weights, nearest_history_items, recommend
from graphrec.training.run import ModelConfig, TrainConfig, train

QUIET = dict(log=lambda _: None)
FAST = TrainConfig(epochs=2, progress=False, batch_size=4096)


@pytest.fixture(scope="module")
def movielens_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    dataset = convert("movielens", shared_data / "ml-100k", root / "ml",
                      ConvertConfig(min_rating=3, split="random")).dataset
    return train(dataset, ModelConfig("lightgcn", dim=16), FAST, out=root / "run", **QUIET)


@pytest.fixture(scope="module")
def gat_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain_gat")
    dataset = convert("synthetic", "-", root / "syn", reader_options={"users": 200, "items": 150}).dataset
    return train(dataset, ModelConfig("gat", dim=16, layers=1), FAST, out=root / "run", **QUIET)


def _cosine(item_emb: np.ndarray) -> np.ndarray:
    unit = item_emb / np.linalg.norm(item_emb, axis=1, keepdims=True)
    return unit @ unit.T


def test_because_of_is_the_users_most_similar_training_items(movielens_run):
    dataset = movielens_run.dataset
    train_pairs = dataset.interactions[dataset.interactions["split"] == "train"]
    index_of = {item_id: i for i, item_id in enumerate(dataset.items["item_id"].astype(str))}
    cosine = _cosine(movielens_run.embeddings()[1].numpy().astype(np.float64))
    user_ids = dataset.users["user_id"].astype(str).sample(15, random_state=1).tolist()
    for rec in recommend(movielens_run, user_ids, k=10, explain=True):
        user = int(np.flatnonzero(dataset.users["user_id"].astype(str).to_numpy() == rec.user_id)[0])
        history = np.array(sorted(train_pairs.loc[train_pairs["user"] == user, "item"]))
        assert len(rec.explanations) == len(rec.items) == 10
        for item_id, explanation in zip(rec.items, rec.explanations):
            assert explanation.item_id == item_id
            assert explanation.modality_weights is None  # LightGCN has no modality attention
            because = [index_of[i] for i, _ in explanation.because_of]
            similarities = [s for _, s in explanation.because_of]
            assert len(because) == min(3, len(history))
            assert set(because) <= set(history.tolist())
            assert similarities == sorted(similarities, reverse=True)
            expected = np.sort(cosine[index_of[item_id], history])[::-1][:3]
            np.testing.assert_allclose(similarities, expected, atol=1e-5)
            np.testing.assert_allclose(similarities, cosine[index_of[item_id], because], atol=1e-5)


def test_an_item_never_explains_itself(movielens_run):
    dataset = movielens_run.dataset
    heavy = int(dataset.interactions["user"].value_counts().index[0])
    user_id = str(dataset.users["user_id"].iat[heavy])
    rec = recommend(movielens_run, [user_id], k=30, exclude_seen=False)[0]
    trained = set(dataset.items["item_id"].astype(str).to_numpy()[dataset.csr("train")[heavy].indices])
    assert set(rec.items) & trained, "expected some of the heavy user's training items at the top"
    for explanation in rec.explanations:
        assert explanation.item_id not in {item for item, _ in explanation.because_of}


def test_explain_false_gives_no_explanations(movielens_run):
    assert recommend(movielens_run, ["1"], k=3, explain=False)[0].explanations is None


def test_gat_modality_weights_are_a_distribution_over_sources(gat_run):
    dataset = gat_run.dataset
    model = gat_run.model
    names, attention = model.modality_attention()
    assert names, "the synthetic GAT should attend over its entity sources"
    index_of = {item_id: i for i, item_id in enumerate(dataset.items["item_id"].astype(str))}
    recommendations = recommend(gat_run, dataset.users["user_id"].astype(str).tolist()[:10], k=10)
    for rec in recommendations:
        for explanation in rec.explanations:
            weights = explanation.modality_weights
            assert weights is not None and list(weights) == names
            assert all(w >= 0 for w in weights.values())
            assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(list(weights.values()), attention[index_of[explanation.item_id]].cpu().numpy(),
                                       atol=1e-6)
            assert len(explanation.because_of) <= 3
    # the weights differ between items: they are per-item attention, not a constant
    distinct = {tuple(round(w, 4) for w in e.modality_weights.values())
                for rec in recommendations for e in rec.explanations}
    assert len(distinct) > 1


def test_gat_without_attention_fusion_has_no_modality_weights(gat_run):
    graph = build_graph(gat_run.dataset, GraphConfig())
    model = ModalityGAT.from_graph(graph, dim=8, num_layers=1, fusion="mean")
    model.embed()
    assert modality_weights(model) is None
    assert modality_weights(gat_run.model) is not None


def test_nearest_history_items_handles_empty_and_short_histories():
    item_emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [0.7, 0.7]])
    history = sp.csr_matrix(np.array([[0, 1, 1, 1, 0],     # three history items
                                      [0, 0, 0, 0, 0],     # none
                                      [1, 0, 0, 0, 1]],    # two, one of them the explained item
                                     dtype=np.float32))
    items = np.array([[0, 4], [0, -1], [0, 2]])
    indices, similarities = nearest_history_items(item_emb, history, items, top=3)
    assert indices.shape == similarities.shape == (3, 2, 3)
    cosine = _cosine(item_emb.numpy().astype(np.float64))
    assert indices[0, 0].tolist() == [1, 2, 3]
    np.testing.assert_allclose(similarities[0, 0], cosine[0, [1, 2, 3]], atol=1e-6)
    assert indices[0, 1].tolist() == [1, 2, 3]  # cosine to item 4: 0.78, 0.71, -0.71
    np.testing.assert_allclose(similarities[0, 1], cosine[4, [1, 2, 3]], atol=1e-6)
    assert (indices[1] == -1).all() and np.isnan(similarities[1]).all()
    assert indices[2, 0].tolist() == [4, -1, -1]  # item 0 is in the history but does not explain itself
    assert indices[2, 1].tolist() == [4, 0, -1]
    np.testing.assert_allclose(similarities[2, 1, :2], cosine[2, [4, 0]], atol=1e-6)


def test_one_dimensional_embeddings_explain_nothing():
    history = sp.csr_matrix(np.array([[1, 1, 1, 0]], dtype=np.float32))
    popularity = torch.tensor([[3.0], [2.0], [1.0], [4.0]])
    indices, similarities = nearest_history_items(popularity, history, np.array([[3]]))
    assert (indices == -1).all() and np.isnan(similarities).all()

"""The multimodal graph filter: against a dense NumPy reference, cold items reachable through content,
staged selection on validation (never the test split), explanations by contribution, option errors."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from test_graph_filters import COLD_ITEM, NUM_ITEMS, NUM_USERS, dense_filters, gfcf_reference, random_dataset

from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.errors import ConfigError, GraphrecError
from graphrec.evaluation import EvalConfig
from graphrec.models import ModelConfig, MultimodalGraphFilter, MultimodalGraphFilterOptions, build_model
from graphrec.serving.explain import contributing_history_items, explain_items
from graphrec.training.selection import select_on_validation


def with_features(dataset: Dataset, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    for name, dim in (("text", 6), ("image", 4)):
        mask = rng.random(NUM_ITEMS) > 0.1
        mask[COLD_ITEM] = True
        values = rng.standard_normal((NUM_ITEMS, dim)).astype(np.float32) * mask[:, None]
        dataset = dataset.with_features(ModalityFeatures(name, values, mask))
    return dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return with_features(random_dataset())


def knn_reference(values: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """The symmetrised binary k-NN cosine graph, D^-1/2 A D^-1/2, densely."""
    unit = values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    adjacency = np.zeros_like(sims, dtype=np.float64)
    have = np.flatnonzero(mask)
    for i in have:
        others = sorted((j for j in have if j != i), key=lambda j: (-sims[i, j], j))[:k]
        adjacency[i, others] = 1.0
    adjacency = np.maximum(adjacency, adjacency.T)
    degree = adjacency.sum(1)
    inv = np.divide(1.0, np.sqrt(degree), out=np.zeros_like(degree), where=degree > 0)
    return inv[:, None] * adjacency * inv[None, :]


def mmgf_reference(dataset: Dataset, alpha: float, k: int, weights: dict[str, float], neighbours: int) -> np.ndarray:
    f = dense_filters(dataset)
    scores = gfcf_reference(f, alpha, k)
    degree = f["r"].sum(0)
    for name, weight in weights.items():
        feature = dataset.features[name]
        content = knn_reference(feature.values.astype(np.float64), feature.mask, neighbours)
        scale = (degree @ f["p"]).sum() / (degree @ content).sum()
        scores = scores + weight * scale * f["r"] @ content
    return scores


def test_mmgf_equals_the_dense_reference_and_reaches_cold_items(dataset):
    options = MultimodalGraphFilterOptions(alpha=0.3, k=12, solver="dense", neighbours=4, map_ridge=0.3,
                                           map_share=0.0, modality_weights=("text=0.5", "image=2"))
    model = MultimodalGraphFilter.from_dataset(dataset, options)
    model.select({})
    scores = model.scorer()(torch.arange(NUM_USERS)).numpy()
    expected = mmgf_reference(dataset, 0.3, 12, {"text": 0.5, "image": 2.0}, 4)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    # GF-CF cannot score the cold item; through its content neighbours it now scores for most users
    assert (scores[:, COLD_ITEM] > 0).mean() > 0.5
    # a modality not named weighs 0; with every weight 0 the model is GF-CF
    no_content = MultimodalGraphFilter.from_dataset(dataset, dataclasses.replace(options, modality_weights=("text=0",)))
    no_content.select({})
    np.testing.assert_allclose(no_content.scorer()(torch.arange(NUM_USERS)).numpy(),
                               gfcf_reference(dense_filters(dataset), 0.3, 12), rtol=1e-4, atol=1e-5)


def map_reference(dataset: Dataset, ridge: float) -> np.ndarray:
    """R X W X^T with W = G^-1 X_w^T P~_ww X_w G^-1, G = X_w^T X_w + ridge I, densely, before its scale."""
    f = dense_filters(dataset)
    blocks = []
    for feature in dataset.features.values():
        values = feature.values.astype(np.float64)
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        blocks.append(np.divide(values, norms, out=np.zeros_like(values), where=norms > 0))
    x = np.concatenate(blocks, axis=1)
    warm = f["r"].sum(0) > 0
    xw = x[warm]
    inverse = np.linalg.inv(xw.T @ xw + ridge * np.eye(x.shape[1]))
    w = inverse @ xw.T @ f["p"][np.ix_(warm, warm)] @ xw @ inverse
    return f["r"] @ x @ w @ x.T


def test_the_content_map_equals_the_dense_reference_and_scores_cold_items(dataset):
    options = MultimodalGraphFilterOptions(alpha=0.3, k=12, solver="dense", map_ridge=0.5, map_share=0.4,
                                           modality_weights=("text=0",))
    model = MultimodalGraphFilter.from_dataset(dataset, options)
    model.select({})
    scores = model.scorer()(torch.arange(NUM_USERS)).numpy()
    f = dense_filters(dataset)
    mapped = map_reference(dataset, 0.5)
    trained = f["r"].sum(1) > 0
    scale = np.linalg.norm((f["r"] @ f["p"])[trained]) / np.linalg.norm(mapped[trained])
    expected = 0.6 * gfcf_reference(f, 0.3, 12) + 0.4 * scale * mapped
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-4)
    assert (np.abs(scores[:, COLD_ITEM]) > 0).mean() > 0.5
    # content alone (share 1): the map's scores, whatever the filter
    alone = MultimodalGraphFilter.from_dataset(dataset, dataclasses.replace(options, map_share=1.0))
    alone.select({})
    np.testing.assert_allclose(alone.scorer()(torch.arange(NUM_USERS)).numpy(), scale * mapped, rtol=1e-3, atol=1e-4)


def test_score_histories_of_a_users_row_equal_its_scores(dataset):
    model = build_model(ModelConfig("mmgf", alpha=0.3, k=10, map_ridge=0.3, map_share=0.5,
                                    modality_weights=("text=1",)), dataset)
    model.select({})
    rows = dataset.csr("train")[[3, 11]]
    np.testing.assert_allclose(model.score_histories(rows).numpy(), model.scorer()(torch.tensor([3, 11])).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_selection_is_staged_and_never_reads_the_test_split(dataset):
    config = EvalConfig(ks=(20,), beyond_accuracy=False, full_mrr=False)
    chosen = []
    for scramble in (None, 1, 2):
        data = with_features(random_dataset(scramble_evaluation=None))
        if scramble is not None:  # new test interactions, same train and valid
            scrambled = random_dataset(scramble_evaluation=scramble)
            test = scrambled.interactions[scrambled.interactions["split"] == "test"]
            kept = data.interactions[data.interactions["split"] != "test"]
            data = dataclasses.replace(data, interactions=pd.concat([kept, test], ignore_index=True))
        options = MultimodalGraphFilterOptions(weight_grid=(0.0, 0.3, 1.0))
        model = MultimodalGraphFilter.from_dataset(data, options)
        logged: list[str] = []
        selection = select_on_validation(model, data, options, config, "recall@20", torch.device("cpu"), logged.append)
        chosen.append(selection.chosen)
        stages = {row["stage"] for row in selection.table}
        assert stages == {0, 1, 2}
        assert len(selection.table) == 20 + 20 + 3 ** 2  # GF-CF's grid, the content map's, every pair of weights
        assert all(row["modality_weights"] == ("text=0", "image=0") and row["map_share"] == 0
                   for row in selection.table if row["stage"] == 0)
        assert "in 3 stages" in logged[0]
    assert chosen[0] == chosen[1] == chosen[2]


def test_many_modalities_are_searched_one_at_a_time(dataset):
    options = MultimodalGraphFilterOptions(alpha=0.3, k=8, map_ridge=0.3, map_share=0.5,
                                           weight_grid=tuple(float(w) for w in range(9)))
    model = MultimodalGraphFilter.from_dataset(dataset, options)
    assert model.selection_stage(options, 0, {}) == [{"modality_weights": ("text=0", "image=0")}]
    first = model.selection_stage(options, 1, {"modality_weights": ("text=0", "image=0")})
    assert [s["modality_weights"] for s in first][:2] == [("text=0", "image=0"), ("text=1", "image=0")]
    second = model.selection_stage(options, 2, {"modality_weights": ("text=4", "image=0")})
    assert [s["modality_weights"] for s in second][-1] == ("text=4", "image=8")
    assert model.selection_stage(options, 3, {"modality_weights": ("text=4", "image=2")}) is None


def test_explanations_are_the_largest_contributions(dataset):
    model = build_model(ModelConfig("mmgf", alpha=0.3, k=10, map_ridge=0.3, map_share=0.5,
                                    modality_weights=("text=1", "image=0.5")), dataset)
    model.select({})
    history = dataset.csr("train")[[0, 1]]
    items = np.array([[COLD_ITEM, 2, -1], [4, 9, 12]])
    indices, values = contributing_history_items(model, history, items, top=2)
    for row in range(2):
        mine = history[row].indices
        alone = model.score_histories(sp.identity(NUM_ITEMS, format="csr", dtype=np.float32)[mine]).numpy()
        for column, item in enumerate(items[row]):
            if item < 0:
                assert (indices[row, column] == -1).all()
                continue
            candidates = [(alone[position, item], j) for position, j in enumerate(mine) if j != item]
            best = sorted(candidates, key=lambda pair: -pair[0])[:2]
            np.testing.assert_allclose(values[row, column], [v for v, _ in best], rtol=1e-5)
        # the contributions add up to the score
        full = model.score_histories(history[row]).numpy()[0]
        np.testing.assert_allclose(alone.sum(0), full, rtol=1e-4, atol=1e-6)
    explanations = explain_items(model, None, [f"i{k}" for k in range(NUM_ITEMS)], history, items)
    assert explanations[0][0].because_of_measure == "contribution"
    assert explanations[0][0].to_dict()["because_of"][0].keys() == {"item_id", "contribution"}


@pytest.mark.parametrize(("values", "message"), [
    ({"neighbours": 0}, "neighbours: must be a positive integer"),
    ({"modality_weights": ("text",)}, "modality_weights: expected name=weight"),
    ({"modality_weights": ("text=-1",)}, "modality_weights: weights must be finite and >= 0"),
    ({"modality_weights": ("text=nan",)}, "modality_weights: weights must be finite"),
    ({"modality_weights": ("text=1", "text=2")}, "given twice"),
    ({"weight_grid": ("a",)}, "weight_grid: weights must be numbers"),
    ({"weight_grid": ()}, "weight_grid: needs at least one weight"),
    ({"map_ridge": 0.0}, "map_ridge: must be > 0"),
    ({"map_share": 1.5}, "map_share: must be at most 1"),
    ({"map_share": -0.1}, "map_share: must be >= 0"),
])
def test_bad_options_are_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        MultimodalGraphFilterOptions(**values)


def test_unknown_or_missing_modalities_are_refused(dataset):
    with pytest.raises(ConfigError, match="no modality 'audio' among those read"):
        MultimodalGraphFilter.from_dataset(dataset, MultimodalGraphFilterOptions(modality_weights=("audio=1",)))
    with pytest.raises(ConfigError, match="has no modality 'audio'"):
        MultimodalGraphFilter.from_dataset(dataset, MultimodalGraphFilterOptions(modalities=("audio",)))
    with pytest.raises(GraphrecError, match="needs modality features"):
        MultimodalGraphFilter.from_dataset(random_dataset(), MultimodalGraphFilterOptions())
    model = MultimodalGraphFilter.from_dataset(dataset, MultimodalGraphFilterOptions(alpha=0.3, k=8, map_ridge=1.0,
                                                                                     map_share=0.0))
    with pytest.raises(GraphrecError, match="still to choose"):
        model.scorer()


@pytest.mark.parametrize("name", ["gfcf", "bspm", "mmgf"])
def test_recommend_explains_graph_filters_by_contribution(dataset, name, tmp_path):
    from graphrec.serving import recommend
    from graphrec.training.run import TrainConfig, train

    config = TrainConfig(eval_ks=(5,), select_metric="recall@5", progress=False)
    run = train(dataset, ModelConfig(name), config, out=tmp_path / "run", log=lambda _: None)
    (result,) = recommend(run, ["u0"], k=3)
    assert result.explanations is not None and len(result.explanations) == 3
    history = set(dataset.csr("train")[0].indices)
    for explanation in result.explanations:
        assert explanation.because_of_measure == "contribution"
        assert explanation.because_of and all(int(item[1:]) in history for item, _ in explanation.because_of)
        contributions = [value for _, value in explanation.because_of]
        assert contributions == sorted(contributions, reverse=True)

"""The k-NN cosine content graphs against a dense NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from graphrec.errors import ConfigError
from graphrec.graph.content import knn_cosine_graph, symmetric_normalize, weighted_sum


def _dense_reference(features: np.ndarray, k: int, mask: np.ndarray, weighted: bool, symmetric: bool) -> np.ndarray:
    n = len(features)
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sims = unit @ unit.T
    adjacency = np.zeros((n, n))
    have = np.flatnonzero(mask)
    for i in have:
        others = [j for j in have if j != i]
        best = sorted(others, key=lambda j: (-sims[i, j], j))[:k]
        for j in best:
            adjacency[i, j] = max(sims[i, j], 0) if weighted else 1.0
    if symmetric:
        adjacency = np.maximum(adjacency, adjacency.T)
    return adjacency


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("symmetric", [False, True])
def test_knn_graph_equals_dense_reference(weighted: bool, symmetric: bool) -> None:
    rng = np.random.default_rng(0)
    features = rng.standard_normal((40, 6)).astype(np.float32)
    mask = rng.random(40) > 0.2
    graph = knn_cosine_graph(features, 5, mask, weighted=weighted, symmetric=symmetric, block_rows=7)
    expected = _dense_reference(features, 5, mask, weighted, symmetric)
    np.testing.assert_allclose(graph.toarray(), expected, atol=1e-5)
    assert graph.diagonal().sum() == 0
    # an item without the modality neither gets nor gives an edge
    missing = np.flatnonzero(~mask)
    assert graph[missing].nnz == 0 and graph[:, missing].nnz == 0


def test_symmetric_normalisation_matches_formula() -> None:
    rng = np.random.default_rng(1)
    graph = knn_cosine_graph(rng.standard_normal((30, 4)), 4, weighted=True)
    dense = graph.toarray()
    degree = dense.sum(axis=1)
    expected = dense / np.sqrt(np.outer(degree, degree))
    np.testing.assert_allclose(symmetric_normalize(graph).toarray(), expected, rtol=1e-5)
    assert np.abs(np.linalg.eigvalsh(symmetric_normalize(graph).toarray())).max() <= 1 + 1e-5


def test_weighted_sum_and_bad_inputs() -> None:
    rng = np.random.default_rng(2)
    a = symmetric_normalize(knn_cosine_graph(rng.standard_normal((20, 3)), 3))
    b = symmetric_normalize(knn_cosine_graph(rng.standard_normal((20, 3)), 3))
    total = weighted_sum({"text": a, "image": b}, {"text": 0.5, "image": 2.0})
    np.testing.assert_allclose(total.toarray(), 0.5 * a.toarray() + 2.0 * b.toarray(), rtol=1e-6)
    with pytest.raises(ConfigError, match="no content graph for audio"):
        weighted_sum({"text": a}, {"audio": 1.0})
    with pytest.raises(ConfigError, match="positive integer"):
        knn_cosine_graph(rng.standard_normal((5, 2)), 0)
    # fewer items with the modality than neighbours asked for: every other item is a neighbour
    small = knn_cosine_graph(rng.standard_normal((4, 2)), 10, symmetric=False)
    assert (np.diff(small.indptr) == 3).all()

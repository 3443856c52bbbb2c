
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from graphrec.graph.adjacency import (
    normalized_adjacency,
    propagate,
    propagate_weighted,
    symmetric_csr_pattern,
)


def dense_reference(num_users: int, num_items: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """D^-1/2 A D^-1/2 written out densely, one cell at a time, in float64."""
    r = np.zeros((num_users, num_items))
    for u, i in zip(users, items):
        r[u, i] = 1.0
    a = np.zeros((num_users + num_items,) * 2)
    a[:num_users, num_users:] = r
    a[num_users:, :num_users] = r.T
    degree = a.sum(1)
    scale = np.zeros_like(degree)
    scale[degree > 0] = degree[degree > 0] ** -0.5
    return scale[:, None] * a * scale[None, :]


def test_normalized_adjacency_matches_dense_reference_with_duplicates_and_isolated_nodes():
    # user 3 and item 4 have no interaction; (0, 1) appears three times
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    items = np.array([1, 1, 0, 1, 1, 2, 0, 3, 2])
    adjacency = normalized_adjacency(4, 5, users, items)
    assert adjacency.layout == torch.sparse_csr
    assert adjacency.dtype == torch.float32
    assert adjacency.shape == (9, 9)
    dense = adjacency.to_dense().numpy()
    np.testing.assert_allclose(dense, dense_reference(4, 5, users, items), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(dense, dense.T)
    assert np.isfinite(dense).all()
    assert not dense[3].any() and not dense[4 + 4].any()
    assert adjacency._nnz() == 2 * 7  # seven distinct pairs, both directions


def test_normalized_adjacency_accepts_tensors_and_no_interactions():
    adjacency = normalized_adjacency(2, 3, torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert adjacency.shape == (5, 5)
    assert adjacency._nnz() == 0
    assert torch.equal(adjacency.to_dense(), torch.zeros(5, 5))


@pytest.mark.parametrize("users, items, message", [
    ([0, 5], [0, 1], "user indices"),
    ([0, 1], [0, -1], "item indices"),
    ([0, 1], [0], "same length"),
])
def test_normalized_adjacency_rejects_bad_indices(users, items, message):
    with pytest.raises(ValueError, match=message):
        normalized_adjacency(2, 2, np.array(users), np.array(items))


def test_normalized_adjacency_on_ml100k_matches_scipy(shared_data):
    ratings = pd.read_csv(shared_data / "ml-100k" / "u.data", sep="\t", names=["user", "item", "rating", "time"])
    users, items = ratings["user"].to_numpy() - 1, ratings["item"].to_numpy() - 1
    num_users, num_items = 943, 1682
    adjacency = normalized_adjacency(num_users, num_items, users, items)

    r = sp.csr_matrix((np.ones(len(users)), (users, items)), shape=(num_users, num_items))
    r.data[:] = 1.0
    a = sp.bmat([[None, r], [r.T, None]]).tocsr()
    degree = np.asarray(a.sum(1)).ravel()
    scale = sp.diags(np.where(degree > 0, degree, 1.0) ** -0.5)
    reference = (scale @ a @ scale).tocsr()
    reference.sort_indices()

    assert adjacency._nnz() == reference.nnz == 2 * 100_000
    np.testing.assert_array_equal(adjacency.crow_indices().numpy(), reference.indptr)
    np.testing.assert_array_equal(adjacency.col_indices().numpy(), reference.indices)
    np.testing.assert_allclose(adjacency.values().numpy(), reference.data, rtol=1e-6)
    # D^-1/2 A D^-1/2 sqrt(d) = sqrt(d): the eigenvector of eigenvalue 1
    root_degree = torch.from_numpy(np.sqrt(degree)).float().unsqueeze(1)
    torch.testing.assert_close(adjacency @ root_degree, root_degree, rtol=1e-4, atol=1e-4)


def test_propagation_gradcheck_in_float64():
    torch.manual_seed(0)
    users = torch.tensor([0, 0, 1, 2, 2, 3])
    items = torch.tensor([0, 2, 1, 1, 2, 0])
    adjacency = normalized_adjacency(4, 3, users, items).to(torch.float64)
    x = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda value: propagate(adjacency, value), (x,))


def test_propagation_matches_dense_autograd():
    torch.manual_seed(1)
    adjacency = normalized_adjacency(5, 6, torch.randint(0, 5, (20,)), torch.randint(0, 6, (20,)))
    x = torch.randn(11, 4, requires_grad=True)
    target = torch.randn(11, 4)
    (propagate(adjacency, propagate(adjacency, x)) * target).sum().backward()
    sparse_grad = x.grad.clone()

    x.grad = None
    dense = adjacency.to_dense()
    (dense @ (dense @ x) * target).sum().backward()
    torch.testing.assert_close(sparse_grad, x.grad)


def test_propagation_refuses_a_differentiable_adjacency():
    adjacency = torch.eye(3).to_sparse_csr().requires_grad_()
    with pytest.raises(ValueError, match="must not require grad"):
        propagate(adjacency, torch.randn(3, 2))


def test_symmetric_pattern_and_weighted_propagation():
    torch.manual_seed(2)
    num_nodes = 9
    source, target = torch.randint(0, num_nodes, (2, 25))
    edge_index = torch.stack([torch.cat([source, target]), torch.cat([target, source])])
    crow, col, row, transpose = symmetric_csr_pattern(edge_index, num_nodes)

    edges = set(zip(edge_index[1].tolist(), edge_index[0].tolist()))
    assert list(zip(row.tolist(), col.tolist())) == sorted(edges)
    assert torch.equal(row[transpose], col) and torch.equal(col[transpose], row)
    assert torch.equal(crow[1:] - crow[:-1], torch.bincount(row, minlength=num_nodes))

    values = torch.rand(col.numel(), dtype=torch.float64, requires_grad=True)
    x = torch.randn(num_nodes, 4, dtype=torch.float64, requires_grad=True)
    dense = torch.zeros(num_nodes, num_nodes, dtype=torch.float64)
    dense[row, col] = values.detach()
    torch.testing.assert_close(propagate_weighted(values, x, crow, col, transpose), dense @ x.detach())
    assert torch.autograd.gradcheck(
        lambda v, features: propagate_weighted(v, features, crow, col, transpose), (values, x))


def test_symmetric_pattern_rejects_one_way_edges():
    with pytest.raises(ValueError, match="not symmetric: 1 edge"):
        symmetric_csr_pattern(torch.tensor([[0, 1, 2], [1, 0, 0]]), 3)

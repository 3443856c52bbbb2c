r"""The normalised user–item adjacency and a fast, symmetric propagation.

For ``N`` users, ``M`` items and the binary interaction matrix
:math:`\mathbf{R} \in \{0, 1\}^{N \times M}`, the bipartite adjacency and its
symmetric normalisation (as in LightGCN and NGCF) are

.. math::
    \mathbf{A} = \begin{pmatrix} \mathbf{0} & \mathbf{R} \\
                 \mathbf{R}^\top & \mathbf{0} \end{pmatrix}, \qquad
    \tilde{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2},
    \qquad \tilde{A}_{ui} = \frac{1}{\sqrt{|\mathcal{N}_u| \, |\mathcal{N}_i|}},

with users first (rows ``0..N-1``) and items after them (rows ``N..N+M-1``).
Repeated interactions count once; a node without interactions has an empty
row (never a division by zero).

Because :math:`\tilde{\mathbf{A}}` is symmetric, the gradient of
:math:`\mathbf{Y} = \tilde{\mathbf{A}} \mathbf{X}` is
:math:`\partial L / \partial \mathbf{X} = \tilde{\mathbf{A}}^\top \, \partial L / \partial \mathbf{Y}
= \tilde{\mathbf{A}} \, \partial L / \partial \mathbf{Y}`: one more sparse product of
the same kind as the forward. :class:`SymmetricPropagation` uses exactly that,
whereas stock autograd through a CSR product transposes the matrix and costs
several forwards. A constant matrix that is not symmetric (the interaction matrix
:math:`\mathbf{R}`, a k-NN item graph) is multiplied by :class:`SparseProduct`, given with its
transpose, whose backward is the transposed product.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor


def normalized_adjacency(num_users: int, num_items: int, users: Tensor | np.ndarray,
                         items: Tensor | np.ndarray) -> Tensor:
    r"""Return :math:`\mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` as a sparse CSR
    ``float32`` tensor of shape ``(num_users + num_items, num_users + num_items)``.

    ``users[k]`` interacted with ``items[k]`` (0-based indices; duplicates are collapsed).
    """
    users = torch.as_tensor(users, dtype=torch.long).reshape(-1)
    items = torch.as_tensor(items, dtype=torch.long).reshape(-1)
    if users.numel() != items.numel():
        raise ValueError(f"users and items must have the same length, got {users.numel()} and {items.numel()}")
    if users.numel():
        if int(users.min()) < 0 or int(users.max()) >= num_users:
            raise ValueError(f"user indices must lie in [0, {num_users}), got [{int(users.min())}, "
                             f"{int(users.max())}]")
        if int(items.min()) < 0 or int(items.max()) >= num_items:
            raise ValueError(f"item indices must lie in [0, {num_items}), got [{int(items.min())}, "
                             f"{int(items.max())}]")
    pairs: Tensor = torch.unique(users * num_items + items)  # sorted by user, then item
    users, items = pairs // num_items, pairs % num_items
    user_degree = torch.bincount(users, minlength=num_users).to(torch.float32)
    item_degree = torch.bincount(items, minlength=num_items).to(torch.float32)
    weight = (user_degree[users] * item_degree[items]).rsqrt()

    # Build CSR directly: user rows are already sorted (torch.unique sorts the pair keys);
    # item rows need the pairs re-sorted by item, then user.
    by_item = torch.argsort(items * num_users + users)
    num_nodes = num_users + num_items
    degree = torch.cat([user_degree, item_degree]).to(torch.long)
    crow_indices = torch.zeros(num_nodes + 1, dtype=torch.long)
    torch.cumsum(degree, dim=0, out=crow_indices[1:])
    col_indices = torch.cat([items + num_users, users[by_item]])
    values = torch.cat([weight, weight[by_item]])
    return _csr(crow_indices, col_indices, values, num_nodes)


def _csr(crow_indices: Tensor, col_indices: Tensor, values: Tensor, num_nodes: int) -> Tensor:
    """A square CSR matrix from indices built here (valid by construction, so not re-checked)."""
    return _csr_tensor(crow_indices, col_indices, values, (num_nodes, num_nodes))


def _csr_tensor(crow_indices: Tensor, col_indices: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        # torch calls CSR "beta" and, in some versions, warns even when checks are explicitly off;
        # the products used here are covered by the tests.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(crow_indices, col_indices, values, shape, check_invariants=False)


class SymmetricPropagation(torch.autograd.Function):
    r""":math:`\mathbf{Y} = \mathbf{A} \mathbf{X}` for a symmetric sparse
    :math:`\mathbf{A}` (not differentiated), with backward
    :math:`\nabla_{\mathbf{X}} = \mathbf{A} \nabla_{\mathbf{Y}}`.

    The caller guarantees that ``adjacency`` is symmetric; :func:`normalized_adjacency`
    always is.
    """

    @staticmethod
    def forward(ctx: Any, adjacency: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(adjacency)
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[None, Tensor]:
        (adjacency,) = ctx.saved_tensors
        return None, adjacency @ grad_output


def propagate(adjacency: Tensor, x: Tensor) -> Tensor:
    """Multiply ``x`` by the symmetric sparse ``adjacency`` with the cheap backward above."""
    if adjacency.requires_grad:
        raise ValueError("propagate() treats the adjacency as a constant; it must not require grad")
    return SymmetricPropagation.apply(adjacency, x)


def torch_csr(matrix: sp.csr_matrix | sp.csc_matrix) -> Tensor:
    """``matrix`` as a torch CSR ``float32`` tensor with int64 indices, sorted within each row."""
    csr = matrix.tocsr()
    if not csr.has_sorted_indices:
        csr = csr.sorted_indices()
    return _csr_tensor(torch.from_numpy(csr.indptr.astype(np.int64)), torch.from_numpy(csr.indices.astype(np.int64)),
                       torch.from_numpy(csr.data.astype(np.float32)), (int(csr.shape[0]), int(csr.shape[1])))


class SparseProduct(torch.autograd.Function):
    r""":math:`\mathbf{Y} = S \mathbf{X}` for a constant sparse :math:`S` given with its transpose,
    whose backward is :math:`\nabla_{\mathbf{X}} = S^\top \nabla_{\mathbf{Y}}`."""

    @staticmethod
    def forward(ctx: Any, matrix: Tensor, transpose: Tensor, x: Tensor) -> Tensor:
        ctx.save_for_backward(transpose)
        return matrix @ x

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[None, None, Tensor]:
        (transpose,) = ctx.saved_tensors
        return None, None, transpose @ grad_output


def sparse_product(matrix: Tensor, transpose: Tensor, x: Tensor) -> Tensor:
    """``matrix @ x`` for a constant sparse ``matrix`` whose ``transpose`` (as :func:`torch_csr` of
    the transposed matrix) carries the gradient back to ``x``."""
    if matrix.requires_grad or transpose.requires_grad:
        raise ValueError("sparse_product() treats the matrix as a constant; it must not require grad")
    return SparseProduct.apply(matrix, transpose, x)


def symmetric_csr_pattern(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The CSR pattern of a structurally symmetric graph, for :func:`propagate_weighted`.

    ``edge_index`` ``(2, E)`` holds ``source -> target`` edges and must contain every edge in
    both directions (duplicates are collapsed). Row ``v`` of the pattern lists the sources
    that send to ``v``. Returns ``(crow_indices, col_indices, row_indices, transpose)``:
    edge ``e`` goes from ``col_indices[e]`` to ``row_indices[e]``, and ``transpose[e]`` is the
    position of the reverse edge, so that ``values[transpose]`` are the values of
    :math:`\mathbf{A}^\top` on the same pattern.
    """
    source, target = edge_index.to(torch.long)
    keys = torch.unique(target * num_nodes + source)  # sorted: rows (targets), then columns
    rows, cols = keys // num_nodes, keys % num_nodes
    reverse_keys = cols * num_nodes + rows
    transpose = torch.searchsorted(keys, reverse_keys).clamp(max=max(keys.numel() - 1, 0))
    if keys.numel() and not torch.equal(keys[transpose], reverse_keys):
        missing = int((keys[transpose] != reverse_keys).sum())
        raise ValueError(f"the graph is not symmetric: {missing} edge(s) have no reverse edge")
    crow_indices = torch.zeros(num_nodes + 1, dtype=torch.long)
    torch.cumsum(torch.bincount(rows, minlength=num_nodes), dim=0, out=crow_indices[1:])
    return crow_indices, cols, rows, transpose




class WeightedPropagation(torch.autograd.Function):
    r""":math:`\mathbf{Y} = \mathbf{A}(\mathbf{w}) \mathbf{X}` for a CSR matrix whose
    values :math:`\mathbf{w}` (one per edge, e.g. attention coefficients) are differentiable.

    .. math::
        \nabla_{\mathbf{X}} = \mathbf{A}^\top \nabla_{\mathbf{Y}}, \qquad
        \nabla_{w_e} = \langle (\nabla_{\mathbf{Y}})_{\mathrm{row}(e)}, \mathbf{X}_{\mathrm{col}(e)} \rangle

    The first is a sparse product on the transposed values (same pattern, since the graph is
    symmetric), the second a sampled dense product (:func:`torch.sparse.sampled_addmm`).
    Neither materialises an ``[E, d]`` tensor, which is what makes message passing with
    gather/scatter slow on CPU.
    """

    @staticmethod
    def forward(ctx: Any, values: Tensor, x: Tensor, crow_indices: Tensor, col_indices: Tensor,
                transpose: Tensor) -> Tensor:
        ctx.save_for_backward(values, x, crow_indices, col_indices, transpose)
        return _csr(crow_indices, col_indices, values, x.size(0)) @ x

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, Tensor | None, None, None, None]:
        values, x, crow_indices, col_indices, transpose = ctx.saved_tensors
        grad_values = grad_x = None
        grad_output = grad_output.contiguous()
        if ctx.needs_input_grad[0]:
            pattern = _csr(crow_indices, col_indices, torch.zeros_like(values), x.size(0))
            grad_values = torch.sparse.sampled_addmm(pattern, grad_output, x.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            grad_x = _csr(crow_indices, col_indices, values[transpose], x.size(0)) @ grad_output
        return grad_values, grad_x, None, None, None


def propagate_weighted(values: Tensor, x: Tensor, crow_indices: Tensor, col_indices: Tensor,
                       transpose: Tensor) -> Tensor:
    """``y[v] = sum_e values[e] * x[col_indices[e]]`` over the edges ``e`` of row ``v``, on a
    pattern from :func:`symmetric_csr_pattern`, differentiable in ``values`` and ``x``."""
    return WeightedPropagation.apply(values.contiguous(), x.contiguous(), crow_indices, col_indices, transpose)

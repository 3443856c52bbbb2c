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
several forwards.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
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
    pairs = torch.unique(users * num_items + items)  # sorted by user, then item
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
    with warnings.catch_warnings():
        # CSR is "beta" in torch; the products used here are stable and tested.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow_indices, col_indices, values, (num_nodes, num_nodes),
                                       check_invariants=False)

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

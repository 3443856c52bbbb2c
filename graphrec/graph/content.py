r"""Item–item content graphs: the :math:`k` nearest neighbours of each item by the cosine of its
pretrained features, as LATTICE, FREEDOM and the multimodal graph filter use them.

For one modality with features :math:`x_i` and the items that have it, item :math:`i`'s neighbours
:math:`\mathcal{N}_k(i)` are the :math:`k` other items of highest :math:`\cos(x_i, x_j)`. The adjacency

.. math::
    A_{ij} = w_{ij}\, [\, j \in \mathcal{N}_k(i) \,], \qquad
    w_{ij} = 1 \text{ (binary) or } \max(\cos(x_i, x_j), 0) \text{ (weighted)},

is optionally symmetrised, :math:`A \leftarrow \max(A, A^\top)` (so that a cold item that is some warm
item's neighbour also has that warm item among its own), and normalised as
:math:`\tilde{A} = D^{-1/2} A D^{-1/2}` with :math:`D` its row sums. An item without the modality
(its ``mask`` entry False) has no edges: it neither gets nor gives neighbours.

The neighbours come from dense similarity blocks of ``block_rows`` items at a time, so memory stays at
``4 * block_rows * N`` bytes beyond the ``[N, d]`` features and the ``k N`` edges. That is exact
search in :math:`O(N^2 d)`; it takes seconds for the catalogues of tens of thousands of items these
models are used on (faiss would be the route beyond that, and is an optional dependency).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import torch

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError

#: Items whose similarities to every item are computed at once (bounds the dense block).
BLOCK_ROWS = 1024


def knn_cosine_graph(features: np.ndarray, k: int, mask: np.ndarray | None = None, weighted: bool = False,
                     symmetric: bool = True, block_rows: int = BLOCK_ROWS) -> sp.csr_matrix:
    """The (unnormalised) :math:`k`-nearest-neighbour cosine adjacency ``[N, N]`` of ``features``
    ``[N, d]`` (see the module docstring); float32 CSR without self-loops."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise ValueError(f"features must be [items, dim], got shape {features.shape}")
    num_items = features.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"must be a positive integer, got {k!r}", field="neighbours")
    have = np.ones(num_items, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if have.shape != (num_items,):
        raise ValueError(f"mask must have one entry per item ({num_items}), got shape {have.shape}")
    candidates = np.flatnonzero(have)
    width = min(int(k), len(candidates) - 1)
    if width < 1:
        return sp.csr_matrix((num_items, num_items), dtype=np.float32)
    unit = torch.nn.functional.normalize(torch.from_numpy(features[candidates]), dim=1)
    rows, columns, values = [], [], []
    for start in range(0, len(candidates), block_rows):
        block = unit[start:start + block_rows]
        sims = block @ unit.t()
        sims[torch.arange(block.size(0)), torch.arange(start, start + block.size(0))] = float("-inf")
        top_values, top_columns = torch.topk(sims, width, dim=1)
        rows.append(np.repeat(candidates[start:start + block.size(0)], width))
        columns.append(candidates[top_columns.reshape(-1).numpy()])
        values.append(top_values.reshape(-1).clamp(min=0).numpy() if weighted
                      else np.ones(top_values.numel(), dtype=np.float32))
    adjacency = sp.csr_matrix((np.concatenate(values).astype(np.float32),
                               (np.concatenate(rows), np.concatenate(columns))), shape=(num_items, num_items))
    if symmetric:
        adjacency = adjacency.maximum(adjacency.T).tocsr()
    adjacency.eliminate_zeros()
    adjacency.sort_indices()
    return adjacency


def symmetric_normalize(adjacency: sp.csr_matrix) -> sp.csr_matrix:
    r""":math:`D^{-1/2} A D^{-1/2}` with :math:`D` the row sums of ``adjacency`` (empty rows stay empty)."""
    adjacency = adjacency.tocsr().astype(np.float32)
    degree = np.asarray(adjacency.sum(axis=1)).reshape(-1)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    normalized = adjacency.copy()
    rows = np.repeat(np.arange(adjacency.shape[0]), np.diff(adjacency.indptr))
    normalized.data = (adjacency.data * scale[rows] * scale[adjacency.indices]).astype(np.float32)
    return normalized


def content_graph(dataset: Dataset, modality: str, k: int, weighted: bool = False,
                  symmetric: bool = True) -> sp.csr_matrix:
    r"""The normalised :math:`k`-NN cosine graph :math:`\tilde{A}` of one of ``dataset``'s modalities,
    over all its items (cold ones included): they are reachable through their content edges."""
    if modality not in dataset.features:
        raise ConfigError(f"the dataset has no modality {modality!r} (it has "
                          f"{', '.join(dataset.modalities) or 'none'})", field="modality")
    feature = dataset.features[modality]
    return symmetric_normalize(knn_cosine_graph(feature.values, k, feature.mask, weighted, symmetric))


def content_graphs(dataset: Dataset, k: int, modalities: list[str] | None = None, weighted: bool = False,
                   symmetric: bool = True) -> dict[str, sp.csr_matrix]:
    """:func:`content_graph` of each of ``modalities`` (default: all the dataset's), by name."""
    names = dataset.modalities if modalities is None else modalities
    return {name: content_graph(dataset, name, k, weighted, symmetric) for name in names}


def weighted_sum(graphs: Mapping[str, sp.csr_matrix], weights: Mapping[str, float]) -> sp.csr_matrix:
    r""":math:`\sum_m w_m \tilde{A}_m` of the ``graphs`` named in ``weights`` (all of the same shape)."""
    if not graphs:
        raise ValueError("no content graphs to combine")
    unknown = sorted(set(weights) - set(graphs))
    if unknown:
        raise ConfigError(f"no content graph for {', '.join(unknown)} (there are {', '.join(graphs)})",
                          field="modality_weights")
    shape = next(iter(graphs.values())).shape
    total = sp.csr_array(shape, dtype=np.float32)
    for name, weight in weights.items():
        if weight:
            total = total + float(weight) * graphs[name]
    return sp.csr_matrix(total, dtype=np.float32)


__all__ = ["BLOCK_ROWS", "content_graph", "content_graphs", "knn_cosine_graph", "symmetric_normalize",
           "weighted_sum"]

r"""Why an item was recommended: the user's own items it resembles, and which sources the model used.

Two kinds of evidence, both read off the trained model rather than invented after the fact:

* **Nearest training items.** For a recommended item :math:`i` and the user's training
  items :math:`\mathcal{H}_u`, the items of :math:`\mathcal{H}_u` with the highest cosine
  similarity in the final item embedding space,

  .. math::
      \operatorname{sim}(i, j) = \frac{\langle \mathbf{v}_i, \mathbf{v}_j \rangle}
      {\|\mathbf{v}_i\| \, \|\mathbf{v}_j\|}, \qquad j \in \mathcal{H}_u \setminus \{i\},

  best first. With inner-product scoring, :math:`\hat{y}_{ui}` is high where
  :math:`\mathbf{u}` points towards :math:`\mathbf{v}_i`, and a graph model puts
  :math:`\mathbf{u}` near the items the user interacted with, so these are the items
  that "pulled" :math:`i` up.
* **Contributing training items** (graph filters, whose scores are linear in the user's row:
  :attr:`~graphrec.models.base.Recommender.linear_in_history`). Their score is
  :math:`s_{ui} = \sum_{j \in \mathcal{H}_u} s_{e_j, i}`, the sum of what each training item
  :math:`j` alone (the one-hot row :math:`e_j`) gives item :math:`i`, so the items of
  :math:`\mathcal{H}_u` with the largest :math:`s_{e_j, i}` are exactly those the score came from.
  ``because_of`` then carries these contributions, not cosines (``because_of_measure``).
* **Source weights.** For a model with modality attention
  (:meth:`graphrec.models.ModalityGAT.modality_attention`), the weights
  :math:`\alpha_{i,s}` with which each source (text, image, genre, ...) entered the item's
  representation in the model's last forward; they sum to 1 over the sources the item has.

* **User sources** (cold users, with no training item to point to, and new users given by
  attributes). A content model places such a user by its own sources alone (age bucket, gender,
  occupation, user text: :mod:`graphrec.models.user_side`), and its vector is a sum of one part per
  source, :math:`\mathbf{u} = \sum_s \mathbf{u}_s` (:meth:`~graphrec.models.base.Recommender.user_source_parts`),
  so :math:`\hat{y}_{ui} = \sum_s \langle \mathbf{u}_s, \mathbf{v}_i \rangle`: each source's share of the
  score is exact. ModalityGAT adds its user-side attention weights :math:`\alpha_{u,s}` over them.

Weights that are the same for every item explain nothing about any one of them.
:func:`attention_spread` measures how much they vary: over the items with at least two sources,
the mean entropy :math:`H_i = -\sum_s \alpha_{i,s} \ln \alpha_{i,s}` (0: one source takes all;
:math:`\ln |\mathcal{S}_i|`: all equal), and the share of items whose top source is not the
*global favourite*, the source with the highest mean weight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.errors import GraphrecError
from graphrec.models.base import Recommender

#: Largest ``users x recommended x history`` similarity block computed at once (floats).
_BLOCK_ELEMENTS = 1 << 24


@dataclass
class Explanation:
    """Evidence for one recommended item (original ids throughout).

    ``modality_weights`` maps each source of the model's modality attention to its
    weight for this item (``None`` for models without one); ``because_of`` lists the
    user's training items behind it, best first, with their cosine similarity in the embedding
    space (``because_of_measure`` ``"cosine"``) or, for graph filters, their contribution to the
    score (``"contribution"``).
    """

    item_id: str
    modality_weights: dict[str, float] | None
    because_of: list[tuple[str, float]]
    because_of_measure: str = "cosine"
    #: For a user placed by its own sources (see the module docstring): each user source's share of
    #: the score, and the model's attention weight on it (``None``: not such a user, or no attention).
    user_sources: dict[str, float] | None = None
    user_source_weights: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        key = "similarity" if self.because_of_measure == "cosine" else "contribution"
        out = {"item_id": self.item_id,
               "modality_weights": None if self.modality_weights is None else dict(self.modality_weights),
               "because_of_measure": self.because_of_measure,
               "because_of": [{"item_id": item, key: value} for item, value in self.because_of]}
        if self.user_sources is not None:
            out["user_sources"] = dict(self.user_sources)
            out["user_source_weights"] = None if self.user_source_weights is None else dict(self.user_source_weights)
        return out


def modality_weights(model: Recommender) -> tuple[list[str], np.ndarray] | None:
    """Source names and ``[num_items, S]`` attention weights of the model's last forward.

    ``None`` when the model has no modality attention (LightGCN, MF, VBPR, a GAT fused
    another way, or one without any source). Call the model's ``embed()`` first so the
    weights are those of the current parameters in evaluation mode.
    """
    try:
        attention = model.modality_attention()
    except ValueError:  # the model fuses its sources without attention weights
        return None
    if attention is None or not attention[0]:
        return None
    names, weights = attention
    return list(names), weights.detach().to(torch.float32).cpu().numpy()


@dataclass(frozen=True)
class AttentionSpread:
    """How the source weights vary across items (see the module docstring)."""

    #: Items with at least two sources (the only ones whose weights can vary).
    items: int
    #: Mean entropy of their weights, in nats, and the mean of its maximum :math:`\ln |\mathcal{S}_i|`.
    mean_entropy: float
    mean_max_entropy: float
    #: The source with the highest mean weight over those items, and each source's mean weight.
    favourite: str
    mean_weights: dict[str, float]
    #: Share of those items whose highest-weighted source is not the favourite.
    share_not_favourite: float

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "mean_entropy": self.mean_entropy, "mean_max_entropy": self.mean_max_entropy,
                "favourite": self.favourite, "mean_weights": dict(self.mean_weights),
                "share_not_favourite": self.share_not_favourite}


def attention_spread(names: Sequence[str], weights: np.ndarray) -> AttentionSpread | None:
    """:class:`AttentionSpread` of ``[num_items, S]`` source weights (rows sum to 1 over the sources
    an item has, 0 elsewhere, as :func:`modality_weights` gives them); ``None`` when no item has two
    sources."""
    weights = np.asarray(weights, dtype=np.float64)
    available = weights > 0
    several = available.sum(1) >= 2
    if not several.any():
        return None
    chosen, counts = weights[several], available[several].sum(1)
    logs = np.log(np.where(chosen > 0, chosen, 1.0))
    entropy = -(chosen * logs).sum(1)
    means = chosen.mean(0)
    favourite = int(np.argmax(means))
    return AttentionSpread(items=int(several.sum()), mean_entropy=float(entropy.mean()),
                           mean_max_entropy=float(np.log(counts).mean()), favourite=str(names[favourite]),
                           mean_weights={str(name): float(value) for name, value in zip(names, means)},
                           share_not_favourite=float((chosen.argmax(1) != favourite).mean()))


def nearest_history_items(item_emb: Tensor, history: sp.csr_matrix, items: np.ndarray,
                          top: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """For each ``items[b, j]``, the ``top`` items of ``history`` row ``b`` closest to it by cosine.

    Args:
        item_emb: final item embeddings ``[num_items, d]``.
        history: ``[B, num_items]`` sparse rows, the items each user has (their training items).
        items: ``[B, k]`` item indices to explain; ``-1`` marks an empty slot.
        top: how many history items per recommended item.

    Returns:
        ``(indices, similarities)``, each ``[B, k, top]``: item indices best first, ``-1``
        (and similarity NaN) where the user has fewer than ``top`` other history items.
        An item never explains itself. One-dimensional embeddings (the popularity and random
        baselines) carry no similarity, since every cosine is +-1: they get no neighbours.
    """
    items, history, indices, similarities = _empty_evidence(history, items, top)
    batch, k = items.shape
    lengths = np.diff(history.indptr)
    if top <= 0 or k == 0 or lengths.max(initial=0) == 0 or item_emb.size(1) < 2:
        return indices, similarities
    normalized = torch.nn.functional.normalize(item_emb.detach().to(torch.float32).cpu(), dim=1)
    start = 0
    while start < batch:
        longest = 1
        stop = start
        # Grow the block while its similarity tensor stays bounded (histories differ a lot in length).
        while stop < batch and (stop - start + 1) * k * max(longest, int(lengths[stop])) <= _BLOCK_ELEMENTS:
            longest = max(longest, int(lengths[stop]))
            stop += 1
        stop = max(stop, start + 1)
        block = slice(start, stop)
        padded, valid = _padded_rows(history[block])
        candidates = torch.from_numpy(padded)
        recommended = torch.from_numpy(items[block])
        sims = normalized[recommended.clamp(min=0)] @ normalized[candidates.clamp(min=0)].transpose(1, 2)
        usable = torch.from_numpy(valid)[:, None, :] & (candidates[:, None, :] != recommended[:, :, None])
        sims = sims.masked_fill(~usable, float("-inf"))
        width = min(top, sims.size(2))
        values, positions = torch.topk(sims, width, dim=2)
        chosen = torch.take_along_dim(candidates[:, None, :].expand(-1, k, -1), positions, dim=2)
        found = torch.isfinite(values) & (recommended[:, :, None] >= 0)
        indices[block, :, :width] = torch.where(found, chosen, -1).numpy()
        similarities[block, :, :width] = torch.where(found, values, float("nan")).numpy()
        start = stop
    return indices, similarities


def contributing_history_items(model: Recommender, history: sp.csr_matrix, items: np.ndarray,
                               top: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """For each ``items[b, j]``, the ``top`` items of ``history`` row ``b`` that contribute most to its
    score under a model whose scores are linear in the user's row (see the module docstring).

    Same arguments and returns as :func:`nearest_history_items`, with contributions in place of
    cosine similarities. Each history item is scored alone, as a one-hot row, in blocks of
    rows whose ``[rows, num_items]`` scores stay bounded.
    """
    items, history, indices, values = _empty_evidence(history, items, top)
    batch, k = items.shape
    if top <= 0 or k == 0 or history.nnz == 0:
        return indices, values
    num_items = history.shape[1]
    rows_per_block = max(1, _BLOCK_ELEMENTS // max(num_items, 1))
    for row in range(batch):
        mine = history.indices[history.indptr[row]:history.indptr[row + 1]]
        wanted = items[row]
        if len(mine) == 0:
            continue
        parts = []
        for start in range(0, len(mine), rows_per_block):
            block = mine[start:start + rows_per_block]
            one_hot = sp.csr_matrix((np.ones(len(block), dtype=np.float32), (np.arange(len(block)), block)),
                                    shape=(len(block), num_items))
            parts.append(model.score_histories(one_hot)[:, torch.from_numpy(wanted.clip(min=0))])
        contributions = torch.cat(parts).t()  # [k, H]
        usable = torch.from_numpy(mine[None, :] != wanted[:, None])
        contributions = contributions.masked_fill(~usable, float("-inf"))
        width = min(top, len(mine))
        best, positions = torch.topk(contributions, width, dim=1)
        found = torch.isfinite(best) & torch.from_numpy(wanted >= 0)[:, None]
        indices[row, :, :width] = torch.where(found, torch.from_numpy(mine)[positions], -1).numpy()
        values[row, :, :width] = torch.where(found, best, float("nan")).numpy()
    return indices, values


def explain_items(model: Recommender, item_emb: Tensor | None, item_ids: Sequence[str] | np.ndarray,
                  history: sp.csr_matrix, items: np.ndarray, top: int = 3) -> list[list[Explanation]]:
    """Explanations of the recommended ``items`` ``[B, k]`` (``-1`` = empty slot, skipped).

    ``history`` holds each row's training items (``[B, num_items]``); ``model`` supplies
    modality attention when it has one (see :func:`modality_weights`). Models with ``item_emb``
    are explained by cosine (:func:`nearest_history_items`), graph filters (``item_emb`` ``None``,
    :attr:`~graphrec.models.base.Recommender.linear_in_history`) by contribution
    (:func:`contributing_history_items`).
    """
    item_ids = np.asarray(item_ids, dtype=object)
    items = np.asarray(items, dtype=np.int64)
    if item_emb is not None:
        nearest, similarity = nearest_history_items(item_emb, history, items, top=top)
        measure = "cosine"
    elif model.linear_in_history:
        nearest, similarity = contributing_history_items(model, history, items, top=top)
        measure = "contribution"
    else:
        raise ValueError(f"model {model.name!r} has neither item embeddings nor scores linear in the user's "
                         f"items: nothing to explain its recommendations by")
    attention = modality_weights(model) if item_emb is not None else None
    out: list[list[Explanation]] = []
    for row in range(items.shape[0]):
        explanations = []
        for column in np.flatnonzero(items[row] >= 0):
            item = int(items[row, column])
            found = nearest[row, column] >= 0
            because = list(zip(item_ids[nearest[row, column][found]].tolist(),
                               similarity[row, column][found].astype(float).tolist()))
            weights = None
            if attention is not None:
                names, matrix = attention
                weights = dict(zip(names, matrix[item].astype(float).tolist()))
            explanations.append(Explanation(item_id=str(item_ids[item]), modality_weights=weights,
                                            because_of=because, because_of_measure=measure))
        out.append(explanations)
    return out


@torch.no_grad()
def add_user_sources(explanations: Sequence[Sequence[Explanation]], model: Recommender, item_emb: Tensor | None,
                     items: np.ndarray, users: np.ndarray | None = None,
                     attributes: Sequence[Mapping[str, Any]] | None = None) -> None:
    """Fill in :attr:`Explanation.user_sources` (and the weights) of users placed by their own sources:
    row ``b`` of ``explanations`` and of ``items`` ``[B, k]`` belongs to ``users[b]`` (cold users of the
    dataset) or to the new user ``attributes[b]``. A model without user sources, or without item
    embeddings to take the shares against, leaves them ``None``."""
    if item_emb is None or not len(explanations):
        return
    wanted = None if users is None else torch.from_numpy(np.asarray(users, dtype=np.int64))
    try:
        parts = model.user_source_parts(wanted, attributes)
        attention = model.user_source_attention(wanted, attributes) if parts is not None else None
    except GraphrecError:  # a model trained without user sources: nothing to say about them
        return
    if parts is None:
        return
    names, vectors = parts[0], parts[1].to(torch.float32).cpu()
    weights = None if attention is None else attention[1].to(torch.float32).cpu().numpy()
    items = np.asarray(items, dtype=np.int64)
    for row, row_explanations in enumerate(explanations):
        recommended = items[row][items[row] >= 0]
        shares = (vectors[row] @ item_emb[torch.from_numpy(recommended)].to(torch.float32).t()).t().numpy()
        for explanation, share in zip(row_explanations, shares):
            explanation.user_sources = dict(zip(names, share.astype(float).tolist()))
            if weights is not None:
                explanation.user_source_weights = dict(zip(names, weights[row].astype(float).tolist()))


def _empty_evidence(history: sp.csr_matrix, items: np.ndarray,
                    top: int) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray, np.ndarray]:
    """Checked ``items`` and ``history``, and the ``[B, k, top]`` indices (-1) and values (NaN) to fill."""
    items = np.asarray(items, dtype=np.int64)
    if items.ndim != 2 or history.shape[0] != items.shape[0]:
        raise ValueError(f"items must be [B, k] with one history row each, got items {items.shape} and "
                         f"history {history.shape}")
    batch, k = items.shape
    return (items, history.tocsr(), np.full((batch, k, top), -1, dtype=np.int64),
            np.full((batch, k, top), np.nan, dtype=np.float32))


def _padded_rows(rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The column indices of each CSR row, left-aligned in a ``-1``-padded matrix, and its validity mask."""
    lengths = np.diff(rows.indptr)
    width = max(int(lengths.max(initial=0)), 1)
    padded = np.full((rows.shape[0], width), -1, dtype=np.int64)
    row_of = np.repeat(np.arange(rows.shape[0]), lengths)
    position = np.arange(rows.nnz) - np.repeat(rows.indptr[:-1], lengths)
    padded[row_of, position] = rows.indices
    return padded, padded >= 0


__all__ = ["AttentionSpread", "Explanation", "add_user_sources", "attention_spread", "contributing_history_items",
           "explain_items", "modality_weights", "nearest_history_items"]

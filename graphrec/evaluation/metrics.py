r"""Per-user ranking metrics, computed from where the hits fall in each top-K list.

Let :math:`(i_1, \dots, i_K)` be a user's top-K list, :math:`T` the user's
ground-truth items and :math:`h_j = \mathbb{1}[i_j \in T]`. Then, per user,

.. math::
    \text{Recall@K} &= \frac{1}{|T|} \sum_{j=1}^{K} h_j \qquad
    \text{Precision@K} = \frac{1}{K} \sum_{j=1}^{K} h_j \qquad
    \text{HitRate@K} = \mathbb{1}\Big[\sum_{j=1}^{K} h_j > 0\Big]

    \text{NDCG@K} &= \frac{\sum_{j=1}^{K} h_j / \log_2(j + 1)}
                          {\sum_{j=1}^{\min(|T|, K)} 1 / \log_2(j + 1)}

    \text{MRR@K} &= 1 / \min\{j \le K : h_j = 1\} \quad (0 \text{ without a hit})

    \text{MAP@K} &= \frac{1}{\min(|T|, K)} \sum_{j=1}^{K} h_j \,
                    \frac{\sum_{l \le j} h_l}{j}

Recall divides by :math:`|T|`, not :math:`\min(|T|, K)`, and NDCG uses binary
gains with the ideal list truncated at :math:`\min(|T|, K)`, as in the LightGCN
reference code. Precision divides by the nominal K even when fewer than K items
could be ranked. Each metric is averaged over the evaluated users by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

#: Names of the cut-off metrics, reported as ``f"{name}@{k}"``.
RANKING_METRICS: tuple[str, ...] = ("recall", "ndcg", "precision", "hit", "mrr", "map")


def ranking_metrics(hits: Tensor, num_relevant: Tensor, ks: Sequence[int]) -> dict[str, Tensor]:
    """Per-user cut-off metrics from a hit matrix.

    Args:
        hits: ``[B, L]`` bool, ``hits[u, j]`` is True when the item ranked ``j + 1``
            for user ``u`` is relevant. Lists shorter than ``max(ks)`` (fewer
            candidates than K) are treated as padded with misses.
        num_relevant: ``[B]`` number of ground-truth items per user (at least 1).
        ks: cut-offs.

    Returns:
        ``{"recall@10": Tensor[B], ...}`` in float64, for every name in
        :data:`RANKING_METRICS` and every K.
    """
    if hits.dim() != 2:
        raise ValueError(f"hits must be 2-D [users, positions], got shape {tuple(hits.shape)}")
    if num_relevant.shape != hits.shape[:1]:
        raise ValueError(f"num_relevant must have shape ({hits.size(0)},), got {tuple(num_relevant.shape)}")
    if hits.size(0) and int(num_relevant.min()) < 1:
        raise ValueError("every evaluated user needs at least one ground-truth item")
    if not ks or min(ks) < 1:
        raise ValueError(f"cut-offs must be positive, got {tuple(ks)}")
    max_k = max(ks)
    hits = hits[:, :max_k].to(torch.float64)
    if hits.size(1) < max_k:
        hits = torch.nn.functional.pad(hits, (0, max_k - hits.size(1)))

    positions = torch.arange(1, max_k + 1, dtype=torch.float64, device=hits.device)
    discounts = 1.0 / torch.log2(positions + 1.0)
    cum_hits = hits.cumsum(dim=1)
    cum_dcg = (hits * discounts).cumsum(dim=1)
    cum_ideal = discounts.cumsum(dim=0)
    cum_precision_at_hits = (hits * cum_hits / positions).cumsum(dim=1)
    has_hit = hits.bool().any(dim=1)
    # argmax returns the first maximal position, i.e. the first hit when there is one.
    first_hit = torch.where(has_hit, hits.argmax(dim=1), max_k)
    relevant = num_relevant.to(device=hits.device, dtype=torch.float64)

    out: dict[str, Tensor] = {}
    for k in ks:
        num_hits = cum_hits[:, k - 1]
        ideal_length = torch.clamp(num_relevant.to(hits.device), max=k).long()
        out[f"recall@{k}"] = num_hits / relevant
        out[f"ndcg@{k}"] = cum_dcg[:, k - 1] / cum_ideal[ideal_length - 1]
        out[f"precision@{k}"] = num_hits / k
        out[f"hit@{k}"] = (num_hits > 0).to(torch.float64)
        out[f"mrr@{k}"] = torch.where(first_hit < k, 1.0 / (first_hit + 1).to(torch.float64), 0.0)
        out[f"map@{k}"] = cum_precision_at_hits[:, k - 1] / ideal_length.to(torch.float64)
    return out


def reciprocal_rank(scores: Tensor, relevant: Tensor, top_hits: Tensor | None = None) -> Tensor:
    r"""Reciprocal rank of each row's best-ranked relevant item over the whole row (no cut-off).

    The rank follows the same rule as :func:`graphrec.evaluation.ranking.top_k`:
    higher score first, equal scores by lower column first,

    .. math::
        \text{rank}(i) = 1 + |\{j : s_j > s_i\}| + |\{j : s_j = s_i,\ j < i\}|.

    Items scored :math:`-\infty` are not recommended: a row whose relevant items
    all score :math:`-\infty` gets 0.

    Args:
        scores: ``[B, N]`` floating scores (no NaN), masked items at ``-inf``.
        relevant: ``[B, N]`` bool ground truth.
        top_hits: optional ``[B, L]`` hits of the rows' top-L lists ranked by that
            same rule; rows with a hit there take the rank of their first hit, so
            only the other rows need counting passes over all ``N`` scores.

    Returns:
        ``[B]`` float64.
    """
    if scores.shape != relevant.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)} differ in shape")
    rr = torch.zeros(scores.size(0), dtype=torch.float64, device=scores.device)
    todo = torch.arange(scores.size(0), device=scores.device)
    if top_hits is not None:
        has_hit = top_hits.any(dim=1)
        first_hit = top_hits.to(torch.uint8).argmax(dim=1)
        rr = torch.where(has_hit, 1.0 / (first_hit + 1).to(torch.float64), rr)
        todo = (~has_hit & relevant.any(dim=1)).nonzero().squeeze(1)  # a row without relevant items gets 0
        if todo.numel() == 0:
            return rr
        if todo.numel() < scores.size(0):
            scores, relevant = scores[todo], relevant[todo]

    rows, columns = relevant.nonzero(as_tuple=True)
    values = scores[rows, columns]
    minus_inf = torch.full((scores.size(0),), float("-inf"), dtype=scores.dtype, device=scores.device)
    best = minus_inf.scatter_reduce(0, rows, values, reduce="amax")
    at_best = values == best[rows]
    best_column = torch.full((scores.size(0),), scores.size(1), dtype=torch.long, device=scores.device)
    best_column = best_column.scatter_reduce(0, rows[at_best], columns[at_best], reduce="amin")

    above, at_or_above = _count_at_or_above(scores, best[:, None])
    ahead = above.clone()
    tied = (at_or_above - above > 1).nonzero().squeeze(1)  # other items share the best score
    if tied.numel():
        before = torch.arange(scores.size(1), device=scores.device) < best_column[tied, None]
        ahead[tied] += ((scores[tied] == best[tied, None]) & before).sum(dim=1)
    found = 1.0 / (ahead + 1).to(torch.float64)
    return rr.index_put((todo,), torch.where(best == float("-inf"), 0.0, found))


#: Columns per block when counting scores against a threshold: the comparison's temporary of a
#: block stays in cache, which on CPU is several times faster than comparing whole rows at once.
COUNT_BLOCK = 1024


def _count_at_or_above(scores: Tensor, threshold: Tensor) -> tuple[Tensor, Tensor]:
    """Per row, how many scores are above ``threshold`` ``[B, 1]`` and how many at or above it (int64)."""
    above = torch.zeros(scores.size(0), dtype=torch.int64, device=scores.device)
    at_or_above = torch.zeros_like(above)
    block = scores.size(1) if scores.is_cuda else COUNT_BLOCK
    for start in range(0, scores.size(1), block):
        part = scores[:, start:start + block]
        above += (part > threshold).sum(dim=1)
        at_or_above += (part >= threshold).sum(dim=1)
    return above, at_or_above

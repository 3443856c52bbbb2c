r"""Top-k recommendations from a trained run, by original user and item ids.

For a user :math:`u` the candidates are every item the user has not interacted with
in any split of the dataset (``exclude_seen=True``), ranked by the model's score
:math:`\hat{y}_{ui} = \langle \mathbf{u}_u, \mathbf{v}_i \rangle`. Items without any
training interaction (cold items) stay candidates: placing them is the model's job
(content-aware models score them from their features), not serving's.

A user unknown to the run is folded in from a handful of items without retraining
(:func:`new_user_recommend`): its vector is the mean of those items' final embeddings,

.. math::
    \mathbf{u}_{\text{new}} = \frac{1}{|\mathcal{H}|} \sum_{i \in \mathcal{H}} \mathbf{v}_i,

the one-layer neighbourhood aggregation of LightGCN (with uniform weights) applied
to the final item representations. It scores items that resemble the given ones,
:math:`\langle \mathbf{u}_{\text{new}}, \mathbf{v}_j \rangle = \frac{1}{|\mathcal{H}|}
\sum_{i \in \mathcal{H}} \langle \mathbf{v}_i, \mathbf{v}_j \rangle`.

A user known only by attribute values (``{"age": 25, "gender": "F", "occupation": "artist"}``) is
placed by them, through the model's user sources (:func:`attributes_recommend`,
:meth:`~graphrec.models.base.Recommender.score_new_users`): exactly as a cold user of the dataset
with those attributes. A cold user of the dataset (no training interaction) is recommended by
:func:`recommend` like any other, from its features; explanations then say which of its sources
drove each score (:func:`~graphrec.serving.explain.add_user_sources`).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.data.dataset import SPLITS
from graphrec.errors import GraphrecError
from graphrec.evaluation import top_k
from graphrec.models.base import Recommender, ScoreFn
from graphrec.serving.explain import Explanation, add_user_sources, explain_items

if TYPE_CHECKING:
    from graphrec.training.run import Run

#: Users scored at once; bounds the ``[batch, num_items]`` score matrix.
DEFAULT_BATCH_SIZE = 1024


@dataclass
class Recommendation:
    """Ranked items for one user: original item ids with their scores, best first."""

    user_id: str
    items: list[str]
    scores: list[float]
    explanations: list[Explanation] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary."""
        return {"user_id": self.user_id, "items": list(self.items), "scores": list(self.scores),
                "explanations": None if self.explanations is None else [e.to_dict() for e in self.explanations]}


def recommend(run: Run, user_ids: Sequence[str], k: int = 20, explain: bool = True, exclude_seen: bool = True,
              batch_size: int = DEFAULT_BATCH_SIZE) -> list[Recommendation]:
    """The ``k`` best items for each of ``user_ids`` (original ids), in the order given.

    With ``exclude_seen`` every item the user interacted with in the dataset (train,
    valid and test) is left out, so a user may get fewer than ``k`` items. With
    ``explain``, each item carries an :class:`~graphrec.serving.explain.Explanation`: from item
    embeddings, or, for graph filters, from each training item's contribution to the score (a model
    with neither, such as popularity, gives no explanations).

    Raises:
        GraphrecError: an id is not a user of the run's dataset (the message names it and
            suggests known ids), or ``k`` is not positive.
    """
    _check_k(k)
    if isinstance(user_ids, str):
        user_ids = [user_ids]
    dataset = run.dataset
    users = lookup_ids(dataset.users["user_id"], user_ids, kind="user")
    item_emb: Tensor | None = None
    score: ScoreFn
    if run.model.has_embeddings:
        user_emb, item_emb = _embeddings(run)
        score = functools.partial(_full_scores, run.model, user_emb, item_emb)
    else:
        run.model.eval()
        score = run.model.scorer()
    item_ids = dataset.items["item_id"].astype(str).to_numpy()
    known_user_ids = dataset.users["user_id"].astype(str).to_numpy()
    seen = dataset.csr(list(SPLITS)) if exclude_seen else None
    explainable = item_emb is not None or run.model.linear_in_history
    history = dataset.csr("train") if explain and explainable else None
    out: list[Recommendation] = []
    for start in range(0, len(users), batch_size):
        batch = users[start:start + batch_size]
        with torch.no_grad():
            scores = score(torch.from_numpy(batch))
        excluded = None if seen is None else seen[batch]
        values, columns = rank(scores, k, excluded)
        explanations: list[Any] = [None] * len(batch)
        if history is not None:
            explanations = explain_items(run.model, item_emb, item_ids, history[batch], columns)
            cold = np.flatnonzero(np.diff(history[batch].indptr) == 0)
            if len(cold) and run.model.scores_new_users:
                add_user_sources([explanations[row] for row in cold], run.model, item_emb, columns[cold],
                                 users=batch[cold])
        for user, user_values, user_columns, user_explanations in zip(batch, values, columns, explanations):
            keep = user_columns >= 0
            out.append(Recommendation(user_id=str(known_user_ids[user]),
                                      items=item_ids[user_columns[keep]].tolist(),
                                      scores=user_values[keep].astype(float).tolist(),
                                      explanations=user_explanations))
    return out


def new_user_recommend(run: Run, item_ids: Sequence[str], k: int = 20, explain: bool = True,
                       user_id: str = "new user") -> Recommendation:
    """Recommend for a user the run has never seen, from the items they interacted with.

    The user's vector is the mean of the final embeddings of ``item_ids`` (see the
    module docstring); those items are excluded, and explanations point back to them.

    Raises:
        GraphrecError: no items were given, or one is not an item of the run's dataset.
    """
    _check_k(k)
    if isinstance(item_ids, str):
        item_ids = [item_ids]
    if len(item_ids) == 0:
        raise GraphrecError("a new user needs at least one item to fold in; none was given")
    dataset = run.dataset
    items = np.unique(lookup_ids(dataset.items["item_id"], item_ids, kind="item"))
    _, item_emb = _embeddings(run)
    user_vector = item_emb[torch.from_numpy(items)].mean(dim=0, keepdim=True)
    scores = user_vector @ item_emb.t()
    history = sp.csr_matrix((np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int64), items)),
                            shape=(1, dataset.num_items))
    values, columns = rank(scores, k, history)
    all_ids = dataset.items["item_id"].astype(str).to_numpy()
    keep = columns[0] >= 0
    explanations = explain_items(run.model, item_emb, all_ids, history, columns)[0] if explain else None
    return Recommendation(user_id=user_id, items=all_ids[columns[0][keep]].tolist(),
                          scores=values[0][keep].astype(float).tolist(), explanations=explanations)


def attributes_recommend(run: Run, attributes: Mapping[str, Any], k: int = 20, explain: bool = True,
                         user_id: str = "new user") -> Recommendation:
    """Recommend for a user the run has never seen, from its attribute values alone (column -> value,
    e.g. ``{"age": 25, "gender": "F", "occupation": "artist"}``), through the model's user sources.

    Raises:
        GraphrecError: the model cannot place a user by attributes, an attribute is not one the
            model reads, or a value is unknown (the message names them).
    """
    _check_k(k)
    if not isinstance(attributes, Mapping):
        raise GraphrecError(f"a new user's attributes must be a mapping of column to value, got {attributes!r}")
    if not attributes:
        raise GraphrecError("a new user needs at least one attribute; none was given")
    model = run.model.eval()
    if not model.scores_new_users:
        raise GraphrecError(f"model {run.model_config.name!r} cannot place a user by its attributes; models that "
                            f"can: gat and vbpr with user_entities on, gfcf and mmgf")
    item_emb: Tensor | None = None
    with torch.no_grad():
        if model.has_embeddings:
            _, item_emb = _embeddings(run)
            scores = model.new_user_embeddings([attributes]).to(torch.float32) @ item_emb.t()
        else:
            scores = model.score_new_users([attributes])
    values, columns = rank(scores, k)
    all_ids = run.dataset.items["item_id"].astype(str).to_numpy()
    keep = columns[0] >= 0
    explanations = None
    if explain and item_emb is not None:
        empty = sp.csr_matrix((1, run.dataset.num_items)).astype(np.float32)
        explanations = explain_items(model, item_emb, all_ids, empty, columns)[0]
        add_user_sources([explanations], model, item_emb, columns, attributes=[attributes])
    return Recommendation(user_id=user_id, items=all_ids[columns[0][keep]].tolist(),
                          scores=values[0][keep].astype(float).tolist(), explanations=explanations)


def rank(scores: Tensor, k: int, excluded: sp.csr_matrix | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores`` ``[B, N]``, skipping ``excluded`` ``[B, N]`` entries.

    Returns ``(values, columns)``, each ``[B, min(k, N)]``, best first and ties by lower
    column; where a row has fewer than ``k`` candidates its tail is ``-1`` (value NaN).
    """
    scores = scores.detach().to(torch.float32).cpu().clone()
    allowed = torch.ones_like(scores, dtype=torch.bool)
    if excluded is not None:
        rows = excluded.tocoo()
        allowed[torch.from_numpy(rows.row.astype(np.int64)), torch.from_numpy(rows.col.astype(np.int64))] = False
        scores[~allowed] = float("-inf")
    values, columns = top_k(scores, k)
    # -inf only orders; the mask decides, so that excluded items filling the tail of a row
    # with fewer than k candidates are dropped rather than returned.
    keep = allowed.gather(1, columns)
    return (torch.where(keep, values, float("nan")).numpy(),
            torch.where(keep, columns, -1).numpy().astype(np.int64))


def lookup_ids(known: pd.Series, wanted: Sequence[str], kind: str) -> np.ndarray:
    """Indices (int64) of the original ids ``wanted`` among ``known`` (row ``i`` = index ``i``).

    Raises a GraphrecError naming every unknown id and suggesting close known ones.
    """
    index = pd.Index(known.astype(str))
    wanted = [str(value) for value in wanted]
    positions = index.get_indexer(pd.Index(wanted))
    if (positions < 0).any():
        missing = list(dict.fromkeys(w for w, p in zip(wanted, positions) if p < 0))
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        suggestions = difflib.get_close_matches(missing[0], index.tolist(), n=3, cutoff=0.5) or index[:3].tolist()
        raise GraphrecError(f"unknown {kind} id{'s' if len(missing) > 1 else ''} {shown}: the dataset has "
                            f"{len(index):,} {kind}s, with ids such as {', '.join(repr(s) for s in suggestions)}")
    return positions.astype(np.int64)


def _check_k(k: int) -> None:
    if k < 1:
        raise GraphrecError(f"k must be at least 1, got {k}")


def _embeddings(run: Run) -> tuple[Tensor, Tensor]:
    user_emb, item_emb = run.embeddings()
    return user_emb.to(torch.float32), item_emb.to(torch.float32)


def _full_scores(model: torch.nn.Module, user_emb: Tensor, item_emb: Tensor, users: Tensor) -> Tensor:
    scorer = model.full_scores if isinstance(model, Recommender) else Recommender.full_scores
    return scorer(user_emb, item_emb, users)


__all__ = ["DEFAULT_BATCH_SIZE", "Recommendation", "attributes_recommend", "lookup_ids", "new_user_recommend", "rank",
           "recommend"]

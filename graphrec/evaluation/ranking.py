r"""Leak-free full-ranking evaluation.

Every user with ground truth in the evaluated split gets a score for every item;
the items the user has already seen are masked, the rest are ranked, and the
metrics of :mod:`graphrec.evaluation.metrics` (and, optionally,
:mod:`graphrec.evaluation.beyond`) are averaged over users.

* **Ground truth** of user u: the distinct items u interacted with in ``split``.
* **Masking** (scores set to :math:`-\infty` before ranking): at ``split="valid"``
  the user's training items; at ``split="test"`` the user's training *and*
  validation items. Test items are never masked at validation time: they are
  unseen then. A ground-truth item that the user also has in a masked split
  (a repeated interaction) can never be ranked; it is removed from the ground
  truth and counted in :attr:`EvaluationResult.num_seen_ground_truth`.
* **Protocols**: ``"warm"`` ranks all items. ``"cold"`` ranks only the cold items
  (no training interaction, see :func:`cold_items`) and restricts the ground
  truth to them. ``"cold_users"`` ranks all items for the cold users only (no
  training interaction, see :func:`cold_users`), masked as above (at test, their
  validation items). On a dataset that holds cold users out by construction
  (converted with ``cold_users``, recorded in its manifest), the warm protocol
  leaves the users without training interactions out of its averages, so its
  numbers stay comparable with the same data without cold users; elsewhere it
  keeps every user with ground truth, as it always has. The cold protocol keeps
  every user.
* Users left with no ground truth are skipped and counted
  (:attr:`EvaluationResult.num_skipped_users`).
* **Ties**: items are ordered by score, descending; equal scores are ordered by
  lower item index first (a stable descending sort). :func:`top_k` applies this
  rule exactly, so results do not depend on the device or the batch size.
  Positions whose score is :math:`-\infty` (masked items, filling lists when a
  user has fewer candidates than K) never count as hits or recommendations.

Users are processed ``batch_size`` at a time, so memory is
:math:`O(\text{batch\_size} \times \text{num\_items})` whatever the number of users.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.data.holdout import holds_out_cold_users
from graphrec.errors import GraphrecError
from graphrec.evaluation.beyond import BeyondAccuracy
from graphrec.evaluation.metrics import RANKING_METRICS, ranking_metrics, reciprocal_rank

#: user indices (int64, ``[B]``) -> scores ``[B, num_items]``.
ScoreFn = Callable[[Tensor], Tensor]

PROTOCOLS: tuple[str, ...] = ("warm", "cold", "cold_users")
EVALUATED_SPLITS: tuple[str, ...] = ("valid", "test")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate.

    Args:
        ks: cut-offs of every ``@K`` metric.
        batch_size: users scored at once; bounds memory to ``batch_size x num_items`` scores.
        protocol: ``"warm"`` (rank all items), ``"cold"`` (rank cold items only) or ``"cold_users"``
            (rank all items, for cold users only).
        beyond_accuracy: also report coverage, ILD, novelty, average popularity and Gini.
        full_mrr: also report ``mrr`` without cut-off; it ranks every candidate for users with no
            hit in the top K, the slowest part of an evaluation, so training's per-epoch
            validation turns it off.
    """

    ks: tuple[int, ...] = (10, 20, 50)
    batch_size: int = 2048
    protocol: str = "warm"
    beyond_accuracy: bool = True
    full_mrr: bool = True

    def __post_init__(self) -> None:
        if not self.ks or any(not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1 for k in self.ks):
            raise ValueError(f"EvalConfig.ks must be positive integers, got {self.ks!r}")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        if len(set(self.ks)) != len(self.ks):
            raise ValueError(f"EvalConfig.ks has duplicates: {self.ks!r}")
        if self.batch_size < 1:
            raise ValueError(f"EvalConfig.batch_size must be positive, got {self.batch_size}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"EvalConfig.protocol must be one of {PROTOCOLS}, got {self.protocol!r}")


@dataclass
class EvaluationResult:
    """Metrics averaged over the evaluated users, and what was evaluated.

    ``users`` lists the evaluated user indices and ``per_user`` holds, for every
    per-user metric, one value per entry of ``users`` (for paired comparisons of
    models); neither is part of :meth:`to_dict`.
    """

    metrics: dict[str, float]
    num_users: int
    num_skipped_users: int
    split: str
    protocol: str
    num_seen_ground_truth: int = 0
    users: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64), repr=False)
    per_user: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "protocol": self.protocol, "num_users": self.num_users,
                "num_skipped_users": self.num_skipped_users,
                "num_seen_ground_truth": self.num_seen_ground_truth, "metrics": dict(self.metrics)}


def cold_items(dataset: Dataset) -> np.ndarray:
    """Indices (int64, sorted) of the items with no training interaction."""
    _, items = dataset.pairs("train")
    return np.flatnonzero(np.bincount(items, minlength=dataset.num_items) == 0).astype(np.int64)


def cold_users(dataset: Dataset) -> np.ndarray:
    """Indices (int64, sorted) of the users with no training interaction but with validation or
    test interactions: the cold-start users a conversion with ``cold_users`` held out."""
    users, _ = dataset.pairs("train")
    held_out, _ = dataset.pairs(["valid", "test"])
    has_train = np.bincount(users, minlength=dataset.num_users) > 0
    has_held_out = np.bincount(held_out, minlength=dataset.num_users) > 0
    return np.flatnonzero(has_held_out & ~has_train).astype(np.int64)


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` best columns of each row, best first; equal scores by lower column first.

    Gives the first ``k`` entries of a stable descending sort. :func:`torch.topk`
    does the work; whole rows are sorted only where it had to choose among scores
    tied at the k-th place (rare with learned scores; common when most scores are
    ``-inf`` or a scorer gives many items the same score). ``k`` is clipped to the
    number of columns. NaN, which :func:`torch.topk` ranks above everything,
    comes first.

    Returns:
        ``(values, columns)``, each ``[B, min(k, N)]``.
    """
    k = min(k, scores.size(1))
    # One extra place shows whether the k-th score continues beyond the list.
    values, columns = torch.topk(scores, min(k + 1, scores.size(1)), dim=1)
    boundary_tie = values[:, k - 1] == values[:, k] if values.size(1) > k else None
    values, columns = values[:, :k], columns[:, :k]
    # topk's order among equal values is unspecified: put them in column order.
    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    by_value = values.argsort(dim=1, descending=True, stable=True)
    values, columns = values.gather(1, by_value), columns.gather(1, by_value)
    if boundary_tie is not None and bool(boundary_tie.any()):
        rows = boundary_tie.nonzero().squeeze(1)
        tied_values, tied_columns = torch.sort(scores[rows], dim=1, descending=True, stable=True)
        values[rows], columns[rows] = tied_values[:, :k], tied_columns[:, :k]
    return values, columns


@dataclass(frozen=True)
class _Targets:
    ground_truth: sp.csr_matrix   # users x items, restricted to candidates, seen items removed
    seen: sp.csr_matrix           # users x items to mask
    candidates: np.ndarray | None  # None: every item
    users: np.ndarray             # users with ground truth
    num_seen_ground_truth: int


def _targets(dataset: Dataset, split: str, protocol: str) -> _Targets:
    if split not in EVALUATED_SPLITS:
        raise ValueError(f"split must be one of {EVALUATED_SPLITS}, got {split!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    seen = dataset.csr(["train"] if split == "valid" else ["train", "valid"])
    ground_truth = dataset.csr(split)
    candidates = None
    if protocol == "cold":
        candidates = cold_items(dataset)
        if len(candidates) == 0:
            raise GraphrecError(f"dataset {dataset.name!r}: the cold protocol needs items without "
                                f"training interactions, and every item has some")
        keep = np.zeros(dataset.num_items, dtype=np.float32)
        keep[candidates] = 1.0
        ground_truth = (ground_truth @ sp.diags(keep)).tocsr()
    if protocol == "cold_users" and len(cold_users(dataset)) == 0:
        raise GraphrecError(f"dataset {dataset.name!r}: the cold_users protocol needs users without training "
                            f"interactions, and every user with held-out interactions has some (convert with "
                            f"--cold-users F)")
    ground_truth.eliminate_zeros()
    overlap = ground_truth.multiply(seen).tocsr()
    num_seen = int(overlap.nnz)
    if num_seen:
        ground_truth = (ground_truth - overlap).tocsr()
        ground_truth.eliminate_zeros()
    evaluated = np.diff(ground_truth.indptr) > 0
    if protocol == "cold_users" or (protocol == "warm" and holds_out_cold_users(dataset)):
        trained = np.diff(dataset.csr("train").indptr) > 0
        evaluated &= ~trained if protocol == "cold_users" else trained
    users = np.flatnonzero(evaluated).astype(np.int64)
    return _Targets(ground_truth, seen.tocsr(), candidates, users, num_seen)


def _rows_dense(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> Tensor:
    block = matrix[rows].tocoo()
    dense = torch.zeros((len(rows), matrix.shape[1]), dtype=torch.bool, device=device)
    dense[torch.as_tensor(block.row, dtype=torch.long, device=device),
          torch.as_tensor(block.col, dtype=torch.long, device=device)] = True
    return dense


def _score_batch(score_fn: ScoreFn, users: np.ndarray, num_items: int, device: torch.device,
                 owns_scores: bool) -> Tensor:
    with torch.no_grad():
        scores = score_fn(torch.as_tensor(users, dtype=torch.long, device=device))
    return _checked_scores(scores, users, num_items, device, owns_scores)


def _checked_scores(scores: Tensor, users: np.ndarray, num_items: int, device: torch.device,
                    owns_scores: bool) -> Tensor:
    if not isinstance(scores, Tensor):
        raise GraphrecError(f"score_fn must return a torch.Tensor, got {type(scores).__name__}")
    if scores.shape != (len(users), num_items):
        raise GraphrecError(f"score_fn returned scores of shape {tuple(scores.shape)} for {len(users)} "
                            f"users; expected ({len(users)}, {num_items}) (one score per item)")
    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    # Masking writes into the scores: copy unless they are known to be a fresh tensor.
    return scores.detach().to(device=device, dtype=dtype, copy=not owns_scores)


def _check_no_nan(top_scores: Tensor, users: np.ndarray) -> None:
    # top_k ranks NaN first, so a NaN among a user's candidates shows in the first place.
    nan_rows = torch.isnan(top_scores[:, :1]).squeeze(1)
    if bool(nan_rows.any()):
        first = int(users[int(nan_rows.nonzero()[0])])
        raise GraphrecError(f"score_fn returned NaN scores for {int(nan_rows.sum())} of {len(users)} "
                            f"users (first: user {first})")


def evaluate(score_fn: ScoreFn, dataset: Dataset, split: str = "test", config: EvalConfig = EvalConfig(),
             item_features: np.ndarray | Tensor | None = None,
             device: torch.device | str = "cpu") -> EvaluationResult:
    """Full-ranking evaluation of ``score_fn`` on ``split`` of ``dataset``.

    Args:
        score_fn: maps user indices (int64 ``[B]``, on ``device``) to scores
            ``[B, num_items]``. It is called under :func:`torch.no_grad`; put a model
            in ``eval()`` mode first.
        dataset: supplies ground truth, masks and training popularity.
        split: ``"valid"`` (train items masked) or ``"test"`` (train and valid masked).
        config: cut-offs, batch size, protocol, beyond-accuracy switch.
        item_features: ``[num_items, d]`` features for intra-list diversity
            (``ild@K``); without them ``ild`` is not reported.
        device: where scores are ranked.

    Returns:
        An :class:`EvaluationResult` with ``recall@K``, ``ndcg@K``, ``precision@K``,
        ``hit@K``, ``mrr@K``, ``map@K`` for every K, ``mrr`` (no cut-off) and, if
        enabled, ``coverage@K``, ``ild@K``, ``novelty@K``, ``avg_pop@K``, ``gini@K``.

    Raises:
        GraphrecError: no user has ground truth; ``score_fn`` returns a wrong shape,
            or NaN for an item it could recommend (NaN on masked items does not
            matter); the cold protocol finds no cold item.
    """
    return _evaluate(score_fn, dataset, [split], config, item_features, torch.device(device), owns_scores=False)[0]


def evaluate_many(score_fn: Callable[[Tensor], Iterable[Tensor | int]], count: int, dataset: Dataset,
                  split: str = "valid", config: EvalConfig = EvalConfig(),
                  item_features: np.ndarray | Tensor | None = None,
                  device: torch.device | str = "cpu") -> list[EvaluationResult]:
    """:func:`evaluate` of ``count`` scorings in one pass over the users: ``score_fn(users)`` gives,
    for each of the ``count`` candidates in order (say, each hyperparameter setting of a closed-form
    model), its score matrix ``[B, num_items]``, or the index of an earlier candidate whose scores
    it shares; each is ranked and measured as :func:`evaluate` would.

    The evaluator ranks each matrix before it draws the next one from ``score_fn``'s iterable and
    masks it in place, so the matrices must belong to this call, and a generator may write every
    candidate's scores into one buffer (the candidates then cost one matrix of memory, not
    ``count``). The masks and ground truth of a batch are gathered once for all candidates."""
    device = torch.device(device)
    targets = _targets(dataset, split, config.protocol)
    accumulators = [_Accumulator(targets, dataset, split, config, item_features, device) for _ in range(count)]
    for start in range(0, len(targets.users), config.batch_size):
        users = targets.users[start:start + config.batch_size]
        batch = accumulators[0].prepare(users)
        drawn = 0
        with torch.no_grad():
            for scores in score_fn(torch.as_tensor(users, dtype=torch.long, device=device)):
                if drawn == count:
                    raise GraphrecError(f"score_fn gave more than the {count} score matrices expected")
                if isinstance(scores, int):
                    if not 0 <= scores < drawn:
                        raise GraphrecError(f"score_fn's candidate {drawn} shares the scores of candidate "
                                            f"{scores}, which is not an earlier one")
                    accumulators[drawn].repeat_last(accumulators[scores])
                else:
                    accumulators[drawn].add(users, _checked_scores(scores, users, dataset.num_items, device,
                                                                   owns_scores=True), batch)
                drawn += 1
        if drawn != count:
            raise GraphrecError(f"score_fn gave {drawn} score matrices; expected {count}")
    return [accumulator.result() for accumulator in accumulators]


def evaluate_splits(score_fn: ScoreFn, dataset: Dataset, splits: Sequence[str], config: EvalConfig = EvalConfig(),
                    item_features: np.ndarray | Tensor | None = None, device: torch.device | str = "cpu",
                    owns_scores: bool = False) -> list[EvaluationResult]:
    """:func:`evaluate` of one scoring on several ``splits`` (say, ``valid`` and ``test``) in one pass:
    each batch of the users any split evaluates is scored once and measured on each split (its own
    ground truth and masks), as :func:`evaluate` of each split would. ``owns_scores``: the scores are
    fresh tensors of this call, which the evaluator may mask in place."""
    return _evaluate(score_fn, dataset, splits, config, item_features, torch.device(device), owns_scores)


def _evaluate(score_fn: ScoreFn, dataset: Dataset, splits: Sequence[str], config: EvalConfig,
              item_features: np.ndarray | Tensor | None, device: torch.device,
              owns_scores: bool) -> list[EvaluationResult]:
    targets = [_targets(dataset, split, config.protocol) for split in splits]
    accumulators = [_Accumulator(target, dataset, split, config, item_features, device)
                    for target, split in zip(targets, splits, strict=True)]
    # Measuring only masks the scores in place, with -inf over the split's seen items, and valid's seen
    # items (train) are among test's (train + valid): measured valid first, test can take the same tensor.
    order = sorted(range(len(splits)), key=lambda index: EVALUATED_SPLITS.index(splits[index]))
    everyone = functools.reduce(np.union1d, [target.users for target in targets])
    for start in range(0, len(everyone), config.batch_size):
        users = everyone[start:start + config.batch_size]
        scores = _score_batch(score_fn, users, dataset.num_items, device, owns_scores)
        for index in order:
            evaluated = np.isin(users, targets[index].users)
            if evaluated.any():
                accumulators[index].add(users, scores, evaluated=None if evaluated.all() else evaluated)
    return [accumulator.result() for accumulator in accumulators]


@dataclass
class _Batch:
    """The masked entries (``seen_rows``, ``seen_columns``) and dense ground truth of a batch of users."""

    seen_rows: Tensor
    seen_columns: Tensor
    relevant: Tensor


class _Accumulator:
    """Masks, ranks and measures one scoring, a batch of users at a time."""

    def __init__(self, targets: _Targets, dataset: Dataset, split: str, config: EvalConfig,
                 item_features: np.ndarray | Tensor | None, device: torch.device) -> None:
        if len(targets.users) == 0:
            raise GraphrecError(f"dataset {dataset.name!r}: no user has {config.protocol} ground truth in "
                                f"split {split!r}; nothing to evaluate")
        self.targets, self.dataset, self.split, self.config, self.device = targets, dataset, split, config, device
        features = _check_features(item_features, dataset.num_items) if config.beyond_accuracy else None
        self.candidates = None if targets.candidates is None else torch.as_tensor(targets.candidates, device=device)
        self.beyond = None
        if config.beyond_accuracy:
            train_counts = np.asarray(dataset.csr("train").sum(axis=0)).ravel()
            self.beyond = BeyondAccuracy(config.ks, np.arange(dataset.num_items) if targets.candidates is None
                                         else targets.candidates, train_counts, features, device)
        self.collected: dict[str, list[Tensor]] = {}
        #: The top lists of the last batch (items, recommended), which :meth:`repeat_last` replays.
        self.last_lists: tuple[Tensor, Tensor] | None = None

    def prepare(self, users: np.ndarray) -> _Batch:
        """What measuring a batch of ``users`` needs besides the scores: their masked entries and
        ground truth (the same for every scoring of the batch)."""
        seen = self.targets.seen[users].tocoo()
        return _Batch(torch.as_tensor(seen.row, dtype=torch.long, device=self.device),
                      torch.as_tensor(seen.col, dtype=torch.long, device=self.device),
                      _rows_dense(self.targets.ground_truth, users, self.device))

    def add(self, users: np.ndarray, scores: Tensor, batch: _Batch | None = None,
            evaluated: np.ndarray | None = None) -> None:
        """Measure one batch: ``scores`` ``[B, num_items]`` of ``users``, which masking overwrites
        (``batch``: :meth:`prepare` of ``users``, made here when not given). ``evaluated``: which rows
        this scoring measures (bool ``[B]``; all when ``None``), so that a batch scored for several
        splits is not copied for each: the other rows are masked and ranked, and left out."""
        targets, config, device = self.targets, self.config, self.device
        batch = self.prepare(users) if batch is None else batch
        scores[batch.seen_rows, batch.seen_columns] = float("-inf")
        relevant = batch.relevant
        if self.candidates is not None:
            scores, relevant = scores[:, self.candidates], relevant[:, self.candidates]
        keep = None if evaluated is None else torch.as_tensor(evaluated, device=device)

        def kept(values: Tensor) -> Tensor:
            return values if keep is None else values[keep]

        top_scores, top_columns = top_k(scores, max(config.ks))
        measured_users = users if evaluated is None else users[evaluated]
        _check_no_nan(kept(top_scores), measured_users)
        recommended = top_scores != float("-inf")
        hits = relevant.gather(1, top_columns) & recommended
        num_relevant = torch.as_tensor(np.diff(targets.ground_truth.indptr)[measured_users], device=device)
        measured = ranking_metrics(kept(hits), num_relevant, config.ks)
        if config.full_mrr:
            measured["mrr"] = kept(reciprocal_rank(scores, relevant, top_hits=hits))
        for name, values in measured.items():
            self.collected.setdefault(name, []).append(values.cpu())
        if self.beyond is not None:
            items = top_columns if self.candidates is None else self.candidates[top_columns]
            self.last_lists = (kept(items), kept(recommended))
            self.beyond.update(*self.last_lists)

    def repeat_last(self, other: _Accumulator) -> None:
        """Take ``other``'s measures of its last batch as this scoring's (the same scores)."""
        for name, values in other.collected.items():
            self.collected.setdefault(name, []).append(values[-1])
        if self.beyond is not None:
            assert other.last_lists is not None  # other measured a batch with the same config
            self.beyond.update(*other.last_lists)

    def result(self) -> EvaluationResult:
        config, targets = self.config, self.targets
        per_user = {name: torch.cat(values).numpy() for name, values in self.collected.items()}
        metrics = {f"{name}@{k}": float(per_user[f"{name}@{k}"].mean())
                   for k in config.ks for name in RANKING_METRICS}
        if config.full_mrr:
            metrics["mrr"] = float(per_user["mrr"].mean())
        if self.beyond is not None:
            metrics.update(self.beyond.compute())
            per_user.update(self.beyond.per_user())
        return EvaluationResult(metrics=metrics, num_users=len(targets.users),
                                num_skipped_users=self.dataset.num_users - len(targets.users), split=self.split,
                                protocol=config.protocol, num_seen_ground_truth=targets.num_seen_ground_truth,
                                users=targets.users, per_user=per_user)


def evaluate_embeddings(user_emb: Tensor, item_emb: Tensor, dataset: Dataset, split: str = "test",
                        config: EvalConfig = EvalConfig(), item_features: np.ndarray | Tensor | None = None,
                        device: torch.device | str = "cpu") -> EvaluationResult:
    """:func:`evaluate` with dot-product scores ``user_emb[u] @ item_emb.T``."""
    if user_emb.dim() != 2 or item_emb.dim() != 2 or user_emb.size(1) != item_emb.size(1):
        raise GraphrecError(f"embeddings must be [num_users, d] and [num_items, d], got "
                            f"{tuple(user_emb.shape)} and {tuple(item_emb.shape)}")
    if user_emb.size(0) != dataset.num_users or item_emb.size(0) != dataset.num_items:
        raise GraphrecError(f"embeddings cover {user_emb.size(0)} users and {item_emb.size(0)} items; "
                            f"dataset {dataset.name!r} has {dataset.num_users} and {dataset.num_items}")
    device = torch.device(device)
    users_on_device = user_emb.detach().to(device)
    items_t = item_emb.detach().to(device).t()

    def score(users: Tensor) -> Tensor:
        return users_on_device[users] @ items_t

    return _evaluate(score, dataset, [split], config, item_features, device, owns_scores=True)[0]


def _check_features(item_features: np.ndarray | Tensor | None, num_items: int) -> Tensor | None:
    if item_features is None:
        return None
    features = torch.as_tensor(item_features).detach()
    if features.dim() != 2 or features.size(0) != num_items:
        raise GraphrecError(f"item_features must have shape ({num_items}, d), got {tuple(features.shape)}")
    if not bool(torch.isfinite(features).all()):
        row = int((~torch.isfinite(features)).any(dim=1).nonzero()[0])
        raise GraphrecError(f"item_features contain NaN or inf (first at row {row})")
    return features


def metric_names(ks: Sequence[int], beyond_accuracy: bool = True, with_ild: bool = True,
                 full_mrr: bool = True) -> list[str]:
    """The metric keys :func:`evaluate` reports for these cut-offs, in order (``ild@1`` never:
    a list of one item has no pair to be diverse)."""
    names = [f"{name}@{k}" for k in ks for name in RANKING_METRICS] + (["mrr"] if full_mrr else [])
    if beyond_accuracy:
        names += [f"{name}@{k}" for k in ks for name in ("coverage", "ild", "novelty", "avg_pop", "gini")
                  if name != "ild" or (with_ild and k > 1)]
    return names

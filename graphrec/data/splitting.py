"""Train / valid / test splitting protocols, vectorised over all interactions.

Each function returns an int8 array of split codes (0 train, 1 valid, 2 test),
one per interaction, in the input order.

* ``random``: per user, a random ``ratios`` share of their interactions (each user keeps
  at least one training interaction).
* ``temporal``: one global time cut: the earliest share trains, the latest tests.
* ``leave-last``: per user, the last interaction tests and the one before validates.
* ``given``: the source's own split (see :mod:`graphrec.data.convert`).
"""

from __future__ import annotations

import numpy as np

from graphrec.errors import ConfigError

TRAIN, VALID, TEST = 0, 1, 2
PROTOCOLS = ("random", "temporal", "leave-last", "given")


def check_ratios(ratios: tuple[float, ...]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not np.isclose(sum(ratios), 1.0) or ratios[0] <= 0:
        raise ConfigError(f"must be three non-negative numbers train,valid,test summing to 1 "
                          f"with train > 0, got {','.join(map(str, ratios))}", field="ratios")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def _rank_within_group(groups: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row among the rows of its group, ordered by ``keys``; and each row's group size."""
    order = np.lexsort((keys, groups))
    sizes = np.bincount(groups)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = np.arange(len(groups)) - starts[groups[order]]
    return rank, sizes[groups]


def split_random(users: np.ndarray, ratios: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Per-user random split: ``round(n * ratio)`` valid and test interactions, the rest (>= 1) train."""
    _, valid_ratio, test_ratio = check_ratios(ratios)
    rank, size = _rank_within_group(users, rng.random(len(users)))
    n_test = np.round(size * test_ratio).astype(np.int64)
    n_valid = np.round(size * valid_ratio).astype(np.int64)
    overflow = np.maximum(n_test + n_valid - (size - 1), 0)
    n_valid_cut = np.minimum(overflow, n_valid)
    n_valid -= n_valid_cut
    n_test -= overflow - n_valid_cut
    n_train = size - n_valid - n_test
    codes = np.full(len(users), TEST, dtype=np.int8)
    codes[rank < n_train + n_valid] = VALID
    codes[rank < n_train] = TRAIN
    return codes


def split_temporal(timestamps: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    """Global temporal split: sort by time; the first share trains, the next validates, the last tests."""
    train_ratio, valid_ratio, _ = check_ratios(ratios)
    order = np.argsort(timestamps, kind="stable")
    n = len(timestamps)
    n_train = round(n * train_ratio)
    n_valid = round(n * valid_ratio)
    codes = np.empty(n, dtype=np.int8)
    codes[order[:n_train]] = TRAIN
    codes[order[n_train:n_train + n_valid]] = VALID
    codes[order[n_train + n_valid:]] = TEST
    return codes


def split_leave_last(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """Per-user leave-last-out: the last interaction tests, the one before validates.

    Users with two interactions give one to test; users with one keep it in training.
    """
    rank, size = _rank_within_group(users, timestamps)
    from_end = size - 1 - rank
    codes = np.full(len(users), TRAIN, dtype=np.int8)
    codes[(from_end == 0) & (size >= 2)] = TEST
    codes[(from_end == 1) & (size >= 3)] = VALID
    return codes


def choose_cold_items(num_items: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``fraction`` of item indices, to be held out of training entirely."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"must be in [0, 1), got {fraction}", field="cold_items")
    count = round(num_items * fraction)
    return np.sort(rng.choice(num_items, size=count, replace=False)) if count else np.empty(0, dtype=np.int64)


def hold_out_items(items: np.ndarray, codes: np.ndarray, cold: np.ndarray, rng: np.random.Generator,
                   timestamps: np.ndarray | None = None) -> np.ndarray:
    """Move the training interactions of the ``cold`` items to valid or test, half each.

    Interactions already in valid or test stay where they are, so a source's own evaluation
    split is never rewritten. With ``timestamps`` (the time-ordered protocols), each cold
    item's earlier moved interactions validate and its later ones test; otherwise the halves
    are drawn at random.
    """
    moved = np.flatnonzero(np.isin(items, cold) & (codes == TRAIN))
    codes = codes.copy()
    if timestamps is None:
        codes[moved] = np.where(rng.random(len(moved)) < 0.5, VALID, TEST).astype(np.int8)
        return codes
    _, moved_items = np.unique(items[moved], return_inverse=True)
    rank, size = _rank_within_group(moved_items, timestamps[moved])
    codes[moved] = np.where(rank < size // 2, VALID, TEST).astype(np.int8)
    return codes


def choose_cold_users(eligible: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A random ``fraction`` of the ``eligible`` user indices (the users with features), to be held
    out of training entirely."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"must be in [0, 1), got {fraction}", field="cold_users")
    count = round(len(eligible) * fraction)
    return np.sort(rng.choice(eligible, size=count, replace=False)) if count else np.empty(0, dtype=np.int64)


def hold_out_users(users: np.ndarray, codes: np.ndarray, cold: np.ndarray, rng: np.random.Generator,
                   timestamps: np.ndarray | None = None) -> np.ndarray:
    """Move the training interactions of the ``cold`` users to valid or test: per user, half of
    them (rounded down) validate and the rest test, so a user with one moved interaction tests it.

    As in :func:`hold_out_items`, interactions already in valid or test stay. The halves are the
    earlier and the later one with ``timestamps``, otherwise drawn at random.
    """
    moved = np.flatnonzero(np.isin(users, cold) & (codes == TRAIN))
    keys = rng.random(len(moved)) if timestamps is None else timestamps[moved]
    _, moved_users = np.unique(users[moved], return_inverse=True)
    rank, size = _rank_within_group(moved_users, keys)
    codes = codes.copy()
    codes[moved] = np.where(rank < size // 2, VALID, TEST).astype(np.int8)
    return codes

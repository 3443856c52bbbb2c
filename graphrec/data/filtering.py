"""Filters applied to raw interactions before indexing, each reporting what it removed and why.

Nothing is dropped silently: every step returns a :class:`FilterReport` that the
conversion summary prints and ``manifest.json`` records.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from graphrec.data.dataset import SPLITS
from graphrec.errors import GraphrecError


@dataclass(frozen=True)
class FilterReport:
    step: str
    removed_interactions: int
    reason: str
    removed_users: int = 0
    removed_items: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        extra = ""
        if self.removed_users or self.removed_items:
            extra = f" ({self.removed_users:,} users and {self.removed_items:,} items left with no interactions)"
        return f"{self.step}: removed {self.removed_interactions:,} interactions{extra}: {self.reason}"


def filter_min_rating(frame: pd.DataFrame, threshold: float) -> tuple[pd.DataFrame, FilterReport]:
    """Keep interactions with rating >= threshold (implicit feedback)."""
    ratings = frame["rating"].to_numpy(dtype=np.float64)
    if np.isnan(ratings).all():
        raise GraphrecError("--min-rating needs ratings, but the source has none")
    keep = ratings >= threshold
    report = FilterReport("min_rating", int((~keep).sum()), f"rating below {threshold:g} (or missing)")
    return frame[keep].reset_index(drop=True), report


def drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[FilterReport]]:
    """Remove repeated (user, item) pairs, keeping the earliest split, then the earliest timestamp.

    A pair that appears in two splits would leak the answer from training into
    evaluation, so it is kept only in the earliest split (train < valid < test).
    """
    sort_keys = []
    if "split" in frame.columns:
        sort_keys.append(frame["split"].map({s: i for i, s in enumerate(SPLITS)}).to_numpy())
    if frame["timestamp"].notna().any():
        sort_keys.append(frame["timestamp"].fillna(np.iinfo(np.int64).max).to_numpy(np.int64))
    order = np.lexsort(sort_keys[::-1]) if sort_keys else np.arange(len(frame))
    ordered = frame.iloc[order]
    duplicated = ordered.duplicated(subset=["user_id", "item_id"], keep="first").to_numpy()
    reports = []
    if duplicated.any():
        if "split" in frame.columns:
            first_split = ordered.loc[~duplicated, ["user_id", "item_id", "split"]]
            dup_rows = ordered.loc[duplicated, ["user_id", "item_id", "split"]]
            merged = dup_rows.merge(first_split, on=["user_id", "item_id"], suffixes=("", "_kept"))
            cross = int((merged["split"] != merged["split_kept"]).sum())
        else:
            cross = 0
        within = int(duplicated.sum()) - cross
        if within:
            reports.append(FilterReport("deduplicate", within, "repeated (user, item) pair; kept the earliest"))
        if cross:
            reports.append(FilterReport("deduplicate_across_splits", cross,
                                        "(user, item) pair also present in an earlier split; kept the earliest "
                                        "split so evaluation cannot see training pairs"))
    kept = np.sort(order[~duplicated])
    return frame.iloc[kept].reset_index(drop=True), reports


def drop_repeats_across_splits(users: np.ndarray, items: np.ndarray,
                               codes: np.ndarray) -> tuple[np.ndarray, FilterReport | None]:
    """Rows to keep so that no (user, item) pair is in two splits: each pair stays in its earliest
    split (train < valid < test). Returns the keep mask and a report, or ``None`` when nothing goes.

    :func:`drop_duplicates` already guarantees this before splitting; this check is what still
    holds when repeats are kept (``dedupe=False``), which a random split could scatter over
    train and test.
    """
    keys = users.astype(np.int64) * (int(items.max(initial=0)) + 1) + items.astype(np.int64)
    order = np.lexsort((codes, keys))
    sorted_keys = keys[order]
    first_of_pair = np.ones(len(order), dtype=bool)
    first_of_pair[1:] = sorted_keys[1:] != sorted_keys[:-1]
    pair_start = np.maximum.accumulate(np.where(first_of_pair, np.arange(len(order)), 0))
    earliest = np.empty(len(codes), dtype=codes.dtype)
    earliest[order] = codes[order][pair_start]
    keep = codes == earliest
    if keep.all():
        return keep, None
    return keep, FilterReport("deduplicate_across_splits", int((~keep).sum()),
                              "(user, item) pair also present in an earlier split; kept the earliest split "
                              "so evaluation cannot see training pairs")


def kcore(frame: pd.DataFrame, k: int) -> tuple[pd.DataFrame, FilterReport]:
    """Iteratively drop users and items with fewer than ``k`` interactions until none is left.

    Vectorised: each round counts degrees with ``bincount`` over factorised ids.
    """
    if k <= 1:
        return frame, FilterReport("kcore", 0, f"{k}-core keeps everything")
    users, user_names = pd.factorize(frame["user_id"])
    items, item_names = pd.factorize(frame["item_id"])
    alive = np.ones(len(frame), dtype=bool)
    rounds = 0
    while True:
        user_degree = np.bincount(users[alive], minlength=len(user_names))
        item_degree = np.bincount(items[alive], minlength=len(item_names))
        drop = alive & ((user_degree[users] < k) | (item_degree[items] < k))
        if not drop.any():
            break
        alive &= ~drop
        rounds += 1
    removed_users = int((np.bincount(users, minlength=len(user_names)) > 0).sum()
                        - (np.bincount(users[alive], minlength=len(user_names)) > 0).sum())
    removed_items = int((np.bincount(items, minlength=len(item_names)) > 0).sum()
                        - (np.bincount(items[alive], minlength=len(item_names)) > 0).sum())
    report = FilterReport("kcore", int((~alive).sum()),
                          f"user or item with fewer than {k} interactions ({rounds} rounds)",
                          removed_users=removed_users, removed_items=removed_items)
    return frame[alive].reset_index(drop=True), report

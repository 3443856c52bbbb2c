"""What a format reader returns: interactions keyed by original ids, before indexing.

Readers only parse. Filtering (ratings threshold, duplicates, k-core), id
indexing and splitting are done once, for every format, in
:mod:`graphrec.data.convert`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Item metadata columns that graphrec understands (all optional).
#: ``genres`` and ``categories`` hold lists of strings; ``image`` a path (relative to the
#: dataset directory, or absolute) or a URL; ``year`` an integer.
ITEM_METADATA_COLUMNS = ("title", "text", "genres", "categories", "brand", "year", "image")


@dataclass
class RawDataset:
    """A parsed source, still in original ids.

    ``interactions`` columns:
      ``user_id`` and ``item_id`` (str, required), ``rating`` (float, NaN when unknown),
      ``timestamp`` (Int64, NA when unknown), and ``split`` ("train"/"valid"/"test")
      when the source defines a split, else the column is absent.
    ``items``: ``item_id`` plus any of :data:`ITEM_METADATA_COLUMNS` (and other columns).
    ``users``: ``user_id`` plus attributes.
    ``user_universe`` / ``item_universe``: ids that exist even without interactions
    (for example a LightGCN line with a user and no items); they keep their index.
    ``features``: modality name -> (item ids, matrix) with one row per listed item.
    ``source``: provenance (format, path, files read, reader options).
    ``notes``: human-readable remarks the reader wants in the conversion summary
    (rows it had to skip and why; readers never drop data silently).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    user_universe: list[str] | None = None
    item_universe: list[str] | None = None
    features: dict[str, tuple[list[str], np.ndarray, dict[str, Any]]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: files (for example images) the reader produced that must travel into the dataset
    #: directory: relative path inside the dataset -> absolute path now.
    attachments: dict[str, str] = field(default_factory=dict)
    #: remarks that describe the source's own split: kept only when the conversion keeps that
    #: split (``--split given`` or ``auto``), since a re-split would make them false.
    split_notes: list[str] = field(default_factory=list)
    #: item columns that describe the source's own split (the synthetic set's ``cold`` flag):
    #: dropped when the conversion re-splits.
    split_item_columns: tuple[str, ...] = ()

    @property
    def has_split(self) -> bool:
        return "split" in self.interactions.columns


def interactions_frame(user_id: Any, item_id: Any, rating: Any = None, timestamp: Any = None,
                       split: Any = None) -> pd.DataFrame:
    """Build a well-typed interactions frame for a :class:`RawDataset`."""
    n = len(np.asarray(user_id))
    frame = pd.DataFrame({
        "user_id": np.asarray(user_id).astype(str),
        "item_id": np.asarray(item_id).astype(str),
        "rating": (np.full(n, np.nan) if rating is None else np.asarray(rating, dtype=np.float64)),
        "timestamp": (pd.arrays.IntegerArray(np.zeros(n, np.int64), np.ones(n, dtype=bool)) if timestamp is None
                      else pd.array(timestamp, dtype="Int64")),
    })
    if split is not None:
        frame["split"] = np.asarray(split).astype(str) if not isinstance(split, str) else split
    return frame

"""The part of encoding media files (images, audio, video) that does not depend on the medium.

Each item (or user) names its file in a column of its table (``image``, ``audio``, ``video``,
a user's ``avatar``). :func:`encode_media_files` reads every file once, bounded (a regular file
under a size cap: a FIFO would block, ``/dev/zero`` never ends), keys it by its bytes in the
embedding cache, runs the encoder only on files not cached, and reports every file that is
missing, unreadable or undecodable by row (index and original id), path and reason. Such a row
becomes a missing modality (zero row, mask False); it never stops the pass. Keeping this loop in
one place keeps the three media encoders' checks and messages the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.data.storage import read_regular_file
from graphrec.encoders.cache import EmbeddingCache, encode_with_cache, utc_now
from graphrec.errors import GraphrecError

#: The media column each kind of file is read from, by side, when none is chosen.
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "item": {"image": "image", "audio": "audio", "video": "video"},
    "user": {"image": "avatar", "audio": "audio", "video": "video"},
}

#: ``encode_files(paths) -> (values, ok, failures)``: one row per path; ``failures`` are
#: ``(position, reason)`` for the files that could not be decoded (their ``ok`` is False).
EncodeFilesFn = Callable[[Sequence[Path]], tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]]


def media_column(kind: str, side: str, column: str | None) -> str:
    """The column to read ``kind`` files from: ``column`` if given, else the side's default."""
    return column if column is not None else DEFAULT_COLUMNS[side][kind]


def check_has_files(dataset: Dataset, kind: str, side: str, column: str) -> None:
    """Refuse, before a model is loaded, a dataset none of whose rows names a local ``kind`` file."""
    if all(location is None for location in dataset.file_locations(column, side=side)):
        rows = dataset.num_items if side == "item" else dataset.num_users
        raise GraphrecError(f"dataset {dataset.name!r} has no local {kind} for any of its {rows:,} {side}s "
                            f"({side}s.parquet needs a column {column!r} of file paths); there is nothing to encode")


def encode_media_files(dataset: Dataset, kind: str, side: str, column: str, encode_files: EncodeFilesFn,
                       dim: Callable[[], int], cache: EmbeddingCache, use_cache: bool, max_bytes: int,
                       provenance: dict[str, Any], log: Callable[[str], None] | None) -> ModalityFeatures:
    """Encode the ``kind`` file of every row of ``side``; the features named ``kind``.

    ``cache`` keys the files (by its encoder identity) and, when ``use_cache``, holds the embeddings.
    ``provenance`` goes into the features' ``encoder`` with the file ``column``, the ``side``,
    the creation time and, under ``"run"``, what this pass did and which rows had problems.
    """
    locations = dataset.file_locations(column, side=side)
    paths = [None if location is None else location.path for location in locations]
    table = dataset.items if side == "item" else dataset.users
    id_column = f"{side}_id"
    ids = table[id_column].astype(str).tolist() if id_column in table.columns else [str(i) for i in range(len(table))]

    def describe(position: int, reason: str) -> str:
        return f"{side} {position} (id {ids[position]!r}): {kind} {paths[position]} {reason}"

    problems: list[str] = []
    keys: list[str | None] = []
    for position, (path, location) in enumerate(zip(paths, locations, strict=True)):
        if path is None or location is None:
            keys.append(None)
            continue
        if location.problem is not None:
            problems.append(describe(position, location.problem))
            keys.append(None)
            continue
        try:
            keys.append(cache.key(read_regular_file(path, max_bytes)))
        except FileNotFoundError:
            problems.append(describe(position, "does not exist"))
            keys.append(None)
        except OSError as exc:
            problems.append(describe(position, f"cannot be read ({exc})"))
            keys.append(None)

    # Files with identical bytes share a key and are decoded once; a failure is reported for every
    # row that has those bytes (failed downloads often leave many identical empty files).
    undecodable: dict[str, str] = {}

    def compute(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        values, ok, failures = encode_files([paths[i] for i in positions])
        for j, reason in failures:
            key = keys[int(positions[j])]
            if key is not None:  # always: encode_with_cache asks only about rows that have a key
                undecodable[key] = reason
        return values, ok, []

    values, mask, stats = encode_with_cache(keys, compute, dim, cache if use_cache else None)
    problems += [describe(position, f"cannot be decoded ({undecodable[key]})")
                 for position, key in enumerate(keys) if key is not None and key in undecodable]
    stats = dataclasses.replace(stats, problems=tuple(problems))
    without_path = sum(path is None for path in paths)
    absolute = [describe(position, "is an absolute path, outside the dataset folder")
                for position, location in enumerate(locations) if location is not None and location.absolute]
    if log is not None:
        if absolute:
            log(f"{kind}: {len(absolute)} {side}s name their {kind} by an absolute path, outside the dataset folder "
                f"(first: {absolute[0]})")
        for problem in stats.problems:
            log(f"{kind}: {problem}; the {side} is marked missing")
        if without_path:
            log(f"{kind}: {without_path} of {len(paths)} {side}s have no local {kind} path (column {column!r} empty "
                "or a URL); they are marked missing")
        log(stats.summary(kind if side == "item" else f"user {kind}", rows=f"{side}s"))
    # The manifest lists the first problems only; the log has them all.
    run = {**stats.as_dict(), "without_path": without_path, "problem_items": list(stats.problems[:100]),
           "absolute_paths": len(absolute), "absolute_path_items": absolute[:100]}
    info = {**provenance, "column": column, "side": side, "created": utc_now(), "run": run}
    return ModalityFeatures(kind, values, mask, info)


def default_cache_root(dataset: Dataset, kind: str, cache_dir: str | Path | None) -> Path | None:
    """``cache_dir``, else ``DATASET/features/.cache/<kind>`` (None for a dataset not on disk: no cache)."""
    if cache_dir is not None:
        return Path(cache_dir)
    return dataset.path / "features" / ".cache" / kind if dataset.path is not None else None


__all__ = ["DEFAULT_COLUMNS", "check_has_files", "default_cache_root", "encode_media_files", "media_column"]

"""MMRec datasets: ``<name>.inter`` plus optional ``image_feat.npy`` / ``text_feat.npy``.

The interaction file is tab-separated with a header naming ``userID``, ``itemID``
and optionally ``rating``, ``timestamp`` and ``x_label`` (0/1/2 = train/valid/test).
Ids are 0-based integers; the universe is ``0 .. max`` so that converting keeps
every index. Row ``i`` of a feature matrix belongs to item ``i``; ``<modality>_feat.npy``
becomes :attr:`RawDataset.features` ``[modality]`` (``image`` and ``text`` in MMRec's
datasets).

MMRec's datasets also ship ``u_id_mapping.csv`` / ``i_id_mapping.csv`` (tab-separated,
an original id column and ``userID`` / ``itemID``); when present, the original ids
(reviewer ids, ASINs) replace the indices, and the universe stays in index order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphrec.data.formats._parsing import (
    first_repeat,
    is_index_range,
    parse_floats,
    parse_ids,
    parse_ints,
    parse_splits,
    parse_timestamps,
    read_delimited,
    require_file,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.data.storage import read_npy
from graphrec.errors import DataFormatError

#: ``<modality>_feat.npy`` holds one modality's item features (MMRec: image_feat.npy, text_feat.npy).
FEATURE_SUFFIX = "_feat.npy"
#: graphrec's addition to the format: ``<modality>_mask.npy`` (bool, one flag per row of the
#: matrix) marks the items that have the modality; rows it marks False are missing, not zeros.
MASK_SUFFIX = "_mask.npy"


def read(src: Path, *, name: str | None = None) -> RawDataset:
    """Read an MMRec dataset directory (or one ``.inter`` file).

    ``name`` picks ``<name>.inter`` when the directory holds several.
    """
    src = Path(src)
    inter_path = _inter_file(src, name)
    directory = inter_path.parent
    table = read_delimited(inter_path, sep="\t")
    for required in ("userID", "itemID"):
        if required not in table.columns:
            raise DataFormatError(f"the header has no {required!r} column (found: {', '.join(table.columns)})",
                                  path=inter_path, line=1, field=required)
    users = parse_ints(table["userID"], table.failure("userID"), "user id", non_negative=True)
    items = parse_ints(table["itemID"], table.failure("itemID"), "item id", non_negative=True)
    ratings = (parse_floats(table["rating"], table.failure("rating"), "rating", allow_missing=True)
               if "rating" in table.columns else None)
    notes = []
    timestamps = None
    if "timestamp" in table.columns:
        timestamps, floored = parse_timestamps(table["timestamp"], table.failure("timestamp"), allow_missing=True)
        if floored:
            notes.append(f"{floored} fractional timestamps in {inter_path.name} were rounded down to integers")
    splits = (parse_splits(table["x_label"], table.failure("x_label"), "x_label")
              if "x_label" in table.columns else None)
    extra = [c for c in table.columns if c not in ("userID", "itemID", "rating", "timestamp", "x_label")]
    if extra:
        notes.append(f"columns not used from {inter_path.name}: {', '.join(extra)}")

    for column, values in (("userID", users), ("itemID", items)):
        if not is_index_range(values):
            row = int(np.argmax(values))
            raise table.failure(column)(row, f"{column} {int(values[row])} is far beyond the number of ids used; "
                                             "MMRec ids must be 0-based indices")
    num_items = int(items.max()) + 1 if len(items) else 0
    features: dict[str, np.ndarray] = {}
    for path in sorted(directory.glob(f"*{FEATURE_SUFFIX}")):
        matrix = _load_matrix(path)
        if matrix.shape[0] < num_items:
            raise DataFormatError(f"has {matrix.shape[0]} rows but {inter_path.name} uses item ids up to "
                                  f"{num_items - 1} (row i must hold item i)", path=path)
        features[path.name.removesuffix(FEATURE_SUFFIX)] = matrix
    rows = {matrix.shape[0] for matrix in features.values()}
    if len(rows) > 1:
        sizes = ", ".join(f"{m}{FEATURE_SUFFIX}: {matrix.shape[0]}" for m, matrix in features.items())
        raise DataFormatError(f"feature files disagree on the number of items ({sizes})",
                              path=directory / f"{max(features, key=lambda m: features[m].shape[0])}{FEATURE_SUFFIX}")
    if rows and max(rows) > num_items:
        notes.append(f"the feature files list {max(rows)} items, {max(rows) - num_items} of them without "
                     "interactions")
        num_items = max(rows)
    num_users = int(users.max()) + 1 if len(users) else 0
    user_ids = _id_mapping(directory / "u_id_mapping.csv", "userID", num_users)
    item_ids = _id_mapping(directory / "i_id_mapping.csv", "itemID", num_items)
    if user_ids is None:
        user_ids = np.arange(num_users).astype(str)
    else:
        notes.append(f"original user ids from u_id_mapping.csv ({len(user_ids)} users)")
    if item_ids is None:
        item_ids = np.arange(num_items).astype(str)
    else:
        notes.append(f"original item ids from i_id_mapping.csv ({len(item_ids)} items)")
    item_universe = item_ids.tolist()
    files = [inter_path, *(directory / f"{m}{FEATURE_SUFFIX}" for m in features),
             *(directory / f for f in ("u_id_mapping.csv", "i_id_mapping.csv") if (directory / f).is_file())]
    return RawDataset(
        interactions=interactions_frame(user_ids[users], item_ids[items], ratings, timestamps, splits),
        user_universe=user_ids.tolist(),
        item_universe=item_universe,
        features={modality: _present_rows(directory, modality, matrix, item_universe)
                  for modality, matrix in features.items()},
        source={"format": "mmrec", "path": str(src), "files": [str(f) for f in files], "options": {"name": name}},
        notes=notes,
    )


def _present_rows(directory: Path, modality: str, matrix: np.ndarray,
                  item_universe: list[str]) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """The item ids and rows of a feature matrix, without the rows its mask file marks missing."""
    ids = item_universe[:len(matrix)]
    encoder = {"source": str(directory / f"{modality}{FEATURE_SUFFIX}")}
    mask_path = directory / f"{modality}{MASK_SUFFIX}"
    if not mask_path.is_file():
        return ids, matrix, encoder
    mask = read_npy(mask_path)
    if mask.dtype != bool or mask.shape != (len(matrix),):
        raise DataFormatError(f"must be a bool array with one flag per row of {modality}{FEATURE_SUFFIX} "
                              f"({len(matrix)}), got {mask.dtype} {mask.shape}", path=mask_path)
    return [item for item, present in zip(ids, mask, strict=True) if present], matrix[mask], encoder


def _id_mapping(path: Path, index_column: str, needed: int) -> np.ndarray | None:
    """Original ids in index order from an MMRec id map, or None when there is none."""
    if not path.is_file():
        return None
    table = read_delimited(path, sep="\t")
    others = [c for c in table.columns if c != index_column]
    if index_column not in table.columns or not others:
        raise DataFormatError(f"expected a header with an original id column and {index_column!r} "
                              f"(found: {', '.join(table.columns)})", path=path, line=1, field=index_column)
    index = parse_ints(table[index_column], table.failure(index_column), index_column, non_negative=True)
    original = parse_ids(table[others[0]], table.failure(others[0]), "original id")
    repeat = first_repeat(original)
    if repeat is not None:
        raise table.failure(others[0])(repeat, f"original id {str(original[repeat])!r} is listed more than once")
    order = np.argsort(index, kind="stable")
    if not np.array_equal(index[order], np.arange(len(index))):
        gap = int(np.flatnonzero(index[order] != np.arange(len(index)))[0])
        raise DataFormatError(f"{index_column} values must be 0..{len(index) - 1}, each once; {gap} is missing "
                              "or repeated", path=path, field=index_column)
    if len(index) < needed:
        raise DataFormatError(f"maps {len(index)} ids but the data use {index_column} up to {needed - 1}",
                              path=path, field=index_column)
    return original[order]


def _inter_file(src: Path, name: str | None) -> Path:
    if src.is_file():
        return src
    if not src.is_dir():
        raise DataFormatError("does not exist (expected an MMRec directory or a .inter file)", path=src)
    if name is not None:
        return require_file(src / f"{name}.inter", "MMRec interaction file")
    candidates = sorted(src.glob("*.inter"))
    if not candidates:
        raise DataFormatError("has no .inter file (expected NAME.inter, tab-separated with userID, itemID)",
                              path=src)
    if len(candidates) > 1:
        names = ", ".join(p.stem for p in candidates)
        raise DataFormatError(f"holds several .inter files; choose one with name= ({names})", path=src)
    return candidates[0]


def _load_matrix(path: Path) -> np.ndarray:
    matrix = read_npy(path)
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise DataFormatError(f"expected a 2-D numeric matrix, found shape {matrix.shape} of {matrix.dtype}",
                              path=path)
    return matrix.astype(np.float32, copy=False)

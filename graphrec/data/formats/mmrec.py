"""MMRec datasets: ``<name>.inter`` plus optional ``image_feat.npy`` / ``text_feat.npy``.

The interaction file is tab-separated with a header naming ``userID``, ``itemID``
and optionally ``rating``, ``timestamp`` and ``x_label`` (0/1/2 = train/valid/test).
Ids are 0-based integers; the universe is ``0 .. max`` so that converting keeps
every index. Row ``i`` of a feature matrix belongs to item ``i``; the matrices
become :attr:`RawDataset.features` under the modality names ``image`` and ``text``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphrec.data.formats._parsing import (
    parse_floats,
    parse_ints,
    parse_splits,
    parse_timestamps,
    read_delimited,
    require_file,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import DataFormatError

#: modality name -> feature file MMRec reads by default.
FEATURE_FILES: dict[str, str] = {"image": "image_feat.npy", "text": "text_feat.npy"}


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

    num_items = int(items.max()) + 1 if len(items) else 0
    features = {}
    feature_rows = {}
    for modality, file_name in FEATURE_FILES.items():
        path = directory / file_name
        if path.is_file():
            matrix = _load_matrix(path)
            if matrix.shape[0] < num_items:
                raise DataFormatError(f"has {matrix.shape[0]} rows but {inter_path.name} uses item ids up to "
                                      f"{num_items - 1} (row i must hold item i)", path=path)
            feature_rows[modality] = matrix.shape[0]
            features[modality] = matrix
    if len(set(feature_rows.values())) > 1:
        sizes = ", ".join(f"{FEATURE_FILES[m]}: {rows}" for m, rows in feature_rows.items())
        raise DataFormatError(f"feature files disagree on the number of items ({sizes})",
                              path=directory / FEATURE_FILES[max(feature_rows, key=feature_rows.get)])
    if feature_rows:
        rows = next(iter(feature_rows.values()))
        if rows > num_items:
            notes.append(f"the feature files list {rows} items, {rows - num_items} of them without interactions")
        num_items = rows
    item_universe = [str(i) for i in range(num_items)]
    return RawDataset(
        interactions=interactions_frame(users, items, ratings, timestamps, splits),
        user_universe=[str(i) for i in range(int(users.max()) + 1 if len(users) else 0)],
        item_universe=item_universe,
        features={modality: (item_universe, matrix, {"source": FEATURE_FILES[modality]})
                  for modality, matrix in features.items()},
        source={"format": "mmrec", "path": str(src), "files": [str(inter_path)] + [
            str(directory / FEATURE_FILES[m]) for m in features], "options": {"name": name}},
        notes=notes,
    )


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
    try:
        matrix = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(f"is not a readable .npy array: {exc}", path=path) from None
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise DataFormatError(f"expected a 2-D numeric matrix, found shape {matrix.shape} of {matrix.dtype}",
                              path=path)
    return matrix.astype(np.float32, copy=False)

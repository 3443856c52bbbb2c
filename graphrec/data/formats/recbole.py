"""RecBole atomic files: ``NAME.inter``, ``NAME.item``, ``NAME.user``.

Each file is tab-separated with a typed header, ``field:type`` where type is one of
``token``, ``token_seq``, ``float`` or ``float_seq`` (sequences are separated by
``seq_separator``, a space by default). Interactions map ``user_id``, ``item_id``,
``rating`` and ``timestamp``. Item fields map to graphrec's metadata: ``movie_title``
or ``title`` to ``title``, ``genre`` or ``class`` to ``genres``, ``categories``,
``brand``, and ``release_year`` to ``year``; other item and user fields are kept
with their declared types.

The benchmark layout ``NAME.train.inter`` / ``NAME.valid.inter`` / ``NAME.test.inter``
is read as a given split (the split of a row is the file it came from).

Users and items listed in ``NAME.user`` / ``NAME.item`` form the universe, in file
order, as RecBole counts them (a re-import of an export keeps every index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from graphrec.data.formats._parsing import (
    Failure,
    TextTable,
    parse_floats,
    parse_ids,
    parse_timestamps,
    read_delimited,
    require_file,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import DataFormatError, GraphrecError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
BENCHMARK_SPLITS = ("train", "valid", "test")
#: RecBole item field -> graphrec item metadata column.
ITEM_FIELD_NAMES: dict[str, str] = {"movie_title": "title", "title": "title", "genre": "genres",
                                    "class": "genres", "categories": "categories", "brand": "brand",
                                    "release_year": "year"}
_LIST_COLUMNS = ("genres", "categories")
_LARGEST_YEAR = 100_000


def read(src: Path, *, name: str | None = None, seq_separator: str = " ") -> RawDataset:
    """Read RecBole atomic files from a directory (or from the path of one ``.inter`` file).

    ``name`` is the dataset name (the files' stem), needed only when the directory holds several.
    """
    src = Path(src)
    if not seq_separator:
        raise GraphrecError("seq_separator must not be empty")
    directory, name = _locate(src, name)
    notes: list[str] = []
    benchmark = (directory / f"{name}.train.inter").is_file()
    if benchmark:
        paths = {split: directory / f"{name}.{split}.inter" for split in BENCHMARK_SPLITS}
        require_file(paths["test"], "benchmark test split")
        paths = {split: path for split, path in paths.items() if path.is_file()}
    else:
        paths = {"all": require_file(directory / f"{name}.inter", "RecBole interaction file")}
    frames = [_interactions(path, None if split == "all" else split, notes) for split, path in paths.items()]
    interactions = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    items = users = None
    if (directory / f"{name}.item").is_file():
        items = _attributes(directory / f"{name}.item", "item_id", seq_separator, rename=ITEM_FIELD_NAMES)
    if (directory / f"{name}.user").is_file():
        users = _attributes(directory / f"{name}.user", "user_id", seq_separator, rename={})
    files = [*paths.values()] + [directory / f"{name}.{kind}" for kind in ("item", "user")
                                 if (directory / f"{name}.{kind}").is_file()]
    return RawDataset(
        interactions=interactions, items=items, users=users,
        # RecBole counts every user and item of the atomic files, in file order.
        user_universe=None if users is None else users["user_id"].tolist(),
        item_universe=None if items is None else items["item_id"].tolist(),
        source={"format": "recbole", "path": str(src), "name": name, "benchmark": benchmark,
                "files": [str(f) for f in files], "options": {"seq_separator": seq_separator}},
        notes=notes,
    )


def _locate(src: Path, name: str | None) -> tuple[Path, str]:
    """The directory and dataset name of ``src``."""
    if src.is_file():
        stem = src.name.removesuffix(".inter")
        for split in BENCHMARK_SPLITS:
            stem = stem.removesuffix(f".{split}")
        return src.parent, name or stem
    if not src.is_dir():
        raise DataFormatError("does not exist (expected a RecBole dataset directory)", path=src)
    if name is not None:
        return src, name
    stems = {p.name.removesuffix(".inter") for p in src.glob("*.inter")}
    names = {s.rsplit(".", 1)[0] if s.rsplit(".", 1)[-1] in BENCHMARK_SPLITS else s for s in stems}
    if src.name in names or not names:
        return src, src.name
    if len(names) > 1:
        raise DataFormatError(f"holds several RecBole datasets; choose one with name= ({', '.join(sorted(names))})",
                              path=src)
    return src, names.pop()


def read_atomic(path: Path) -> tuple[TextTable, dict[str, str]]:
    """Parse an atomic file; columns are renamed to the bare field names, with their types returned."""
    table = read_delimited(path, sep="\t")
    types: dict[str, str] = {}
    columns: dict[str, pa.Array] = {}
    for header, values in table.columns.items():
        field, colon, kind = header.rpartition(":")
        if not colon or not field:
            raise DataFormatError(f"header field {header!r} has no type (expected name:type with type one of "
                                  f"{', '.join(FIELD_TYPES)})", path=path, line=1, field=header)
        if kind not in FIELD_TYPES:
            raise DataFormatError(f"header field {header!r} has unknown type {kind!r} "
                                  f"(expected one of {', '.join(FIELD_TYPES)})", path=path, line=1, field=field)
        if field in types:
            raise DataFormatError(f"the header repeats field {field!r}", path=path, line=1, field=field)
        types[field] = kind
        columns[field] = values
    return TextTable(path=path, columns=columns, lines=table.lines), types


def _interactions(path: Path, split: str | None, notes: list[str]) -> pd.DataFrame:
    table, types = read_atomic(path)
    for required in ("user_id", "item_id"):
        if required not in types:
            raise DataFormatError(f"has no {required!r} field (found: {', '.join(types)})", path=path, line=1,
                                  field=required)
    rating = timestamp = None
    if "rating" in types:
        rating = parse_floats(table["rating"], table.failure("rating"), "rating", allow_missing=True)
    if "timestamp" in types:
        timestamp, floored = parse_timestamps(table["timestamp"], table.failure("timestamp"), allow_missing=True)
        if floored:
            notes.append(f"{floored} fractional timestamps in {path.name} were rounded down to integers")
    unused = [f for f in types if f not in ("user_id", "item_id", "rating", "timestamp")]
    if unused:
        notes.append(f"interaction fields not used from {path.name}: {', '.join(unused)}")
    return interactions_frame(parse_ids(table["user_id"], table.failure("user_id"), "user id"),
                              parse_ids(table["item_id"], table.failure("item_id"), "item id"),
                              rating, timestamp, split)


def _attributes(path: Path, key: str, seq_separator: str, rename: dict[str, str]) -> pd.DataFrame:
    """An item or user table keyed by ``key``, each field converted by its declared type."""
    table, types = read_atomic(path)
    if key not in types:
        raise DataFormatError(f"has no {key!r} field (found: {', '.join(types)})", path=path, line=1, field=key)
    ids = parse_ids(table[key], table.failure(key), key.replace("_", " "))
    frame = pd.DataFrame({key: ids})
    for field, kind in types.items():
        if field == key:
            continue
        column = rename.get(field, field)
        if column in frame.columns:  # e.g. both ``genre`` and ``class``: keep the second under its own name
            column = field if field not in frame.columns else f"{field}:{kind}"
        values = table[field]
        fail = table.failure(field)
        if column == "year":
            frame[column] = _years(values, fail, field)
        elif column == "title":
            frame[column] = _text(values)  # a title is text even when declared token_seq
        elif column in _LIST_COLUMNS or kind == "token_seq":
            frame[column] = _token_lists(values, seq_separator)
        elif kind == "float":
            frame[column] = parse_floats(values, fail, field, allow_missing=True)
        elif kind == "float_seq":
            frame[column] = _float_lists(values, seq_separator, fail, field)
        else:
            frame[column] = _text(values)
    repeated = frame[key].duplicated()
    if repeated.any():
        row = int(np.flatnonzero(repeated.to_numpy())[0])
        raise table.failure(key)(row, f"{key} {frame[key].iloc[row]!r} is listed more than once")
    return frame


def _years(values: pa.Array, fail: Failure, field: str) -> pd.arrays.IntegerArray:
    years = parse_floats(values, fail, field, allow_missing=True)
    missing = np.isnan(years)
    known = np.where(missing, 0.0, years)
    invalid = (known != np.floor(known)) | (np.abs(known) > _LARGEST_YEAR)
    if invalid.any():
        row = int(np.argmax(invalid))
        raise fail(row, f"year {values[row].as_py()!r} is not a year")
    return pd.arrays.IntegerArray(np.where(missing, 0, years).astype(np.int64), missing)


def _text(values: pa.Array) -> np.ndarray:
    out = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    out[out == ""] = None
    return out


def _token_lists(values: pa.Array, separator: str) -> pd.Series:
    parts = pc.split_pattern(values, separator).to_pylist()
    return pd.Series([[p for p in row if p] for row in parts], dtype=object)


def _float_lists(values: pa.Array, separator: str, fail: Failure, field: str) -> pd.Series:
    tokens = pc.split_pattern(values, separator)
    flat = pc.list_flatten(tokens)
    flat = pc.if_else(pc.equal(flat, ""), pa.scalar(None, pa.string()), flat)
    owner = pc.list_parent_indices(tokens).to_numpy()
    numbers = parse_floats(flat, lambda index, message: fail(int(owner[index]), message), field,
                           allow_missing=True)
    present = ~np.isnan(numbers)
    lengths = np.bincount(owner[present], minlength=len(values))
    return pd.Series([chunk.tolist() for chunk in np.split(numbers[present], np.cumsum(lengths)[:-1])],
                     dtype=object)

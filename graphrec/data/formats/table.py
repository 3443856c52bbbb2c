"""Generic interaction tables: CSV (or any delimited text) and Parquet.

One row per interaction. ``columns`` maps graphrec's names (``user``, ``item``,
``rating``, ``timestamp``, ``split``) to the table's column names; a name not given
is looked up among common spellings (:data:`DEFAULT_COLUMNS`). ``user`` and ``item``
are required; ``split`` holds ``train``/``valid``/``test`` (or ``0``/``1``/``2``).
Timestamps are integers (seconds), Parquet timestamp/date columns, or ISO 8601 text.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from graphrec.data.formats._parsing import (
    Failure,
    parse_floats,
    parse_ids,
    parse_splits,
    parse_timestamps,
    read_delimited,
    require_file,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import ConfigError, DataFormatError, GraphrecError

#: graphrec name -> column names tried, in order, when ``columns`` does not say.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "user": ("user", "user_id", "userId", "userID", "UserID"),
    "item": ("item", "item_id", "itemId", "itemID", "ItemID", "movieId"),
    "rating": ("rating", "Rating", "score"),
    "timestamp": ("timestamp", "Timestamp", "time"),
    "split": ("split",),
}
REQUIRED = ("user", "item")
KINDS = ("csv", "parquet")


#: How a tab separator may be written on a command line, where a literal tab is awkward to type.
TAB_SPELLINGS = ("\\t", "tab", "TAB")


def read(src: Path, *, kind: str = "csv", columns: Mapping[str, str] | None = None,
         sep: str | None = None) -> RawDataset:
    """Read an interaction table.

    ``kind`` is ``"csv"`` (delimited text with a header; ``sep`` is the delimiter, ``","`` by
    default, ``"\\t"`` or ``"tab"`` for a tab, and double quotes quote) or ``"parquet"`` (a file,
    or a directory of Parquet files; no ``sep``).
    """
    src = Path(src)
    if kind not in KINDS:
        raise GraphrecError(f"unknown table kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "parquet" and sep is not None:
        raise GraphrecError("--sep applies to csv only; a Parquet file has no field separator")
    sep = "\t" if sep in TAB_SPELLINGS else ("," if sep is None else sep)
    if len(sep) != 1 or sep in "\"\r\n":
        raise ConfigError(f"separator {sep!r} is not supported: a CSV field separator is one character other than "
                          f"a quote or a line break (',', ';', '|', or '\\t' for a tab)", field="sep")
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise GraphrecError(f"unknown column role(s) {', '.join(map(repr, unknown))} in columns=; "
                            f"expected some of {', '.join(DEFAULT_COLUMNS)}")
    if kind == "csv":
        table = read_delimited(require_file(src, "CSV interaction table"), sep=sep, quoted=True)
        values, failure = table.columns, table.failure
    else:
        values = _read_parquet(src)

        def failure(field: str) -> Failure:
            def fail(row: int, message: str) -> DataFormatError:
                return DataFormatError(message, path=src, line=row + 1, field=field)
            return fail

    chosen = _choose_columns(src, list(values), columns)
    notes = []
    ignored = [c for c in values if c not in chosen.values()]
    if ignored:
        notes.append(f"columns not used from {src.name}: {', '.join(ignored)}")
    rating = timestamp = split = None
    if "rating" in chosen:
        rating = parse_floats(values[chosen["rating"]], failure(chosen["rating"]), "rating", allow_missing=True)
    if "timestamp" in chosen:
        timestamp, floored = _timestamps(values[chosen["timestamp"]], failure(chosen["timestamp"]))
        if floored:
            notes.append(f"{floored} fractional timestamps in {src.name} were rounded down to integers")
    if "split" in chosen:
        split = parse_splits(values[chosen["split"]], failure(chosen["split"]))
    interactions = interactions_frame(
        parse_ids(values[chosen["user"]], failure(chosen["user"]), "user id"),
        parse_ids(values[chosen["item"]], failure(chosen["item"]), "item id"),
        rating, timestamp, split)
    return RawDataset(interactions=interactions,
                      source={"format": kind, "path": str(src), "columns": chosen,
                              "options": {"sep": sep} if kind == "csv" else {}},
                      notes=notes)


def _read_parquet(src: Path) -> dict[str, pa.Array]:
    if not src.exists():
        raise DataFormatError("required file is missing (Parquet interaction table)", path=src)
    try:
        table = pq.read_table(src)
        table.validate(full=True)  # e.g. text that is not UTF-8
        columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    # a damaged file can fail anywhere from the footer to the column names
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFormatError(f"is not a readable Parquet file: {exc}", path=src) from None
    if table.num_rows == 0:
        raise DataFormatError("has no rows", path=src)
    return columns


def _choose_columns(src: Path, available: list[str], columns: dict[str, str]) -> dict[str, str]:
    """graphrec name -> source column, from ``columns`` or the default spellings."""
    chosen = {}
    for role, candidates in DEFAULT_COLUMNS.items():
        if role in columns:
            if columns[role] not in available:
                raise DataFormatError(f"has no column {columns[role]!r} (given as the {role} column; "
                                      f"found: {', '.join(available)})", path=src, line=1, field=columns[role])
            chosen[role] = columns[role]
            continue
        found = next((c for c in candidates if c in available), None)
        if found is not None:
            chosen[role] = found
        elif role in REQUIRED:
            hint = ""
            if len(available) == 1 and any(mark in available[0] for mark in ("\t", ";", "|")):
                hint = "; the header reads as one column: is the file separated by something else (--sep)?"
            raise DataFormatError(f"has no {role} column (looked for {', '.join(candidates)}; found: "
                                  f"{', '.join(available)}); name it with --columns {role}=COLUMN "
                                  f"(Python: columns={{{role!r}: ...}}){hint}", path=src, line=1, field=role)
    return chosen


_UNITS_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _timestamps(values: pa.Array, fail: Failure) -> tuple[pd.arrays.IntegerArray, int]:
    """Integer seconds from numbers, Parquet timestamps/dates, or ISO 8601 text."""
    if pa.types.is_date(values.type):
        values = pc.cast(values, pa.timestamp("s"))
    if pa.types.is_timestamp(values.type):
        missing = values.is_null().to_numpy(zero_copy_only=False)
        ticks = pc.cast(values, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return pd.arrays.IntegerArray(ticks // _UNITS_PER_SECOND[values.type.unit], missing), 0
    try:
        return parse_timestamps(values, fail, allow_missing=True)
    except DataFormatError as numeric_error:
        if not pa.types.is_string(values.type):
            raise
        text = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object).replace("", None)
        try:
            moments = pd.to_datetime(text, format="ISO8601", utc=True)
        except (ValueError, TypeError, OverflowError):
            raise numeric_error from None
        missing = moments.isna().to_numpy()
        seconds = moments.dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
        seconds[missing] = 0
        return pd.arrays.IntegerArray(seconds, missing), 0

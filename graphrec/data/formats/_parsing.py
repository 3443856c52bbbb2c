"""Parsing helpers shared by the format readers: bytes in, typed columns out, errors located.

Every reader turns a problem in its input into a :class:`~graphrec.errors.DataFormatError`
that names the file, the line (or row) and the field. The helpers here do the
tokenising with pyarrow's CSV reader (vectorised, no Python loop per row) and keep,
for every parsed row, the line of the file it came from, so that a value found to be
bad after parsing can still be reported at its line.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from graphrec.errors import DataFormatError, InputWarning

#: A function that builds the error for a bad value: ``fail(row, message)``.
Failure = Callable[[int, str], DataFormatError]

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
#: Accepted split labels: names and MMRec's ``x_label`` codes.
SPLIT_LABELS: dict[str, str] = {"train": "train", "valid": "valid", "test": "test",
                                "0": "train", "1": "valid", "2": "test"}
# pyarrow's CSV reader takes a one-character delimiter; a longer separator ("::") is
# replaced by this control character, which does not occur in text data.
_UNIT_SEPARATOR = "\x1f"
_INT64_LIMIT = 2.0**63
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def require_file(path: Path, what: str | None = None) -> Path:
    """Return ``path`` if it is a file, else raise an error naming the expected file."""
    if not path.is_file():
        detail = f" ({what})" if what else ""
        if path.exists():  # a FIFO would block the read forever, a device (/dev/zero) never end
            raise DataFormatError(f"is not a regular file{detail}: a directory, FIFO or device is not read", path=path)
        raise DataFormatError(f"required file {path.name!r} is missing{detail}", path=path)
    return path


def read_bytes(path: Path) -> bytes:
    """The contents of ``path``, gunzipped when it is gzip-compressed, without a UTF-8 BOM."""
    require_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"cannot be read: {exc.strerror}", path=path) from exc
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"is not valid gzip data: {exc}", path=path) from exc
    return data.removeprefix(UTF8_BOM)


def decode(data: bytes, path: Path, encoding: str = "utf-8", fallback: str | None = None) -> str:
    """Decode ``data``; an invalid byte is reported at its line, or, with a ``fallback`` encoding
    (``latin-1`` decodes any byte), the text is decoded with that and an :class:`InputWarning`
    says so."""
    return decode_with_encoding(data, path, encoding, fallback)[0]


def decode_with_encoding(data: bytes, path: Path, encoding: str = "utf-8", fallback: str | None = None
                         ) -> tuple[str, str]:
    """:func:`decode`, and the encoding that was used."""
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        if fallback is not None:
            warnings.warn(InputWarning(f"{path}: not valid {encoding} text (byte {data[exc.start]:#04x} at line "
                                       f"{line}); read as {fallback}"), stacklevel=2)
            return data.decode(fallback), fallback
        raise DataFormatError(f"is not valid {encoding} text (byte {data[exc.start]:#04x})",
                              path=path, line=line) from None


def check_last_line(data: bytes, path: Path) -> None:
    """Warn (:class:`InputWarning`) when a line-oriented file does not end with a line break: its last
    line may have been cut short (a copy that stopped early), which parses as a shorter value."""
    if data.strip() and not data.endswith((b"\n", b"\r")):
        last = data.count(b"\n") + 1
        warnings.warn(InputWarning(f"{path}: line {last}: the file does not end with a line "
                                   f"break, so this last line may have been cut short; check it"), stacklevel=2)


def require_content(data: bytes | str, path: Path) -> None:
    """Raise a clear error for an empty (or whitespace-only) input file."""
    if not data.strip():
        raise DataFormatError("is empty", path=path)


def line_of_offset(data: bytes | str, offset: int) -> int:
    """1-based line number of the character at ``offset``."""
    if isinstance(data, bytes):
        return data.count(b"\n", 0, offset) + 1
    return data.count("\n", 0, offset) + 1


@dataclass(frozen=True)
class TextTable:
    """String columns parsed from a delimited text file, with the line of each row.

    ``columns`` maps a field name to a pyarrow string array; ``lines[r]`` is the
    1-based line of row ``r`` in ``path``. Blank lines are not rows.
    """

    path: Path
    columns: dict[str, pa.Array]
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    def __getitem__(self, name: str) -> pa.Array:
        return self.columns[name]

    def failure(self, field: str) -> Failure:
        """A ``fail(row, message)`` function for values of ``field``."""
        def fail(row: int, message: str) -> DataFormatError:
            return DataFormatError(message, path=self.path, line=int(self.lines[row]), field=field)
        return fail


def read_delimited(path: Path, *, sep: str, names: Sequence[str] | None = None, encoding: str = "utf-8",
                   quoted: bool = False, data: bytes | None = None, fallback: str | None = None) -> TextTable:
    """Parse a delimited text file into string columns.

    ``names`` gives the fields of a file without a header; ``None`` reads them from
    the first line. ``quoted`` enables CSV double-quote quoting. Text that is not valid
    ``encoding`` is read with ``fallback`` when one is given (see :func:`decode`). A line with the wrong
    number of fields is an error that says which separator was expected. An empty
    file is an error.
    """
    if data is None:
        data = read_bytes(path)
    text, used = decode_with_encoding(data, path, encoding, fallback)
    require_content(text, path)
    check_last_line(data, path)
    if used.replace("-", "").lower() != "utf8":
        data = text.encode("utf-8")
    first_line = 1
    if names is None:
        header_text = _LINE_BREAK.split(text, maxsplit=1)[0]  # the line breaks pyarrow knows
        if len(sep) == 1:
            reader = csv.reader([header_text], delimiter=sep, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
            try:
                names = next(reader, [])
            except csv.Error as exc:
                raise DataFormatError(f"the header cannot be parsed: {exc}", path=path, line=1) from None
        else:
            names = header_text.split(sep)
        if not any(name.strip() for name in names):
            raise DataFormatError("the header line is empty (expected column names)", path=path, line=1)
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise DataFormatError(f"the header repeats column {duplicated[0]!r}", path=path, line=1,
                                  field=duplicated[0])
        first_line = 2
    names = list(names)
    delimiter = sep
    if len(sep) != 1:
        data = data.replace(sep.encode("utf-8"), _UNIT_SEPARATOR.encode("ascii"))
        delimiter = _UNIT_SEPARATOR
    expected = len(names)
    bad_rows: list[tuple[int, int]] = []

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        bad_rows.append((row.number or 0, row.actual_columns))
        return "error"

    label = {"\t": "tab", ",": "comma", " ": "space", "|": "pipe", ";": "semicolon"}.get(sep, repr(sep))
    try:
        table = pa_csv.read_csv(
            io.BytesIO(data),
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=first_line - 1, use_threads=False),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, quote_char='"' if quoted else False,
                                              ignore_empty_lines=False, newlines_in_values=False,
                                              invalid_row_handler=on_invalid_row),
            convert_options=pa_csv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                  strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if bad_rows:
            line, found = bad_rows[0]
            # The field named is the first one missing, or the last one when there are extra fields.
            field = names[min(found, expected - 1)] if found else names[0]
            listed = f" ({', '.join(names)})" if expected <= 8 else ""
            raise DataFormatError(f"expected {expected} {label}-separated fields{listed}, found {found}",
                                  path=path, line=line or None, field=field) from None
        raise DataFormatError(f"cannot be parsed as {label}-separated text: {exc}", path=path) from None
    columns = {name: table.column(name).combine_chunks() for name in names}
    lines = np.arange(first_line, first_line + table.num_rows, dtype=np.int64)
    # Rows map to lines one to one only while no quoted value holds a line break.
    for name, column in columns.items():
        broken = pc.match_substring_regex(column, "[\r\n]").to_numpy(zero_copy_only=False)
        if broken.any():
            raise DataFormatError("a quoted value spans several lines; each row must be on one line",
                                  path=path, line=int(lines[int(np.argmax(broken))]), field=name)
    # A blank line is read as a row of empty fields; it is not data. A line of separators
    # only (",,") is a row whose fields are empty: it stays, for the field checks to report.
    blank = np.ones(table.num_rows, dtype=bool)
    for column in columns.values():
        blank &= pc.equal(column, "").to_numpy(zero_copy_only=False)
    if blank.any():
        raw_lines = re.split("\r\n|\r|\n", text)
        blank[blank] = [not raw_lines[line - 1].strip() for line in lines[blank]]
    if blank.any():
        keep = pa.array(~blank)
        columns = {name: column.filter(keep) for name, column in columns.items()}
        lines = lines[~blank]
    return TextTable(path=path, columns=columns, lines=lines)


def first_repeat(values: np.ndarray) -> int | None:
    """Position of the first value that repeats an earlier one, or ``None`` when all differ."""
    _, first = np.unique(values, return_index=True)
    if len(first) == len(values):
        return None
    is_first = np.zeros(len(values), dtype=bool)
    is_first[first] = True
    return int(np.argmin(is_first))


def is_index_range(indices: np.ndarray) -> bool:
    """Whether 0-based ``indices`` use most of ``0 .. max``, so that ``0 .. max`` is a sensible universe.

    A stray huge id (``123456789`` among a few thousand indices) would otherwise
    create that many empty users or items.
    """
    if len(indices) == 0:
        return True
    size = int(indices.max()) + 1
    slack = 2 * len(indices) + 1000
    return size <= slack and size <= 2 * int(np.count_nonzero(np.bincount(indices, minlength=size))) + 1000


def _first_unparsable(values: pa.Array, target: pa.DataType) -> int:
    """Index of the first value that cannot be cast to ``target`` (bisection, O(n) casts in total)."""
    lo, hi = 0, len(values)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            pc.cast(values.slice(lo, mid - lo), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
        else:
            lo = mid
    return lo


def _is_text(values: pa.Array) -> bool:
    return pa.types.is_string(values.type) or pa.types.is_large_string(values.type)


def _is_number(values: pa.Array) -> bool:
    return pa.types.is_integer(values.type) or pa.types.is_floating(values.type)


def _normalised(values: pa.Array, fail: Failure, what: str) -> pa.Array:
    """Numbers as they are, anything else as whitespace-trimmed text."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if _is_number(values):
        return values
    if not _is_text(values):
        try:
            values = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise fail(0, f"a column of type {values.type} cannot hold the {what}") from None
    return pc.utf8_trim_whitespace(values)


def _missing_mask(values: pa.Array) -> np.ndarray:
    """True where a cell is null, or empty text."""
    if _is_text(values):
        return pc.fill_null(pc.equal(values, ""), True).to_numpy(zero_copy_only=False)
    return values.is_null().to_numpy(zero_copy_only=False)


def parse_ints(values: pa.Array, fail: Failure, what: str, *, non_negative: bool = False) -> np.ndarray:
    """Integers from a text (or numeric) column; a missing or non-integer value is an error at its row."""
    values = _normalised(values, fail, what)
    missing = _missing_mask(values)
    if missing.any():
        raise fail(int(np.argmax(missing)), f"{what} is missing")
    if pa.types.is_floating(values.type):
        numbers = values.to_numpy(zero_copy_only=False)
        not_integer = ~np.isfinite(numbers) | (numbers != np.floor(numbers)) | (np.abs(numbers) >= _INT64_LIMIT)
        if not_integer.any():
            row = int(np.argmax(not_integer))
            if np.isfinite(numbers[row]) and numbers[row] == np.floor(numbers[row]):
                raise fail(row, f"{what} {numbers[row]!r} is out of range (integers are 64-bit)")
            raise fail(row, f"{what} {numbers[row]!r} is not an integer")
        out = numbers.astype(np.int64)
    else:
        try:
            out = pc.cast(values, pa.int64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            row = _first_unparsable(values, pa.int64())
            text = str(values[row].as_py())
            if re.fullmatch(r"[+-]?[0-9]+", text):
                raise fail(row, f"{what} {text!r} is out of range (integers are 64-bit, at most "
                                f"{2**63 - 1:,})") from None
            raise fail(row, f"{what} {text!r} is not an integer") from None
    out = np.asarray(out, dtype=np.int64)
    if non_negative and len(out) and out.min() < 0:
        row = int(np.argmax(out < 0))
        raise fail(row, f"{what} {int(out[row])} is negative")
    return out


def parse_floats(values: pa.Array, fail: Failure, what: str, *, allow_missing: bool = False) -> np.ndarray:
    """Finite floats from a text (or numeric) column; missing cells give NaN when ``allow_missing``."""
    values = _normalised(values, fail, what)
    missing = _missing_mask(values)
    if missing.any() and not allow_missing:
        raise fail(int(np.argmax(missing)), f"{what} is missing")
    present = pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)
    try:
        out = pc.cast(present, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        row = _first_unparsable(present, pa.float64())
        raise fail(row, f"{what} {values[row].as_py()!r} is not a number") from None
    out = np.array(out, dtype=np.float64)
    invalid = ~np.isfinite(out) & ~missing
    if invalid.any():
        row = int(np.argmax(invalid))
        raise fail(row, f"{what} {values[row].as_py()!r} is not a finite number")
    return out


def parse_timestamps(values: pa.Array, fail: Failure, what: str = "timestamp", *,
                     allow_missing: bool = False) -> tuple[pd.arrays.IntegerArray, int]:
    """Integer timestamps (nullable Int64) and how many fractional values had to be floored."""
    values = _normalised(values, fail, what)
    missing = _missing_mask(values)
    if missing.any() and not allow_missing:
        raise fail(int(np.argmax(missing)), f"{what} is missing")
    present = pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)
    fractional = 0
    try:  # integers first: exact beyond float precision
        exact = pc.cast(present, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = parse_floats(values, fail, what, allow_missing=True)
        floored = np.floor(np.where(missing, 0.0, numbers))
        out_of_range = np.abs(floored) >= _INT64_LIMIT
        if out_of_range.any():
            row = int(np.argmax(out_of_range))
            raise fail(row, f"{what} {numbers[row]!r} is out of range") from None
        fractional = int(((floored != numbers) & ~missing).sum())
        exact = floored.astype(np.int64)
    return pd.arrays.IntegerArray(np.asarray(exact, dtype=np.int64), np.asarray(missing, dtype=bool)), fractional


def parse_ids(values: pa.Array, fail: Failure, what: str) -> np.ndarray:
    """Non-empty ids as strings (numeric columns are written as integers)."""
    if pa.types.is_floating(values.type):
        values = pa.array(parse_ints(values, fail, what))
    if pa.types.is_integer(values.type):
        if values.null_count:
            raise fail(int(np.argmax(values.is_null().to_numpy(zero_copy_only=False))), f"{what} is missing")
        return values.to_numpy(zero_copy_only=False).astype(str)
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not _is_text(values):
        values = _normalised(values, fail, what)
        values = values if _is_text(values) else pc.cast(values, pa.string())
    # Ids are kept exactly as written, surrounding whitespace included: "a", " a" and "a " are three
    # ids, never silently merged into one. Only an id that is empty or all whitespace is missing.
    missing = _missing_mask(pc.utf8_trim_whitespace(values))
    if missing.any():
        raise fail(int(np.argmax(missing)), f"{what} is missing")
    return values.to_numpy(zero_copy_only=False).astype(str)


def parse_splits(values: pa.Array, fail: Failure, what: str = "split") -> np.ndarray:
    """Split names from labels ``train``/``valid``/``test`` or ``0``/``1``/``2``."""
    values = _normalised(values, fail, what)
    if not _is_text(values):
        values = pc.cast(values, pa.string())
    labels = pd.Series(values.to_numpy(zero_copy_only=False), dtype=object)
    names = labels.map(SPLIT_LABELS)
    unknown = names.isna().to_numpy()
    if unknown.any():
        row = int(np.argmax(unknown))
        raise fail(row, f"{what} label {labels.iloc[row]!r} is not one of train/valid/test or 0/1/2")
    return names.to_numpy(dtype=str)


def join_texts(parts: object, sep: str = " ") -> str | None:
    """Text from a string or a list of strings (non-strings and blanks skipped); None if empty."""
    if isinstance(parts, str):
        text = parts.strip()
    elif isinstance(parts, (list, tuple)):
        text = sep.join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    else:
        return None
    return text or None

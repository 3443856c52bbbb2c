"""Amazon review dumps (McAuley lab): the 2014, 2018 and 2023 releases.

Reviews are JSON lines, gzipped or not:

* 2014 / 2018: ``reviewerID``, ``asin``, ``overall`` (rating), ``unixReviewTime`` (seconds);
* 2023: ``user_id``, ``parent_asin`` (the item), ``rating``, ``timestamp`` (milliseconds,
  converted here to seconds like every other format).

Metadata, one item per line: ``asin`` (``parent_asin`` in 2023), ``title``,
``description`` (a string, or a list of paragraphs), categories (2014: ``categories``,
a list of category paths; 2018: ``category``; 2023: ``categories``), the brand
(``brand``; ``store`` in 2023) and images (2014: ``imUrl``; 2018: ``imageURLHighRes`` /
``imageURL`` lists; 2023: ``images``, dicts with ``large`` / ``hi_res`` / ``thumb``).
The 2014 metadata is written as Python dict literals rather than JSON; lines that are
not JSON are read with :func:`ast.literal_eval`.

Items get ``title``, ``text`` (the description), ``categories`` (one flat list, in order,
without repeats), ``brand`` and ``image`` (the first URL). There is no split.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from graphrec.data.formats._parsing import GZIP_MAGIC, UTF8_BOM, join_texts, require_file
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import DataFormatError

_SUFFIXES = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class ReviewFields:
    """Field names of one release's review records."""

    release: str
    user: str
    item: str
    rating: str
    timestamp: str
    #: timestamps are divided by this to give seconds
    timestamp_divisor: int = 1


REVIEWS_2014_2018 = ReviewFields("2014/2018", "reviewerID", "asin", "overall", "unixReviewTime")
REVIEWS_2023 = ReviewFields("2023", "user_id", "parent_asin", "rating", "timestamp", timestamp_divisor=1000)


def read(src: Path, *, meta: Path | str | None = None) -> RawDataset:
    """Read a reviews file, or a directory holding one reviews file and optionally one ``meta*`` file."""
    src = Path(src)
    reviews_path, meta_path = _locate(src, None if meta is None else Path(meta))
    fields = _detect_release(reviews_path)
    interactions = _read_reviews(reviews_path, fields)
    notes: list[str] = []
    if fields.timestamp_divisor != 1:
        notes.append(f"timestamps of {reviews_path.name} converted from milliseconds to seconds")
    items = None
    if meta_path is not None:
        items = _read_metadata(meta_path, "parent_asin" if fields is REVIEWS_2023 else "asin", notes)
    return RawDataset(
        interactions=interactions, items=items,
        source={"format": "amazon", "release": fields.release, "path": str(src),
                "files": [str(reviews_path)] + ([str(meta_path)] if meta_path else [])},
        notes=notes,
    )


def _locate(src: Path, meta: Path | None) -> tuple[Path, Path | None]:
    if meta is not None:
        require_file(meta, "Amazon metadata")
    if src.is_file():
        return src, meta
    if not src.is_dir():
        raise DataFormatError("does not exist (expected an Amazon reviews file or a directory holding one)",
                              path=src)
    candidates = sorted(p for p in src.iterdir() if p.is_file() and p.name.endswith(_SUFFIXES))
    metas = [p for p in candidates if p.name.lower().startswith("meta")]
    reviews = [p for p in candidates if p not in metas]
    if len(reviews) != 1:
        found = ", ".join(p.name for p in reviews) or "none"
        raise DataFormatError(f"expected exactly one reviews file (*.json, *.jsonl, optionally gzipped, not "
                              f"starting with 'meta'), found: {found}", path=src)
    if meta is None and len(metas) > 1:
        raise DataFormatError(f"holds several metadata files ({', '.join(p.name for p in metas)}); "
                              "choose one with meta=", path=src)
    return reviews[0], meta if meta is not None else (metas[0] if metas else None)


# ----------------------------------------------------------------- JSON lines
def _open(path: Path) -> io.BufferedIOBase:
    """A binary stream of ``path``, decompressed when it is gzipped."""
    require_file(path)
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
        return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")
    except OSError as exc:
        raise DataFormatError(f"cannot be read: {exc.strerror}", path=path) from exc


def iter_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, record)`` for every non-blank line; JSON, or Python literals (2014 metadata)."""
    stream = _open(path)
    number = 0
    try:
        with stream:
            for number, raw_line in enumerate(stream, start=1):
                line = raw_line.strip()
                if number == 1:
                    line = line.removeprefix(UTF8_BOM)
                if line:
                    yield number, _parse_record(line, path, number)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"is not valid gzip data: {exc}", path=path, line=number + 1) from None
    if number == 0:
        raise DataFormatError("is empty", path=path)


def _parse_record(line: bytes, path: Path, number: int) -> dict[str, Any]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"is not valid utf-8 text (byte {line[exc.start]:#04x})", path=path,
                              line=number) from None
    try:
        record = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        try:  # the 2014 metadata is written as Python dict literals
            with warnings.catch_warnings():  # junk can make the parser warn before it fails
                warnings.simplefilter("ignore", SyntaxWarning)
                record = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataFormatError(f"invalid JSON (nor a Python dict literal): {detail}", path=path,
                                  line=number) from None
    if not isinstance(record, dict):
        raise DataFormatError(f"expected one JSON object per line, found {type(record).__name__}", path=path,
                              line=number)
    return record


# -------------------------------------------------------------------- reviews
def _detect_release(path: Path) -> ReviewFields:
    for number, record in iter_records(path):
        for fields in (REVIEWS_2014_2018, REVIEWS_2023):
            if fields.user in record and fields.item in record:
                return fields
        raise DataFormatError("is not an Amazon reviews file: the record has neither reviewerID/asin (2014, "
                              "2018) nor user_id/parent_asin (2023)", path=path, line=number)
    raise DataFormatError("has no records (only blank lines)", path=path)


def _read_reviews(path: Path, fields: ReviewFields) -> pd.DataFrame:
    """Reviews as interactions; pyarrow's JSON reader parses the usual case in C++.

    Anything it cannot take (Python literals, odd types, missing fields, bad text) is
    read line by line instead, which either parses it or reports the line and field.
    """
    frame = _read_reviews_with_arrow(path, fields)
    return frame if frame is not None else _read_reviews_by_line(path, fields)


def _read_reviews_with_arrow(path: Path, fields: ReviewFields) -> pd.DataFrame | None:
    """The reviews, or None when anything is unusual (the line-by-line reader then explains it)."""
    schema = pa.schema([(fields.user, pa.string()), (fields.item, pa.string()),
                        (fields.rating, pa.float64()), (fields.timestamp, pa.int64())])
    try:
        with _open(path) as stream:
            table = pa_json.read_json(stream, parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"))
        table.validate(full=True)  # rejects invalid UTF-8 in the id strings
        ids_present = all(_all_present(table.column(name)) for name in (fields.user, fields.item))
    except (pa.ArrowException, OSError, EOFError, zlib.error):
        return None
    ratings = table.column(fields.rating)
    if not table.num_rows or not ids_present or ratings.null_count:
        return None
    rating_values = ratings.to_numpy()
    if not np.isfinite(rating_values).all():
        return None
    timestamps = table.column(fields.timestamp).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    return interactions_frame(table.column(fields.user).to_numpy(), table.column(fields.item).to_numpy(),
                              rating_values, timestamps.array // fields.timestamp_divisor)


def _all_present(column: pa.ChunkedArray) -> bool:
    """No nulls, and no blank strings."""
    return column.null_count == 0 and not pc.any(pc.equal(pc.utf8_trim_whitespace(column), "")).as_py()


def _read_reviews_by_line(path: Path, fields: ReviewFields) -> pd.DataFrame:
    users, items, ratings, timestamps = [], [], [], []
    for number, record in iter_records(path):
        users.append(_required_id(record, fields.user, path, number))
        items.append(_required_id(record, fields.item, path, number))
        rating = record.get(fields.rating)
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not np.isfinite(rating):
            message = "is missing" if rating is None else f"{rating!r} is not a number"
            raise DataFormatError(f"rating {message}", path=path, line=number, field=fields.rating)
        ratings.append(float(rating))
        timestamp = record.get(fields.timestamp)
        if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, (int, float))
                                      or not float(timestamp).is_integer()):
            raise DataFormatError(f"timestamp {timestamp!r} is not an integer", path=path, line=number,
                                  field=fields.timestamp)
        if timestamp is not None and not -2**63 <= int(timestamp) < 2**63:
            raise DataFormatError(f"timestamp {timestamp!r} is out of range (64-bit seconds or milliseconds)",
                                  path=path, line=number, field=fields.timestamp)
        timestamps.append(None if timestamp is None else int(timestamp) // fields.timestamp_divisor)
    return interactions_frame(np.array(users, dtype=str), np.array(items, dtype=str), ratings,
                              pd.array(timestamps, dtype="Int64"))


def _required_id(record: dict[str, Any], key: str, path: Path, number: int) -> str:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        message = "is missing" if value in (None, "") else f"{value!r} is not a string"
        raise DataFormatError(f"id {message}", path=path, line=number, field=key)
    return str(value)


# ------------------------------------------------------------------- metadata
def _read_metadata(path: Path, key: str, notes: list[str]) -> pd.DataFrame:
    rows: dict[str, dict[str, Any]] = {}
    repeated = 0
    for number, record in iter_records(path):
        item = _required_id(record, key, path, number)
        if item in rows:
            repeated += 1
            continue
        rows[item] = {
            "item_id": item,
            "title": _text(record, "title", path, number),
            "text": _description(record, path, number),
            "categories": _categories(record, path, number),
            "brand": _text(record, "store" if "store" in record and "brand" not in record else "brand",
                           path, number),
            "image": _image(record, path, number),
        }
    if repeated:
        notes.append(f"{path.name}: {repeated} repeated metadata lines for items already described were skipped "
                     "(the first description of each item is kept)")
    return pd.DataFrame(list(rows.values()), columns=["item_id", "title", "text", "categories", "brand", "image"])


def _text(record: dict[str, Any], key: str, path: Path, number: int) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple, set)):
        raise DataFormatError(f"expected text, found {type(value).__name__}", path=path, line=number, field=key)
    return str(value).strip() or None


def _string_list(value: Any, key: str, path: Path, number: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DataFormatError("expected a list of strings", path=path, line=number, field=key)
    return list(value)


def _description(record: dict[str, Any], path: Path, number: int) -> str | None:
    value = record.get("description")
    return join_texts(_string_list(value, "description", path, number))


def _categories(record: dict[str, Any], path: Path, number: int) -> list[str]:
    if "categories" in record:
        value = record["categories"]
        nested = isinstance(value, list) and any(isinstance(v, list) for v in value)
        paths = value if nested else [value]  # 2014: a list of category paths
        flat = [c for p in paths for c in _string_list(p, "categories", path, number)]
    else:
        flat = _string_list(record.get("category"), "category", path, number)
    return list(dict.fromkeys(c.strip() for c in flat if c.strip()))


def _image(record: dict[str, Any], path: Path, number: int) -> str | None:
    if "images" in record:  # 2023
        images = record["images"]
        if isinstance(images, dict) and all(isinstance(v, list) for v in images.values()):
            # the Hugging Face copy stores them column-wise: {"large": [...], "thumb": [...], ...}
            images = [dict(zip(images, row, strict=True)) for row in zip(*images.values(), strict=False)]
        if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
            raise DataFormatError("expected a list of image objects", path=path, line=number, field="images")
        for image in images:
            for size in ("large", "hi_res", "thumb"):
                if isinstance(image.get(size), str) and image[size]:
                    return image[size]
        return None
    for key in ("imageURLHighRes", "imageURL"):  # 2018
        urls = _string_list(record.get(key), key, path, number)
        if urls:
            return urls[0]
    return _text(record, "imUrl", path, number)  # 2014

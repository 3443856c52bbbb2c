"""MovieLens releases from GroupLens, detected from the files in the directory.

* 100K: ``u.data`` (tab-separated ``user item rating timestamp``), ``u.item``
  (pipe-separated, latin-1, read as UTF-8 when it is valid UTF-8: ``id|title|release date|video release date|IMDb URL|``
  then one 0/1 flag per genre of ``u.genre``) and ``u.user``
  (``id|age|gender|occupation|zip``).
* 1M / 10M: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``), ``movies.dat``
  (``MovieID::Title::Genres``, genres ``|``-separated; latin-1 in 1M) and, in 1M,
  ``users.dat`` (``UserID::Gender::Age::Occupation::Zip-code``).
* CSV releases (20M, 25M, 32M, latest): ``ratings.csv`` (``userId,movieId,rating,timestamp``)
  and ``movies.csv`` (``movieId,title,genres``).

Items get ``title`` (as given), ``genres`` (list of str) and ``year`` (parsed from a
trailing "(1995)" in the title, NA when absent). MovieLens defines no split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from graphrec.data.formats._parsing import (
    TextTable,
    decode,
    first_repeat,
    parse_floats,
    parse_ids,
    parse_ints,
    parse_timestamps,
    read_bytes,
    read_delimited,
    require_content,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import DataFormatError

#: Genres of MovieLens 100K in flag order, used when ``u.genre`` is absent.
GENRES_100K: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
_NO_GENRES = "(no genres listed)"
_YEAR_PATTERN = r"\((\d{4})\)\s*$"
RATING_FIELDS = ("user", "item", "rating", "timestamp")
CSV_RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")


def read(src: Path) -> RawDataset:
    """Read a MovieLens directory (100K, 1M, 10M or a CSV release)."""
    src = Path(src)
    directory = src.parent if src.is_file() else src
    if not directory.is_dir():
        raise DataFormatError("does not exist (expected a MovieLens directory)", path=src)
    if (directory / "u.data").is_file():
        release, raw = "100k", _read_100k(directory)
    elif (directory / "ratings.dat").is_file():
        release, raw = "dat", _read_dat(directory)
    elif (directory / "ratings.csv").is_file():
        release, raw = "csv", _read_csv(directory)
    else:
        raise DataFormatError("has no MovieLens ratings file (expected u.data, ratings.dat or ratings.csv)",
                              path=directory)
    raw.source.update({"format": "movielens", "release": release, "path": str(directory)})
    return raw


# ----------------------------------------------------------------------- 100K
def _read_100k(directory: Path) -> RawDataset:
    ratings = read_delimited(directory / "u.data", sep="\t", names=RATING_FIELDS)
    files = [directory / "u.data"]
    items = users = None
    if (directory / "u.item").is_file():
        genres = _genres_100k(directory / "u.genre")
        flag_fields = [f"genre_{index}" for index in range(len(genres))]
        names = ["item", "title", "release_date", "video_release_date", "imdb_url", *flag_fields]
        table = read_delimited(directory / "u.item", sep="|", names=names, fallback="latin-1")
        flags = np.zeros((len(table), len(genres)), dtype=np.int64)
        for column, (field, genre) in enumerate(zip(flag_fields, genres, strict=True)):
            flags[:, column] = parse_ints(table[field], table.failure(field), f"flag of genre {genre!r}",
                                          non_negative=True)
        if flags.size and flags.max() > 1:
            row, column = map(int, np.argwhere(flags > 1)[0])
            raise table.failure(flag_fields[column])(row, f"flag of genre {genres[column]!r} is "
                                                          f"{int(flags[row, column])}, not 0 or 1")
        items = _items_frame(
            _canonical_ints(table, "item", "movie id"),
            _strings(table["title"]),
            _lists_from_flags(flags.astype(bool), np.array(genres, dtype=object)),
            {"release_date": _strings(table["release_date"]), "imdb_url": _strings(table["imdb_url"])},
            table, "item")
        files += [directory / "u.item"] + ([directory / "u.genre"] if (directory / "u.genre").is_file() else [])
    if (directory / "u.user").is_file():
        table = read_delimited(directory / "u.user", sep="|",
                               names=["user", "age", "gender", "occupation", "zip_code"], fallback="latin-1")
        users = pd.DataFrame({
            "user_id": _canonical_ints(table, "user", "user id"),
            "age": pd.array(parse_ints(table["age"], table.failure("age"), "age", non_negative=True), "Int64"),
            "gender": _strings(table["gender"]),
            "occupation": _strings(table["occupation"]),
            "zip_code": _strings(table["zip_code"]),
        })
        _require_unique(users["user_id"], table, "user")
        files.append(directory / "u.user")
    notes: list[str] = []
    return RawDataset(interactions=_interactions(ratings, notes=notes), items=items, users=users,
                      source={"files": [str(f) for f in files]}, notes=notes)


def _genres_100k(path: Path) -> list[str]:
    """Genre names in flag order from ``u.genre`` (``name|index``)."""
    if not path.is_file():
        return list(GENRES_100K)
    table = read_delimited(path, sep="|", names=["genre", "index"], fallback="latin-1")
    index = parse_ints(table["index"], table.failure("index"), "genre index", non_negative=True)
    if not np.array_equal(np.sort(index), np.arange(len(index))):
        raise DataFormatError(f"genre indices must be 0..{len(index) - 1}, each once", path=path, field="index")
    names = np.empty(len(index), dtype=object)
    names[index] = parse_ids(table["genre"], table.failure("genre"), "genre name")
    return names.tolist()


# ---------------------------------------------------------------- 1M and 10M
def _read_dat(directory: Path) -> RawDataset:
    ratings = read_delimited(directory / "ratings.dat", sep="::", names=RATING_FIELDS)
    files = [directory / "ratings.dat"]
    items = users = None
    notes: list[str] = []
    if (directory / "movies.dat").is_file():
        items = _movies_dat(directory / "movies.dat")
        files.append(directory / "movies.dat")
    if (directory / "users.dat").is_file():
        table = read_delimited(directory / "users.dat", sep="::",
                               names=["user", "gender", "age", "occupation", "zip_code"], fallback="latin-1")
        users = pd.DataFrame({
            "user_id": _canonical_ints(table, "user", "user id"),
            "gender": _strings(table["gender"]),
            # 1M codes age groups and occupations as integers (see its README).
            "age": pd.array(parse_ints(table["age"], table.failure("age"), "age", non_negative=True), "Int64"),
            "occupation": pd.array(parse_ints(table["occupation"], table.failure("occupation"), "occupation",
                                              non_negative=True), "Int64"),
            "zip_code": _strings(table["zip_code"]),
        })
        _require_unique(users["user_id"], table, "user")
        files.append(directory / "users.dat")
    return RawDataset(interactions=_interactions(ratings, notes=notes), items=items, users=users,
                      source={"files": [str(f) for f in files]}, notes=notes)


def _movies_dat(path: Path) -> pd.DataFrame:
    """``MovieID::Title::Genres`` lines; the title is whatever lies between the first and last ``::``."""
    data = read_bytes(path)
    require_content(data, path)
    text = decode(data, path, "utf-8", fallback="latin-1")  # 1M is latin-1
    ids, titles, genres, lines = [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        movie, first, rest = line.partition("::")
        title, second, genre_text = rest.rpartition("::")
        if not first or not second:
            raise DataFormatError("expected 3 '::'-separated fields (MovieID, Title, Genres), found "
                                  f"{line.count('::') + 1}", path=path, line=number,
                                  field="Title" if not first else "Genres")
        ids.append(movie)
        titles.append(title)
        genres.append(_split_genres(genre_text))
        lines.append(number)
    table = TextTable(path=path, columns={"movie": pa.array(ids, pa.string())}, lines=np.array(lines))
    frame = _items_frame(_canonical_ints(table, "movie", "movie id", field="MovieID"),
                         np.array(titles, dtype=object), genres, {}, table, "MovieID")
    return frame


# ------------------------------------------------------------------------ CSV
def _read_csv(directory: Path) -> RawDataset:
    path = directory / "ratings.csv"
    ratings = read_delimited(path, sep=",", quoted=True)
    _require_columns(ratings, CSV_RATING_COLUMNS)
    files = [path]
    items = None
    if (directory / "movies.csv").is_file():
        movies = read_delimited(directory / "movies.csv", sep=",", quoted=True)
        _require_columns(movies, ("movieId", "title", "genres"))
        items = _items_frame(_canonical_ints(movies, "movieId", "movie id"), _strings(movies["title"]),
                             [_split_genres(g) for g in _strings(movies["genres"])], {}, movies, "movieId")
        files.append(directory / "movies.csv")
    notes: list[str] = []
    return RawDataset(interactions=_interactions(ratings, CSV_RATING_COLUMNS, notes),
                      items=items, source={"files": [str(f) for f in files]}, notes=notes)


def _require_columns(table: TextTable, names: tuple[str, ...]) -> None:
    for name in names:
        if name not in table.columns:
            raise DataFormatError(f"the header has no {name!r} column (found: {', '.join(table.columns)})",
                                  path=table.path, line=1, field=name)


# --------------------------------------------------------------------- shared
def _interactions(table: TextTable, columns: tuple[str, str, str, str] = RATING_FIELDS,
                  notes: list[str] | None = None) -> pd.DataFrame:
    """Ratings from the ``(user, item, rating, timestamp)`` columns of ``table``; a note in ``notes``
    when fractional timestamps were rounded down."""
    user, item, rating, timestamp = columns
    timestamps, floored = parse_timestamps(table[timestamp], table.failure(timestamp))
    if floored and notes is not None:
        notes.append(f"{floored} fractional timestamps in {table.path.name} were rounded down to integers")
    return interactions_frame(
        parse_ints(table[user], table.failure(user), "user id", non_negative=True),
        parse_ints(table[item], table.failure(item), "movie id", non_negative=True),
        parse_floats(table[rating], table.failure(rating), "rating"),
        timestamps)


def _canonical_ints(table: TextTable, column: str, what: str, field: str | None = None) -> np.ndarray:
    """Integer ids written as canonical strings ("007" and "7" are the same movie)."""
    return parse_ints(table[column], table.failure(field or column), what, non_negative=True).astype(str)


def _strings(values: pa.Array) -> np.ndarray:
    """Text values; an empty field is missing (None)."""
    out = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    out[out == ""] = None
    return out


def _split_genres(text: str | None) -> list[str]:
    text = (text or "").strip()
    return [] if not text or text == _NO_GENRES else [g for g in text.split("|") if g]


def _lists_from_flags(flags: np.ndarray, names: np.ndarray) -> list[list[str]]:
    _, columns = np.nonzero(flags)
    return [chunk.tolist() for chunk in np.split(names[columns], np.cumsum(flags.sum(axis=1))[:-1])]


def _items_frame(ids: np.ndarray, titles: np.ndarray, genres: list[list[str]], extra: dict[str, np.ndarray],
                 table: TextTable, field: str) -> pd.DataFrame:
    frame = pd.DataFrame({"item_id": ids, "title": titles, "genres": pd.Series(genres, dtype=object)})
    frame["year"] = frame["title"].astype(str).str.extract(_YEAR_PATTERN, expand=False).astype("Int64")
    for name, values in extra.items():
        frame[name] = values
    _require_unique(frame["item_id"], table, field)
    return frame


def _require_unique(ids: pd.Series, table: TextTable, field: str) -> None:
    """An id listed twice in a users or movies file is an error at its second line."""
    row = first_repeat(ids.to_numpy())
    if row is not None:
        raise table.failure(field)(row, f"id {ids.iloc[row]} is listed more than once")

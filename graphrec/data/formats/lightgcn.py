"""LightGCN / NGCF text splits: one line per user, ``user item item ...``.

The files are ``train.txt``, ``test.txt`` and optionally ``valid.txt``; every line
holds a 0-based user index followed by the 0-based indices of the items that user
interacted with in that split (space-separated). A line with a user and no items
is valid: the user exists but has no interaction in that file.

When ``user_list.txt`` / ``item_list.txt`` (``org_id remap_id``) exist, the original
ids are their ``org_id`` and the universe is listed in ``remap_id`` order, so that
converting keeps every index. Otherwise the ids are the integers themselves and
the universe is ``0 .. max``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from graphrec.data.formats._parsing import (
    check_last_line,
    decode,
    first_repeat,
    is_index_range,
    read_bytes,
    require_content,
    require_file,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import DataFormatError

#: Bytes a split file may contain: digits and whitespace (ids are non-negative integers).
_ALLOWED_BYTES = np.zeros(256, dtype=bool)
_ALLOWED_BYTES[np.frombuffer(b"0123456789 \t\r\n", dtype=np.uint8)] = True
# int64 holds every 18-digit number; longer tokens are reported instead of overflowing.
_MAX_DIGITS = 18


def read(src: Path, *, validation_dir: str | None = None) -> RawDataset:
    """Read a LightGCN-style split directory.

    ``validation_dir`` (for example ``"validation"``) takes ``train.txt`` and
    ``valid.txt`` from that subdirectory of ``src`` (Gowalla ships them there);
    ``test.txt`` is always ``src/test.txt``.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataFormatError("is not a directory (expected train.txt and test.txt in it)", path=src)
    train_dir = src if validation_dir is None else src / validation_dir
    if validation_dir is not None and not train_dir.is_dir():
        raise DataFormatError(f"validation directory {validation_dir!r} is missing", path=train_dir)
    files = {"train": require_file(train_dir / "train.txt", "LightGCN training split")}
    if validation_dir is not None:
        files["valid"] = require_file(train_dir / "valid.txt", "validation split of the validation directory")
    elif (src / "valid.txt").is_file():
        files["valid"] = src / "valid.txt"
    files["test"] = require_file(src / "test.txt", "LightGCN test split")

    pair_users, pair_items, splits = [], [], []
    line_users: list[np.ndarray] = []
    notes: list[str] = []
    for split, path in files.items():
        # An evaluation split may be empty (an export of a dataset without one); training may not.
        users_of_lines, users, items = parse_user_item_lists(path, allow_empty=split != "train")
        if not len(users_of_lines):
            notes.append(f"{path.name} is empty: the dataset has no {split} interactions")
        line_users.append(users_of_lines)
        pair_users.append(users)
        pair_items.append(items)
        splits.append(np.full(len(users), split))
    user_column, user_universe = _original_ids(np.concatenate(pair_users), line_users, "user", src, files, notes)
    item_column, item_universe = _original_ids(np.concatenate(pair_items), pair_items, "item", src, files, notes)
    interactions = interactions_frame(user_column, item_column, split=np.concatenate(splits))
    return RawDataset(
        interactions=interactions,
        user_universe=user_universe,
        item_universe=item_universe,
        source={"format": "lightgcn", "path": str(src),
                "files": {split: str(path) for split, path in files.items()},
                "options": {"validation_dir": validation_dir}},
        notes=notes,
    )


def _original_ids(index: np.ndarray, per_file: list[np.ndarray], kind: str, src: Path, files: dict[str, Path],
                  notes: list[str]) -> tuple[np.ndarray, list[str]]:
    """The id of every interaction's user (item) and the universe, in index order.

    ``per_file`` holds every index each split file mentions (for users, also those
    on lines without items).
    """
    mentioned = np.concatenate(per_file)
    size = int(mentioned.max()) + 1 if len(mentioned) else 0
    listed = _id_list(src / f"{kind}_list.txt", kind, size, files)
    if listed is not None:
        notes.append(f"original {kind} ids from {kind}_list.txt ({len(listed)} {kind}s)")
        return listed[index], listed.tolist()
    if not is_index_range(mentioned):
        path = next(path for path, indices in zip(files.values(), per_file, strict=True) if len(indices)
                    and indices.max() == size - 1)
        raise DataFormatError(f"{kind} index {size - 1} is far beyond the number of {kind}s in the files; "
                              f"ids must be 0-based indices (or give {kind}_list.txt)", path=path, field=kind)
    return index, [str(i) for i in range(size)]


def parse_user_item_lists(path: Path, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines.

    Returns the user of every non-blank line, and the (user, item) pair of every
    listed item, as int64 arrays. An empty file is an error unless ``allow_empty``.
    """
    data = read_bytes(path)
    if not allow_empty:
        require_content(data, path)
    check_last_line(data, path)
    bad = ~_ALLOWED_BYTES[np.frombuffer(data, dtype=np.uint8)]
    if bad.any():
        line, field, token = _locate(data, int(np.argmax(bad)))
        raise DataFormatError(f"id {token!r} is not a non-negative integer "
                              "(expected space-separated integers: user item item ...)",
                              path=path, line=line, field=field)
    rows = [line.split() for line in data.splitlines()]
    counts = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
    tokens = list(itertools.chain.from_iterable(rows))
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    if len(tokens) and lengths.max() > _MAX_DIGITS:
        too_long = int(np.argmax(lengths > _MAX_DIGITS))
        row = int(np.searchsorted(np.cumsum(counts), too_long, side="right"))
        position = too_long - int(counts[:row].sum())
        raise DataFormatError(f"id {tokens[too_long].decode()!r} is too large", path=path,
                              line=row + 1, field=_field_name(position))
    values = np.array(tokens, dtype=np.int64) if tokens else np.zeros(0, dtype=np.int64)
    non_blank = counts > 0
    starts = (np.cumsum(counts) - counts)[non_blank]
    line_users = values[starts]
    is_item = np.ones(len(values), dtype=bool)
    is_item[starts] = False
    return line_users, np.repeat(line_users, counts[non_blank] - 1), values[is_item]


def _field_name(position: int) -> str:
    return "user" if position == 0 else f"item {position}"


def _locate(data: bytes, offset: int) -> tuple[int, str, str]:
    """Line, field name and token of the byte at ``offset`` (error path only)."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    line_end = data.find(b"\n", offset)
    line = data[line_start: len(data) if line_end < 0 else line_end]
    before = data[line_start:offset]
    position = len(before.split()) - (1 if before and not before[-1:].isspace() else 0)
    tokens = line.split()
    token = tokens[position] if position < len(tokens) else line[offset - line_start:][:1]
    return data.count(b"\n", 0, offset) + 1, _field_name(position), token.decode("utf-8", "replace")


def _id_list(path: Path, kind: str, needed: int, files: dict[str, Path]) -> np.ndarray | None:
    """Original ids in remap order from ``user_list.txt`` / ``item_list.txt``, or None when absent.

    Lines are ``org_id remap_id`` (space-separated, after an optional header); some
    releases add further columns (a Freebase id), which are not needed here.
    """
    if not path.is_file():
        return None
    lines = decode(read_bytes(path), path).splitlines()
    numbered = [(number, fields) for number, fields in enumerate(map(str.split, lines), start=1) if fields]
    if not numbered:
        raise DataFormatError("is empty", path=path)
    header = numbered[0][1]
    if len(header) >= 2 and not header[1].isdecimal():
        numbered = numbered[1:]
    field_names = ("org_id", "remap_id")
    for number, fields in numbered:
        if len(fields) < 2:
            raise DataFormatError("expected space-separated fields org_id remap_id, found "
                                  f"{len(fields)}", path=path, line=number, field="remap_id")
    original = np.array([fields[0] for _, fields in numbered], dtype=str)
    remap = np.array([fields[1] for _, fields in numbered], dtype=str)
    not_int = ~np.char.isdecimal(remap) | (np.char.str_len(remap) > _MAX_DIGITS)
    if not_int.any():
        row = int(np.argmax(not_int))
        raise DataFormatError(f"remapped {kind} id {remap[row]!r} is not a non-negative integer",
                              path=path, line=numbered[row][0], field=field_names[1])
    repeat = first_repeat(original)
    if repeat is not None:
        raise DataFormatError(f"original {kind} id {str(original[repeat])!r} is listed more than once",
                              path=path, line=numbered[repeat][0], field=field_names[0])
    index = remap.astype(np.int64)
    order = np.argsort(index, kind="stable")
    expected = np.arange(len(index))
    if not np.array_equal(index[order], expected):
        gap = int(np.flatnonzero(index[order] != expected)[0])
        raise DataFormatError(f"remapped {kind} ids must be 0..{len(index) - 1}, each once; "
                              f"{gap} is missing or repeated", path=path, field=field_names[1])
    if needed > len(index):
        split_files = ", ".join(p.name for p in files.values())
        raise DataFormatError(f"lists {len(index)} {kind}s but {split_files} use {kind} index {needed - 1}",
                              path=path, field=field_names[1])
    return original[order]

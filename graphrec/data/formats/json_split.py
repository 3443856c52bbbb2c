"""JSON splits: ``train.json``, ``val.json`` (or ``valid.json``), ``test.json``.

Each file is one object ``{user: [item, item, ...]}`` mapping a user to the items
of that split. Users and items are usually 0-based indices; ``user2id.json`` and
``item2id.json``, when present, map the original ids (reviewer ids, ASINs) to those
indices, and are inverted so that the original ids are kept and the universe is
listed in index order (converting then keeps every index). This is the layout of
the Amazon 5-core splits used by multimodal recommendation benchmarks.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np

from graphrec.data.formats._parsing import (
    decode,
    is_index_range,
    line_of_offset,
    read_bytes,
    require_content,
    require_file,
)
from graphrec.data.raw import RawDataset, interactions_frame
from graphrec.errors import DataFormatError

_VALID_NAMES = ("val.json", "valid.json")


def read(src: Path) -> RawDataset:
    """Read a directory of JSON split files (and optional id maps)."""
    src = Path(src)
    if not src.is_dir():
        raise DataFormatError("is not a directory (expected train.json and test.json in it)", path=src)
    files = {"train": require_file(src / "train.json", "training split")}
    valid = [src / name for name in _VALID_NAMES if (src / name).is_file()]
    if len(valid) > 1:
        raise DataFormatError("both val.json and valid.json exist; keep one", path=valid[1])
    if valid:
        files["valid"] = valid[0]
    files["test"] = require_file(src / "test.json", "test split")

    user_ids = _inverted_id_map(src / "user2id.json", "user")
    item_ids = _inverted_id_map(src / "item2id.json", "item")
    keys, users, items, splits = [], [], [], []
    for split, path in files.items():
        split_keys, split_users, split_items = _read_split(path, None if user_ids is None else len(user_ids),
                                                           None if item_ids is None else len(item_ids))
        keys.append(split_keys)
        users.append(split_users)
        items.append(split_items)
        splits.append(np.full(len(split_users), split))
    user_column = np.concatenate(users)
    item_column = np.concatenate(items)

    notes = []
    if user_ids is not None:
        user_universe = user_ids.tolist()
        user_column = user_ids[user_column.astype(np.int64)]
        notes.append(f"original user ids from user2id.json ({len(user_ids)} users)")
    else:
        # a user key with an empty list still names a user
        user_column, user_universe = _integer_ids(user_column, np.concatenate(keys))
        if user_universe is None:
            idle = np.setdiff1d(np.concatenate(keys), user_column)
            if len(idle):
                notes.append(f"{len(idle)} users have no items in any split file and are left out")
    if item_ids is not None:
        item_universe = item_ids.tolist()
        item_column = item_ids[item_column.astype(np.int64)]
        notes.append(f"original item ids from item2id.json ({len(item_ids)} items)")
    else:
        item_column, item_universe = _integer_ids(item_column, item_column)
    return RawDataset(
        interactions=interactions_frame(user_column, item_column, split=np.concatenate(splits)),
        user_universe=user_universe,
        item_universe=item_universe,
        source={"format": "json-split", "path": str(src),
                "files": {split: str(path) for split, path in files.items()}},
        notes=notes,
    )


def load_json_object(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a JSON object file; syntax errors and repeated keys are reported at their line."""
    data = read_bytes(path)
    require_content(data, path)
    text = decode(data, path)

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise DataFormatError(f"key {key!r} appears more than once", path=path,
                                          line=_line_of_key(text, key), field=key)
                seen.add(key)
        return obj

    try:
        obj = json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path,
                              line=exc.lineno) from None
    except RecursionError:
        raise DataFormatError("invalid JSON: nested too deeply", path=path) from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=1)
    return obj, text


def _line_of_key(text: str, key: str) -> int | None:
    offset = text.find(json.dumps(key))
    return None if offset < 0 else line_of_offset(text, offset)


def _read_split(path: Path, num_users: int | None, num_items: int | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The user keys and the (user, item) pairs of one split file, as string arrays.

    With an id map (``num_users`` / ``num_items`` given) keys and items must be indices below that size.
    """
    obj, text = load_json_object(path)
    keys = list(obj)

    def fail(position: int, message: str) -> DataFormatError:
        user = keys[position]
        return DataFormatError(message, path=path, line=_line_of_key(text, user), field=user)

    for position, value in enumerate(obj.values()):
        if not isinstance(value, list):
            raise fail(position, f"expected a list of items, found {type(value).__name__}")
    user_keys = np.array(keys, dtype=str)
    if num_users is not None and len(keys):
        is_index = np.char.isdecimal(user_keys) & (np.char.str_len(user_keys) <= 18)
        if not is_index.all():
            raise fail(int(np.argmax(~is_index)), "user key is not an index of user2id.json")
        too_large = user_keys.astype(np.int64) >= num_users
        if too_large.any():
            raise fail(int(np.argmax(too_large)), f"user index is not in user2id.json ({num_users} users)")
    lists = list(obj.values())
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = list(itertools.chain.from_iterable(lists))
    kinds = set(map(type, flat))
    if num_items is not None:
        wrong_kind = kinds - {int}
        expected = "an integer item index"
    else:
        wrong_kind = kinds - {int, str} or (kinds if len(kinds) > 1 else set())
        expected = "item ids of one type (integers or strings)"
    owner = np.repeat(np.arange(len(keys)), counts)
    if wrong_kind:
        # the first item of a kind never allowed (a float, a boolean, ...), or else of a second kind
        allowed = {int} if num_items is not None else {int, str}
        first_kind = type(flat[0])
        position = next(i for i, item in enumerate(flat)
                        if type(item) not in allowed or (num_items is None and type(item) is not first_kind))
        raise fail(int(owner[position]), f"item {json.dumps(flat[position])}: expected {expected}")
    items = np.array(flat) if flat else np.zeros(0, dtype=np.int64)
    if items.dtype.kind == "i" and len(items):
        negative = items < 0
        if negative.any():
            position = int(np.argmax(negative))
            raise fail(int(owner[position]), f"item index {int(items[position])} is negative")
        if num_items is not None and items.max() >= num_items:
            position = int(np.argmax(items >= num_items))
            raise fail(int(owner[position]),
                       f"item index {int(items[position])} is not in item2id.json ({num_items} items)")
    return user_keys, np.repeat(user_keys, counts), items.astype(str)


def _inverted_id_map(path: Path, kind: str) -> np.ndarray | None:
    """Original ids ordered by index from ``{original id: index}``, or None when absent."""
    if not path.is_file():
        return None
    obj, text = load_json_object(path)
    for key, value in obj.items():
        if type(value) is not int or value < 0:
            raise DataFormatError(f"{kind} index {value!r} of {key!r} is not a non-negative integer",
                                  path=path, line=_line_of_key(text, key), field=key)
    original = np.array(list(obj), dtype=str)
    index = np.fromiter(obj.values(), dtype=np.int64, count=len(obj))
    order = np.argsort(index, kind="stable")
    expected = np.arange(len(index))
    if not np.array_equal(index[order], expected):
        position = int(np.flatnonzero(index[order] != expected)[0])
        raise DataFormatError(f"{kind} indices must be 0..{len(index) - 1}, each once; "
                              f"index {position} is missing or repeated", path=path)
    return original[order]


def _integer_ids(ids: np.ndarray, mentioned: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """``ids`` written canonically, and universe ``0 .. max``, when every mentioned id is a 0-based index.

    Keeping the universe keeps every index through conversion; other ids are left
    as they are, with no universe.
    """
    is_index = np.char.isdecimal(mentioned) & (np.char.str_len(mentioned) <= 18)
    if len(mentioned) == 0 or not is_index.all():
        return ids, None
    indices = mentioned.astype(np.int64)
    if not is_index_range(indices):  # integer ids, but not indices
        return ids, None
    return ids.astype(np.int64).astype(str), [str(i) for i in range(int(indices.max()) + 1)]

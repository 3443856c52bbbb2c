"""Export a run's final user and item embeddings with their original ids.

The output is one directory, written to a temporary path and renamed into place::

    OUT/embeddings.json    format, model, dimension, counts, how to score (inner product)
    parquet:  OUT/users.parquet, OUT/items.parquet
              columns ``user`` / ``item`` (index), ``user_id`` / ``item_id`` (original id, string)
              and ``embedding`` (fixed-size list of float32)
    npy:      OUT/users.npy, OUT/items.npy (float32 ``[n, d]``) and OUT/user_ids.txt, OUT/item_ids.txt
              (UTF-8, one original id per line, in row order)

A user's score for an item is the inner product of their embeddings, as in the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from graphrec.data.storage import atomic_directory, write_json
from graphrec.errors import DataFormatError, GraphrecError

if TYPE_CHECKING:
    from graphrec.training.run import Run

EMBEDDING_FORMATS: tuple[str, ...] = ("parquet", "npy")
MANIFEST = "embeddings.json"


@dataclass
class Embeddings:
    """User and item embeddings with their original ids (row ``i`` = index ``i``)."""

    user_ids: np.ndarray
    users: np.ndarray
    item_ids: np.ndarray
    items: np.ndarray


def export_embeddings(run: Run, out: str | Path, format: str = "parquet", overwrite: bool = False) -> Path:
    """Write the run's final embeddings (``run.embeddings()``) to the directory ``out``; return it."""
    if format not in EMBEDDING_FORMATS:
        raise GraphrecError(f"unknown embedding format {format!r}; choose one of {', '.join(EMBEDDING_FORMATS)}")
    user_emb, item_emb = (e.float().numpy() for e in run.embeddings())
    user_ids = run.dataset.users["user_id"].astype(str).to_numpy()
    item_ids = run.dataset.items["item_id"].astype(str).to_numpy()
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite, reads=[run.path, run.dataset.path]) as tmp:
        for kind, ids, values in (("user", user_ids, user_emb), ("item", item_ids, item_emb)):
            if format == "parquet":
                _write_parquet(tmp / f"{kind}s.parquet", kind, ids, values)
            else:
                np.save(tmp / f"{kind}s.npy", values)
                write_ids(tmp / f"{kind}_ids.txt", ids, kind)
        write_json(tmp / MANIFEST, {
            "format": format, "model": run.model_config.name, "dataset": run.dataset.name,
            "run": None if run.path is None else str(Path(run.path).resolve()),
            "dim": int(item_emb.shape[1]), "num_users": len(user_ids), "num_items": len(item_ids),
            "score": "inner product of the user and item embeddings",
        })
    return out


def load_embeddings(path: str | Path) -> Embeddings:
    """Read a directory written by :func:`export_embeddings` (either format)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise DataFormatError("not an embedding export (embeddings.json is missing)", path=manifest_path)
    manifest = json.loads(manifest_path.read_text())
    fmt = manifest.get("format")
    if fmt not in EMBEDDING_FORMATS:
        raise DataFormatError(f"unknown format {fmt!r}", path=manifest_path, field="format")
    loaded = {}
    for kind in ("user", "item"):
        if fmt == "parquet":
            loaded[kind] = _read_parquet(path / f"{kind}s.parquet", kind)
        else:
            values = np.load(path / f"{kind}s.npy")
            ids = read_ids(path / f"{kind}_ids.txt")
            if len(ids) != len(values):
                raise DataFormatError(f"has {len(ids)} ids but {kind}s.npy has {len(values)} rows",
                                      path=path / f"{kind}_ids.txt")
            loaded[kind] = (ids, values)
    return Embeddings(user_ids=loaded["user"][0], users=loaded["user"][1],
                      item_ids=loaded["item"][0], items=loaded["item"][1])


def _write_parquet(path: Path, kind: str, ids: np.ndarray, values: np.ndarray) -> None:
    values = np.ascontiguousarray(values, dtype=np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
    table = pa.table({kind: pa.array(np.arange(len(ids), dtype=np.int32)),
                      f"{kind}_id": pa.array(ids.tolist(), type=pa.string()),
                      "embedding": embedding})
    pq.write_table(table, path, compression="zstd")


def _read_parquet(path: Path, kind: str) -> tuple[np.ndarray, np.ndarray]:
    table = pq.read_table(path)
    for column in (kind, f"{kind}_id", "embedding"):
        if column not in table.column_names:
            raise DataFormatError("column is missing", path=path, field=column)
    embedding = table.column("embedding").combine_chunks()
    dim = embedding.type.list_size
    values = embedding.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32)
    order = np.argsort(table.column(kind).to_numpy(), kind="stable")
    ids = np.array(table.column(f"{kind}_id").to_pylist(), dtype=object)
    return ids[order], values[order]


def write_ids(path: Path, ids: np.ndarray, kind: str) -> None:
    """Write original ids one per line (UTF-8); an id holding a line break is refused, not mangled."""
    text = "".join(f"{value}\n" for value in ids)
    if text.count("\n") != len(ids) or "\r" in text:
        row = next(row for row, value in enumerate(ids) if "\n" in value or "\r" in value)
        raise GraphrecError(f"{kind} id {ids[row]!r} (index {row}) contains a line break; "
                            f"export with format='parquet' instead")
    path.write_text(text, encoding="utf-8")


def read_ids(path: Path) -> np.ndarray:
    """Ids written by :func:`write_ids`, as an object array."""
    if not path.is_file():
        raise DataFormatError("id file is missing", path=path)
    # split("\n"), not splitlines(): the latter also breaks at characters an id may contain.
    text = path.read_text(encoding="utf-8")
    return np.array(text.split("\n")[:-1] if text else [], dtype=object)


__all__ = ["EMBEDDING_FORMATS", "Embeddings", "export_embeddings", "load_embeddings"]

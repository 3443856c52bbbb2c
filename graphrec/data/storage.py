"""Atomic writes: outputs appear whole or not at all.

A conversion, an encoding pass or a checkpoint is written to a temporary path
beside its destination and renamed into place only once it is complete, so a
crash or a bad input never leaves a half-written dataset behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from tokenize import TokenError
from typing import Any

import numpy as np

from graphrec.errors import DataFormatError, DatasetExistsError, GraphrecError


@contextlib.contextmanager
def atomic_directory(dst: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``dst`` when the block succeeds.

    On an exception the temporary directory is removed and ``dst`` is untouched.
    """
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise DatasetExistsError(f"{dst} already exists; pass --overwrite (overwrite=True) to replace it")
    with _creating(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = None
    if dst.exists():
        backup = dst.parent / f".{dst.name}.old-{os.getpid()}"
        os.replace(dst, backup)
    os.replace(tmp, dst)
    if backup is not None:
        if backup.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to ``dst`` when the block succeeds."""
    dst = Path(dst)
    with _creating(dst):
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dst.name}.tmp-", dir=dst.parent)
    os.close(fd)
    tmp = Path(name)
    # mkstemp creates the file owner-only; give the result the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)


@contextlib.contextmanager
def _creating(dst: Path) -> Iterator[None]:
    """Turn a failure to create the temporary beside ``dst`` (a read-only or missing parent, a file
    where a folder should be) into an error that names ``dst``."""
    try:
        yield
    except OSError as exc:
        raise GraphrecError(f"cannot create {dst}: {exc.strerror or exc} ({exc.filename or dst.parent})") from None


def would_replace(dst: str | Path, source: str | Path) -> bool:
    """Whether replacing ``dst`` would replace ``source``: the same path, or ``source`` inside it."""
    dst, source = Path(dst).resolve(), Path(source).resolve()
    return source == dst or dst in source.parents


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Save a NumPy array atomically."""
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def read_npy(path: str | Path, field: str | None = None) -> np.ndarray:
    """Load a ``.npy`` array (no pickles); a missing or damaged file is a DataFormatError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("required file is missing", path=path, field=field)
    try:
        return np.load(path, allow_pickle=False)
    # a damaged header fails while numpy tokenises or evaluates it
    except (ValueError, OSError, EOFError, SyntaxError, TokenError, TypeError, MemoryError) as exc:
        raise DataFormatError(f"is not a readable .npy array: {exc}", path=path, field=field) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")

"""Atomic writes, writers' locks and bounded reads: the guards every command's files go through.

A conversion, an encoding pass or a checkpoint is written to a temporary path
beside its destination and renamed into place only once it is complete, so a
crash or a bad input never leaves a half-written dataset behind.

Three more rules live here, once, for every command:

* one writer at a time: :func:`directory_lock` takes an exclusive ``fcntl`` lock on a file beside
  the directory (``.NAME.lock``, holding the owner's pid and command). The kernel releases the lock
  when its process dies, so a lock left by a killed process is stale by construction and simply
  taken over; no pid guessing is needed.
* an output never replaces what graphrec did not write (:func:`check_replaceable`: a dataset, a
  run, an embedding export, an index or a peer-format export, each known by its marker file),
  nor what the same command reads (:func:`check_not_input`).
* an input file is read only when it is a regular file, and only up to a size cap
  (:func:`read_regular_file`): a FIFO would block forever and ``/dev/zero`` never ends.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from tokenize import TokenError
from typing import Any

import numpy as np

from graphrec.errors import DataFormatError, DatasetExistsError, DirectoryLockedError, GraphrecError, StorageError

#: The file that marks each kind of directory graphrec writes; only such a directory (or an empty
#: one) may be replaced.
OUTPUT_MARKERS: dict[str, str] = {"manifest.json": "dataset", "run.json": "run", "embeddings.json": "embedding export",
                                  "index.json": "index", "graphrec-export.json": "export"}
#: Largest file :func:`read_regular_file` reads unless told otherwise.
DEFAULT_MAX_BYTES = 64 << 20


@contextlib.contextmanager
def atomic_directory(dst: str | Path, overwrite: bool = False, reads: Iterable[str | Path | None] = ()
                     ) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``dst`` when the block succeeds.

    ``dst`` is locked for the whole block (:func:`directory_lock`). It may not contain any of
    ``reads``, the inputs of the command (:func:`check_not_input`), and an existing ``dst`` is
    replaced only with ``overwrite`` and only when graphrec wrote it (:func:`check_replaceable`).
    On an exception the temporary directory is removed and ``dst`` is untouched.
    """
    dst = Path(dst)
    check_not_input(dst, reads)
    with directory_lock(dst):
        if dst.exists() and not overwrite:
            raise DatasetExistsError(f"{dst} already exists; pass --overwrite (overwrite=True) to replace it")
        check_replaceable(dst)
        with _creating(dst):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            yield tmp
            _replace_directory(tmp, dst)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.filename is not None and not str(exc.filename).startswith(str(tmp)):
                raise  # not a write of this output (a source that cannot be read, say)
            raise StorageError(f"cannot write {dst}: {describe_os_error(exc)}; "
                               f"{'it was left as it was' if dst.exists() else 'nothing was written'}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _replace_directory(tmp: Path, dst: Path) -> None:
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
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None and str(exc.filename) not in (str(tmp), str(dst)):
            raise  # not a write of this output
        raise StorageError(f"cannot write {dst}: {describe_os_error(exc)}; "
                           f"{'it was left as it was' if dst.exists() else 'nothing was written'}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _creating(dst: Path) -> Iterator[None]:
    """Turn a failure to create the temporary beside ``dst`` (a read-only or missing parent, a file
    where a folder should be) into an error that names ``dst``."""
    try:
        yield
    except OSError as exc:
        raise GraphrecError(f"cannot create {dst}: {exc.strerror or exc} ({exc.filename or dst.parent})") from None


@contextlib.contextmanager
def directory_lock(directory: str | Path) -> Iterator[None]:
    """Hold the exclusive writer's lock of ``directory`` (which need not exist yet) for the block.

    A second writer gets a :class:`~graphrec.errors.DirectoryLockedError` naming the holder at
    once, rather than waiting. The lock is a file beside the directory, so replacing the directory
    keeps it; a lock file whose process died is not locked any more and is taken over.
    """
    directory = Path(directory)
    lock_path = directory.parent / f".{directory.name}.lock"
    while True:
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise StorageError(f"cannot create {directory}: {describe_os_error(exc)} "
                               f"({exc.filename or directory.parent})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "a process that is starting"
            os.close(fd)
            raise DirectoryLockedError(f"{directory} is being written by another graphrec process ({holder}); "
                                       f"wait for it to finish, or stop it") from None
        # The previous holder removes the file on release; if it did so between our open and our
        # lock, we hold a lock on a file nobody else will open: start again on the new one.
        try:
            current = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    started = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    holder = f"pid {os.getpid()} ({' '.join(sys.argv[1:3]) or 'python'}), since {started}"
    with contextlib.suppress(OSError):  # who holds it is for the message only; a full disk must not stop here
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder}\n".encode(), 0)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)  # removed while still locked, so no one can take the old file
        os.close(fd)


#: What the errors of a failed write mean, in words.
_OS_REASONS = {errno.ENOSPC: "no space left on the device (the disk is full)",
               errno.EDQUOT: "the disk quota is exceeded",
               errno.EFBIG: "the file is larger than this file system or process allows",
               errno.EROFS: "the file system is read-only",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EISDIR: "a directory is in the way", errno.ENOTDIR: "a file is in the way of a directory",
               errno.EEXIST: "a file is in the way"}


def describe_os_error(exc: OSError) -> str:
    """One phrase for a failed file operation."""
    return _OS_REASONS.get(exc.errno or 0, exc.strerror or str(exc))


def check_replaceable(dst: str | Path) -> None:
    """Refuse to replace ``dst`` unless it is absent, an empty directory, or a directory graphrec
    wrote (one holding a file of :data:`OUTPUT_MARKERS`)."""
    dst = Path(dst)
    if not os.path.lexists(dst):
        return
    if dst.is_symlink() or not dst.is_dir():
        raise GraphrecError(f"{dst} exists and is not a directory; graphrec replaces only directories it wrote")
    if any((dst / marker).is_file() for marker in OUTPUT_MARKERS) or not any(dst.iterdir()):
        return
    raise GraphrecError(f"{dst} is not a directory graphrec wrote (it has no {', '.join(OUTPUT_MARKERS)}), so it "
                        f"is not replaced; choose another destination, or remove it yourself")


def check_not_input(dst: str | Path, reads: Iterable[str | Path | None]) -> None:
    """Refuse an output ``dst`` that is, or contains, one of the inputs ``reads``."""
    for source in reads:
        if source is not None and would_replace(dst, source):
            raise GraphrecError(f"{dst} would replace {source}, which this command reads; choose another output "
                                f"directory")


def read_regular_file(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    Opened without blocking, so a FIFO is refused instead of waiting for a writer; the size is
    checked on the open file, and the read stops at the cap even if the file grows meanwhile.
    Raises ``OSError`` (``FileNotFoundError`` for a missing file) with a message saying why.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > max_bytes:
            raise OSError(errno.EFBIG, f"{info.st_size:,} bytes, over the limit of {max_bytes:,}", str(path))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise OSError(errno.EFBIG, f"over the limit of {max_bytes:,} bytes", str(path))
        return data
    finally:
        os.close(fd)


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

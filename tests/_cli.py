"""Helpers of the tests that run the CLI as a real subprocess on damaged inputs and environments.

``graphrec(...)`` runs ``python -m graphrec``; ``tree_digest(path)`` hashes every entry under a
directory (names, kinds and bytes), so that a test can assert that a failed command left each
directory it touched exactly as it was; ``file_size_limit(n)`` is a ``preexec_fn`` that gives the
child a real file size limit (``RLIMIT_FSIZE``: writes past it fail with ``EFBIG``); and
``mounted_tmpfs`` mounts a small (or read-only) tmpfs where this process may mount one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def graphrec(*args: object, check: bool = False, timeout: float = 300, **popen: object,
             ) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run([sys.executable, "-m", "graphrec", *map(str, args)], capture_output=True, text=True,
                               timeout=timeout, **popen)  # type: ignore[call-overload]
    if check and completed.returncode != 0:
        raise AssertionError(f"graphrec {args} failed ({completed.returncode}):\n{completed.stderr}")
    return completed


def assert_clean_error(completed: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    """Exit code ``code``, ``needle`` in the messages, and no traceback."""
    output = completed.stdout + completed.stderr
    assert completed.returncode == code, output
    assert needle in completed.stderr, completed.stderr
    assert "Traceback" not in output, output


def tree_digest(root: Path) -> str:
    """A digest of every entry under ``root`` (relative names, kinds, file bytes); ``root`` itself
    absent gives the digest of nothing."""
    digest = hashlib.sha256()
    if not os.path.lexists(root):
        return digest.hexdigest()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
        elif path.is_file():
            digest.update(b"file:" + _file_digest(path))
        elif path.is_dir():
            digest.update(b"dir")
        else:
            digest.update(b"special")
    return digest.hexdigest()


def _file_digest(path: Path, whole_below: int = 64 << 20) -> bytes:
    """The file's bytes hashed; a huge (sparse) test file by its size, times and first and last MiB."""
    info = path.stat()
    if info.st_size < whole_below:
        return hashlib.sha256(path.read_bytes()).digest()
    with open(path, "rb") as handle:
        head = handle.read(1 << 20)
        handle.seek(-(1 << 20), os.SEEK_END)
        tail = handle.read()
    return hashlib.sha256(f"{info.st_size} {info.st_mtime_ns}".encode() + head + tail).digest()


def file_size_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child may write files of at most ``limit`` bytes. ``SIGXFSZ`` is ignored
    so that the write fails with ``EFBIG`` (what a full quota looks like) instead of killing it."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path`` (skips the test where this process may not mount one)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


@contextlib.contextmanager
def read_only_directory(path: Path) -> Iterator[Path]:
    """A directory this process cannot write into: a read-only tmpfs as root (who may write anywhere
    else), a directory without write permission otherwise."""
    if os.geteuid() == 0:
        with mounted_tmpfs(path, read_only=True) as mounted:
            yield mounted
        return
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)

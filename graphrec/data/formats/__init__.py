"""One reader per source format, all returning a :class:`~graphrec.data.raw.RawDataset`.

A reader is a function ``read(src: Path, **options) -> RawDataset``. It parses and
validates; it never filters, indexes or splits (that is :mod:`graphrec.data.convert`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

from graphrec.data.raw import RawDataset
from graphrec.errors import GraphrecError

#: format name -> module under graphrec.data.formats that defines ``read``.
FORMAT_MODULES: dict[str, str] = {
    "movielens": "movielens",
    "lightgcn": "lightgcn",
    "json-split": "json_split",
    "mmrec": "mmrec",
    "recbole": "recbole",
    "amazon": "amazon",
    "csv": "table",
    "parquet": "table",
    "synthetic": "synthetic",
}


def get_reader(name: str) -> Callable[..., RawDataset]:
    """Return the reader of format ``name``; unknown names get an error listing the known ones."""
    if name not in FORMAT_MODULES:
        raise GraphrecError(f"unknown format {name!r}; known formats: {', '.join(sorted(FORMAT_MODULES))}")
    module = importlib.import_module(f"graphrec.data.formats.{FORMAT_MODULES[name]}")
    if name in ("csv", "parquet"):
        return functools.partial(module.read, kind=name)
    return module.read

"""Errors that graphrec raises for bad input.

Every message names where the problem is (file, line or row, field) so that a
user can fix the input without reading graphrec's source.
"""

from __future__ import annotations

from pathlib import Path


class GraphrecError(Exception):
    """Base class of the errors graphrec raises on purpose; the CLI prints them and exits non-zero."""


class DataFormatError(GraphrecError):
    """A file does not follow its format.

    ``path``, ``line`` (1-based; or a row number for tables) and ``field`` say where.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class DatasetExistsError(GraphrecError):
    """The destination already exists and ``overwrite`` was not given."""


class ConfigError(GraphrecError, ValueError):
    """A configuration value is out of range or unknown. ``field`` names the dataclass field
    (``None`` when the problem spans several), so that a front end can name its own spelling of
    it (the CLI names its flag). A ``ValueError`` too, as for any bad argument value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)

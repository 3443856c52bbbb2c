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


class InputWarning(UserWarning):
    """An input was read, but part of it deserves a look: a last line without a line break (perhaps
    cut short), text that was not UTF-8 and was read with a fallback encoding. ``convert`` records
    these in the dataset's notes; the CLI prints them."""


class StorageError(GraphrecError):
    """An output could not be written (a full disk, a read-only file system, a file size limit);
    what was there before is left as it was."""


class DirectoryLockedError(GraphrecError):
    """Another process holds the writer's lock of a dataset or run directory."""


class RunFailedError(GraphrecError):
    """A run directory records a training that failed or was interrupted, so it holds no model to use."""


class TrainingDiverged(GraphrecError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class Interrupted(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` that says what was interrupted and what was kept, for the front end to
    print. ``resumable``: the interrupted work can be continued (a run's ``last.pt``)."""

    def __init__(self, what: str, kept: str, resumable: bool = False) -> None:
        self.what = what
        self.kept = kept
        self.resumable = resumable
        super().__init__(f"{what}; {kept}")


def check_finite_fields(config: object) -> None:
    """Raise a :class:`ConfigError` naming the first float field of the dataclass ``config`` that
    holds NaN or an infinity: comparisons with NaN are all false, so range checks let it through."""
    import dataclasses
    import math

    for item in dataclasses.fields(config):  # type: ignore[arg-type]  # a dataclass instance, by contract
        value = getattr(config, item.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ConfigError(f"must be a finite number, got {value}", field=item.name)

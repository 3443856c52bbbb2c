"""Convert any supported source into a graphrec dataset directory.

The pipeline is the same for every format::

    read (format reader) -> min-rating -> de-duplicate -> k-core -> index ids
        -> split (given | random | temporal | leave-last) -> hold out cold items -> hold out cold users
        -> write atomically

Every step that removes rows reports how many and why; the reports are printed
in the conversion summary and stored in ``manifest.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphrec.data.dataset import SPLIT_DTYPE, SPLITS, Dataset, ModalityFeatures, check_finite
from graphrec.data.filtering import (
    FilterReport,
    drop_duplicates,
    drop_repeats_across_splits,
    filter_min_rating,
    kcore,
)
from graphrec.data.formats import get_reader
from graphrec.data.raw import RawDataset
from graphrec.data.splitting import (
    PROTOCOLS,
    TEST,
    VALID,
    check_ratios,
    choose_cold_items,
    choose_cold_users,
    hold_out_items,
    hold_out_users,
    split_leave_last,
    split_random,
    split_temporal,
)
from graphrec.data.storage import atomic_directory
from graphrec.errors import (
    ConfigError,
    DataFormatError,
    DatasetExistsError,
    GraphrecError,
    InputWarning,
    check_finite_fields,
)

DEFAULT_RATIOS = (0.8, 0.1, 0.1)
#: The split protocols that take ``ratios``.
RATIO_PROTOCOLS = ("random", "temporal")


@dataclass(frozen=True)
class ConvertConfig:
    """How to turn a raw source into a dataset.

    ``split="auto"`` keeps the source's split when it has one and otherwise splits
    at random per user with ``ratios`` (``None``: :data:`DEFAULT_RATIOS`; only the random and
    temporal splits take ratios, and giving them to another split is an error rather than
    silently ignored). ``cold_items`` holds a random share of items out of training entirely
    (their training interactions move to valid and test). ``cold_users`` does the same for a
    random share of the users that have features (a non-empty attribute in the user table): per
    cold user, half of their interactions validate and the rest test (see
    :func:`~graphrec.data.splitting.hold_out_users`). Filters run before either hold-out, on all
    interactions, so a k-core counts a cold user's held-out interactions and never drops a user
    for being cold. ``dedupe=False`` keeps repeated pairs within a split; a pair is never in two
    splits either way.
    """

    min_rating: float | None = None
    dedupe: bool = True
    kcore: int = 0
    split: str = "auto"
    ratios: tuple[float, float, float] | None = None
    seed: int = 2020
    cold_items: float = 0.0
    cold_users: float = 0.0
    name: str | None = None

    def __post_init__(self) -> None:
        check_finite_fields(self)
        if self.split not in (*PROTOCOLS, "auto"):
            raise ConfigError(f"unknown split {self.split!r}; choose one of auto, {', '.join(PROTOCOLS)}",
                              field="split")
        if self.ratios is not None:
            check_ratios(self.ratios)
        if not 0.0 <= self.cold_users < 1.0:
            raise ConfigError(f"must be in [0, 1), got {self.cold_users}", field="cold_users")
        if self.kcore < 0:
            raise ConfigError(f"must be >= 0, got {self.kcore}", field="kcore")
        if self.name is not None and (not self.name.strip() or any(c in self.name for c in "/\\\0")):
            raise ConfigError(f"{self.name!r} must be a plain name: not empty, no '/' or '\\' "
                              f"(exports use it as a file name)", field="name")


@dataclass
class ConversionResult:
    dataset: Dataset
    reports: list[FilterReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary_text(self) -> str:
        return format_summary(self.dataset, self.reports, self.notes)


def convert(format: str, src: str | Path, dst: str | Path, config: ConvertConfig = ConvertConfig(),
            overwrite: bool = False, reader_options: dict[str, Any] | None = None,
            log: Callable[[str], None] | None = None) -> ConversionResult:
    """Read ``src`` in ``format``, filter, index and split it, and write the dataset to ``dst``.

    ``dst`` appears only when the whole conversion succeeded; an existing ``dst`` is
    replaced only with ``overwrite=True``.
    """
    reader = get_reader(format)
    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise DatasetExistsError(f"{dst} already exists; pass --overwrite (overwrite=True) to replace it")
    if format != "synthetic" and not Path(src).exists():
        raise DataFormatError("source not found", path=src)
    options = dict(reader_options or {})
    parameters = inspect.signature(reader).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        accepted = [name for name, p in parameters.items()
                    if p.kind is inspect.Parameter.KEYWORD_ONLY or (name not in ("src", "workdir") and
                                                                     p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise GraphrecError(f"format {format!r} does not take option(s) {', '.join(unknown)}; "
                                f"it takes: {', '.join(a for a in accepted if a != 'workdir') or 'none'}")
    with atomic_directory(dst, overwrite=overwrite, reads=[src] if format != "synthetic" else []) as workdir:
        if "workdir" in parameters:
            options["workdir"] = workdir
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputWarning)
            raw = reader(Path(src) if format != "synthetic" else src, **options)
        for warning in caught:  # the reader's remarks on its input go into the summary and the manifest
            if issubclass(warning.category, InputWarning):
                raw.notes.append(str(warning.message))
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        options.pop("workdir", None)
        result = build_dataset(raw, config, name=config.name or (dst.name if format != "synthetic" else "synthetic"),
                               provenance={"format": format, "source": str(Path(src).resolve())
                                           if format != "synthetic" else "generated",
                                           "reader_options": {k: _plain(v) for k, v in options.items()},
                                           "reader": raw.source})
        result.dataset.write_into(workdir)
    result.dataset.path = dst
    if log is not None:
        log(result.summary_text())
    return result


def reader_option_values(format: str, options: Mapping[str, str]) -> dict[str, Any]:
    """Reader options given as text (the CLI's ``-o KEY=VALUE``), typed like the reader's defaults:
    ``users=500`` becomes an int for a reader whose ``users`` defaults to an int, while ``name=007``
    and ``sep=1`` stay text. Unknown keys stay text, for :func:`convert` to report."""
    parameters = inspect.signature(get_reader(format)).parameters
    typed: dict[str, Any] = {}
    for key, text in options.items():
        default = parameters[key].default if key in parameters else None
        if isinstance(default, bool):
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise GraphrecError(f"option {key} of format {format!r} is true or false, got {text!r}")
            typed[key] = text.lower() in ("true", "1", "yes")
        elif isinstance(default, (int, float)):
            kind = type(default)
            try:
                typed[key] = kind(text)
            except ValueError:
                wanted = "an integer" if kind is int else "a number"
                raise GraphrecError(f"option {key} of format {format!r} takes {wanted}, got {text!r}") from None
        else:
            typed[key] = text
    return typed


def build_dataset(raw: RawDataset, config: ConvertConfig = ConvertConfig(), name: str = "dataset",
                  provenance: dict[str, Any] | None = None) -> ConversionResult:
    """Apply the filters, indexing and split of ``config`` to a parsed source, in memory."""
    frame = raw.interactions
    if frame.empty:
        raise GraphrecError("the source has no interactions (empty input)")
    reports: list[FilterReport] = []
    notes = list(raw.notes)
    if config.min_rating is not None:
        frame, report = filter_min_rating(frame, config.min_rating)
        reports.append(report)
    if config.dedupe:
        frame, dedupe_reports = drop_duplicates(frame)
        reports.extend(dedupe_reports)
    if config.kcore > 1:
        frame, report = kcore(frame, config.kcore)
        reports.append(report)
    if frame.empty:
        raise GraphrecError("no interactions are left after filtering: " + "; ".join(r.describe() for r in reports))

    filtered = config.min_rating is not None or config.kcore > 1
    user_ids = _index_order(frame["user_id"], None if filtered else raw.user_universe)
    item_ids = _index_order(frame["item_id"], None if filtered else raw.item_universe)
    if filtered:
        for kind, universe, kept in (("users", raw.user_universe, user_ids), ("items", raw.item_universe, item_ids)):
            if universe is not None and len(set(universe) - set(kept)):
                notes.append(f"{len(set(universe) - set(kept)):,} {kind} of the source have no interactions left "
                             f"after filtering and are not in the dataset")
    users = pd.Index(user_ids).get_indexer(pd.Index(frame["user_id"])).astype(np.int32)
    items = pd.Index(item_ids).get_indexer(pd.Index(frame["item_id"])).astype(np.int32)

    rng = np.random.default_rng(config.seed)
    protocol = config.split if config.split != "auto" else ("given" if raw.has_split else "random")
    if config.ratios is not None and protocol not in RATIO_PROTOCOLS:
        raise GraphrecError(f"--ratios applies to --split random or temporal, but this conversion uses the "
                            f"{protocol} split" + (" (the source's own; pass --split random to re-split it)"
                                                   if config.split == "auto" else ""))
    ratios = config.ratios or DEFAULT_RATIOS
    codes = _split_codes(frame, users, protocol, ratios, rng)
    if protocol == "given":
        notes.extend(raw.split_notes)
    else:
        items_frame = None if raw.items is None else raw.items.drop(columns=list(raw.split_item_columns),
                                                                    errors="ignore")
        raw = dataclasses.replace(raw, items=items_frame)
    cold = choose_cold_items(len(item_ids), config.cold_items, rng)
    if len(cold):
        in_time_order = protocol in ("temporal", "leave-last")
        codes = hold_out_items(items, codes, cold, rng,
                               timestamps=frame["timestamp"].to_numpy(np.int64) if in_time_order else None)
        notes.append(f"{len(cold):,} cold items ({config.cold_items:.0%}) held out of training: "
                     f"their interactions are in valid and test only")
        if in_time_order:
            notes.append(f"--split {protocol} with --cold-items: a cold item's former training interactions "
                         f"(the earlier half to valid, the later half to test) predate the time cut")
    users_table, unmatched_users = _align_table(raw.users, "user_id", user_ids)
    cold_users = np.empty(0, dtype=np.int64)
    eligible_users = 0
    if config.cold_users > 0:
        codes, cold_users, eligible_users = _hold_out_cold_users(users, codes, users_table, config, protocol,
                                                                 frame, rng, notes)
    keep, repeat_report = drop_repeats_across_splits(users, items, codes)
    if repeat_report is not None:
        reports.append(repeat_report)
        frame, users, items, codes = frame[keep].reset_index(drop=True), users[keep], items[keep], codes[keep]
    if not config.dedupe:
        repeats = int(pd.Series(users.astype(np.int64) * len(item_ids) + items).duplicated().sum())
        if repeats:
            notes.append(f"{repeats:,} repeated (user, item) interactions kept within their split (--no-dedupe)")
    item_has_train = np.zeros(len(item_ids), dtype=bool)
    item_has_train[items[codes == 0]] = True
    has_train = np.zeros(len(user_ids), dtype=bool)
    has_train[users[codes == 0]] = True
    if (~has_train).any():
        notes.append(f"{int((~has_train).sum()):,} users have no training interactions")

    interactions = pd.DataFrame({
        "user": users, "item": items,
        "rating": frame["rating"].to_numpy(np.float32),
        "timestamp": frame["timestamp"].astype("Int64").to_numpy(),
        "split": pd.Categorical.from_codes(codes, dtype=SPLIT_DTYPE),
    })
    interactions["timestamp"] = interactions["timestamp"].astype("Int64")
    items_table, unmatched_items = _align_table(raw.items, "item_id", item_ids)
    if unmatched_items:
        notes.append(f"{unmatched_items:,} items in the metadata have no interactions and are not in the dataset")
    if unmatched_users:
        notes.append(f"{unmatched_users:,} users in the user table have no interactions and are not in the dataset")
    features = {modality: _align_features(modality, ids, matrix, encoder, item_ids)
                for modality, (ids, matrix, encoder) in raw.features.items()}
    manifest = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "graphrec_version": _version(),
        "provenance": provenance or {"reader": raw.source},
        "split": {"protocol": protocol, "ratios": list(ratios) if protocol in RATIO_PROTOCOLS else None,
                  "seed": config.seed, "cold_items": len(cold), "cold_fraction": config.cold_items,
                  "items_without_training": int((~item_has_train).sum()),
                  "cold_users": len(cold_users), "cold_user_fraction": config.cold_users,
                  "cold_user_eligible": eligible_users,
                  "users_without_training": int((~has_train).sum())},
        "filters": [r.to_dict() for r in reports],
        "config": asdict(config),
        "notes": notes,
    }
    dataset = Dataset(name=name, interactions=interactions, items=items_table, users=users_table,
                      features=features, manifest=manifest)
    return ConversionResult(dataset, reports, notes)


def format_summary(dataset: Dataset, reports: list[FilterReport] | None = None, notes: list[str] | None = None) -> str:
    """The human-readable summary printed after a conversion; by default (``graphrec info``) with
    the filter reports and notes its manifest recorded."""
    if reports is None:
        reports = [FilterReport(**entry) for entry in dataset.manifest.get("filters", [])]
    if notes is None:
        notes = list(dataset.manifest.get("notes", []))
    counts = dataset.split_counts()
    info = dataset.summary()
    lines = [
        f"dataset {dataset.name!r}" + (f" at {dataset.path}" if dataset.path else ""),
        f"  users        {dataset.num_users:>12,}",
        f"  items        {dataset.num_items:>12,}",
        f"  interactions {dataset.num_interactions:>12,}   density {info['density']:.5f}",
    ]
    lines += [f"    {split:<10} {counts[split]:>12,}" for split in SPLITS]
    lines.append(f"  split        {dataset.manifest.get('split', {}).get('protocol', 'not recorded')}")
    if dataset.modalities:
        lines.append("  modalities   " + ", ".join(f"{m} ({dataset.features[m].dim}-d, "
                                                   f"{dataset.features[m].num_missing} missing)"
                                                   for m in dataset.modalities))
    metadata = info["item_metadata"]
    if metadata:
        lines.append("  item fields  " + ", ".join(metadata))
    removed = [r for r in reports if r.removed_interactions]
    lines.append("  filtered     " + ("nothing" if not removed else ""))
    lines += [f"    - {r.describe()}" for r in removed]
    lines += [f"  note: {note}" for note in notes]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- helpers

def _index_order(ids: pd.Series, universe: list[str] | None) -> list[str]:
    """Universe ids first, in their order; then other ids in natural order (numeric when all are integers)."""
    present = pd.unique(ids.to_numpy())
    if universe is not None:
        known = set(universe)
        extra = [i for i in present if i not in known]
        return list(universe) + _natural_sort(extra)
    return _natural_sort(list(present))


def _natural_sort(ids: list[str]) -> list[str]:
    if not ids:
        return []
    as_series = pd.Series(ids, dtype=object)
    numeric = pd.to_numeric(as_series, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        return [ids[i] for i in np.argsort(numeric.to_numpy(), kind="stable")]
    return sorted(ids)


def _split_codes(frame: pd.DataFrame, users: np.ndarray, protocol: str, ratios: tuple[float, float, float],
                 rng: np.random.Generator) -> np.ndarray:
    if protocol == "given":
        if "split" not in frame.columns:
            raise GraphrecError("--split given needs a source that defines a split (this one does not); "
                                "use random, temporal or leave-last")
        return frame["split"].map({s: i for i, s in enumerate(SPLITS)}).to_numpy(np.int8)
    if protocol == "random":
        return split_random(users, ratios, rng)
    timestamps = frame["timestamp"]
    if timestamps.isna().any():
        raise GraphrecError(f"--split {protocol} needs a timestamp on every interaction; "
                            f"{int(timestamps.isna().sum()):,} have none")
    values = timestamps.to_numpy(np.int64)
    return split_temporal(values, ratios) if protocol == "temporal" else split_leave_last(users, values)


def _hold_out_cold_users(users: np.ndarray, codes: np.ndarray, users_table: pd.DataFrame, config: ConvertConfig,
                         protocol: str, frame: pd.DataFrame, rng: np.random.Generator,
                         notes: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Hold a share of the users with features out of training; returns the new split codes, the
    cold users and how many users were eligible, and says what moved in ``notes``. A reader gives
    users their attributes only (user modalities come later, from ``graphrec encode``), so the
    attributes decide who has features."""
    attributes = users_table.drop(columns=["user_id"])
    if attributes.empty or attributes.columns.empty:
        raise ConfigError("needs user features, and this source has no user attributes (no user table, or one "
                          "with only ids); cold users are recommended from their features", field="cold_users")
    filled = attributes.notna() & (attributes.astype(str).apply(lambda column: column.str.strip()) != "")
    eligible = np.flatnonzero(filled.any(axis=1).to_numpy()).astype(np.int64)
    if len(eligible) == 0:
        raise ConfigError(f"needs user features, and none of the {len(users_table):,} users has a non-empty "
                          f"attribute ({', '.join(attributes.columns)})", field="cold_users")
    cold = choose_cold_users(eligible, config.cold_users, rng)
    if len(cold) == 0:
        raise ConfigError(f"{config.cold_users} of the {len(eligible):,} users with features rounds to no user",
                          field="cold_users")
    if len(cold) == len(users_table):
        raise ConfigError(f"{config.cold_users} of the {len(eligible):,} users with features makes every user cold, "
                          f"leaving nothing to train on", field="cold_users")
    in_time_order = protocol in ("temporal", "leave-last")
    before = codes
    codes = hold_out_users(users, codes, cold, rng,
                           timestamps=frame["timestamp"].to_numpy(np.int64) if in_time_order else None)
    moved = codes[before != codes]
    notes.append(f"{len(cold):,} cold users ({config.cold_users:.0%} of the {len(eligible):,} users with a non-empty "
                 f"attribute) held out of training: their {len(moved):,} training interactions moved to valid "
                 f"({int((moved == VALID).sum()):,}) and test ({int((moved == TEST).sum()):,}): per user, "
                 + ("the earlier half (rounded down) to valid, the later to test" if in_time_order
                    else "half (rounded down, at random) to valid, the rest to test"))
    if config.kcore > 1 or config.min_rating is not None:
        notes.append("filters ran before the cold users were chosen, on all their interactions: no user was "
                     "dropped for having no training interactions")
    return codes, cold, len(eligible)


def _align_table(table: pd.DataFrame | None, id_column: str, ids: list[str]) -> tuple[pd.DataFrame, int]:
    """Reorder a metadata table to index order; rows for ids without metadata stay empty."""
    index = pd.DataFrame({id_column: ids})
    if table is None or table.empty:
        return index, 0
    table = table.drop_duplicates(subset=[id_column], keep="first").copy()
    table[id_column] = table[id_column].astype(str)
    aligned = index.merge(table, on=id_column, how="left")
    unmatched = int((~table[id_column].isin(set(ids))).sum())
    return aligned, unmatched


def _align_features(modality: str, ids: list[str], matrix: np.ndarray, encoder: dict[str, Any],
                    item_ids: list[str]) -> ModalityFeatures:
    source = encoder.get("source", f"{modality} features")
    matrix = np.asarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids):
        raise DataFormatError(f"feature matrix has shape {matrix.shape} but {len(ids)} item ids", path=source,
                              field=modality)
    check_finite(matrix, source)
    rows = pd.Index(ids).get_indexer(pd.Index(item_ids))
    mask = rows >= 0
    values = np.zeros((len(item_ids), matrix.shape[1]), dtype=np.float32)
    values[mask] = matrix[rows[mask]]
    return ModalityFeatures(modality, values, mask, dict(encoder))


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _version() -> str:
    from graphrec import __version__
    return __version__

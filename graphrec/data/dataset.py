"""The typed, on-disk dataset that every graphrec step reads.

A dataset is one directory (see ``datasets/README.md`` for the reference)::

    DST/
      manifest.json          schema version, counts, provenance, split protocol, filters, modalities
      interactions.parquet   user, item (0-based indices), rating, timestamp, split
      items.parquet          item, item_id (original id) and metadata: title, text, genres, ...
      users.parquet          user, user_id (original id) and optional attributes
      features/NAME.npy      one float32 matrix per item modality, one row per item
      features/NAME.mask.npy which items have that modality (bool)
      features/user/NAME.npy one float32 matrix per user modality, one row per user (and its .mask.npy)
      images/, audio/, video/ media files referenced by items.parquet (synthetic data)

Parquet keeps a million interactions loadable in a few tens of milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from graphrec.data.storage import atomic_directory, read_npy, write_json
from graphrec.errors import DataFormatError

SCHEMA_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "valid", "test")
SPLIT_DTYPE = pd.CategoricalDtype(categories=list(SPLITS), ordered=True)
#: What a modality describes: items (the default) or users.
SIDES: tuple[str, ...] = ("item", "user")


@dataclass(frozen=True)
class ModalityFeatures:
    """One modality's feature matrix, aligned with the dataset's item indices.

    ``mask[i]`` is False when item ``i`` lacks this modality (its row is then zeros).
    ``encoder`` describes how the features were made (model, weights, dimension, hash).
    """

    name: str
    values: np.ndarray
    mask: np.ndarray
    encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(f"modality {self.name!r}: features must be 2-D, got shape {self.values.shape}")
        if self.mask.shape != (self.values.shape[0],):
            raise ValueError(f"modality {self.name!r}: mask has shape {self.mask.shape}, "
                             f"expected ({self.values.shape[0]},)")

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    @property
    def num_missing(self) -> int:
        return int((~self.mask).sum())


@dataclass(frozen=True)
class ImageLocation:
    """A row's media file (an item's image, audio clip or video, a user's avatar): ``absolute`` when
    the dataset names it by an absolute path, and ``problem`` when it may not be read."""

    path: Path
    absolute: bool = False
    problem: str | None = None


@dataclass
class Dataset:
    """Interactions, item and user tables, and modality features of one dataset.

    ``interactions`` has columns ``user`` and ``item`` (int32 indices), ``rating``
    (float32, NaN when the source has none), ``timestamp`` (nullable Int64) and
    ``split`` (categorical: train / valid / test). ``items`` and ``users`` are
    indexed by position: row ``i`` describes item (user) index ``i``, and their
    ``item_id`` / ``user_id`` columns hold the original ids as strings.
    ``features`` are the item modalities (one row per item) and ``user_features`` the user
    modalities (one row per user, for example an encoded self-description).
    """

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    features: dict[str, ModalityFeatures] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    user_features: dict[str, ModalityFeatures] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- shape
    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        return len(self.interactions)

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    @property
    def user_modalities(self) -> list[str]:
        return list(self.user_features)

    def split_counts(self) -> dict[str, int]:
        counts = self.interactions["split"].value_counts()
        return {name: int(counts.get(name, 0)) for name in SPLITS}

    # ---------------------------------------------------------------- access
    def pairs(self, splits: str | Sequence[str] = "train") -> tuple[np.ndarray, np.ndarray]:
        """Return ``(users, items)`` as int64 arrays for one split or several."""
        names = [splits] if isinstance(splits, str) else list(splits)
        unknown = set(names) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {SPLITS}")
        mask = self.interactions["split"].isin(names).to_numpy()
        return (self.interactions["user"].to_numpy()[mask].astype(np.int64),
                self.interactions["item"].to_numpy()[mask].astype(np.int64))

    def csr(self, splits: str | Sequence[str] = "train") -> sp.csr_matrix:
        """Binary user x item matrix of the given split(s), duplicates collapsed."""
        users, items = self.pairs(splits)
        matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                               shape=(self.num_users, self.num_items))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0
        return matrix

    def image_paths(self) -> list[Path | None]:
        """The path (or None) of each item's image: see :meth:`image_locations`; a relative path that
        leads outside the dataset's folder is None here."""
        return [None if location is None or location.problem else location.path
                for location in self.image_locations()]

    def image_locations(self) -> list[ImageLocation | None]:
        """Where each item's image is: :meth:`file_locations` of the items' ``image`` column."""
        return self.file_locations("image")

    def file_locations(self, column: str, side: str = "item") -> list[ImageLocation | None]:
        """Where each item's (``side="user"``: user's) media file named in ``column`` is (None: no
        local file). A relative path is resolved inside the dataset's folder, and one that leads
        outside it (``../``, or a link out) is refused, with the reason in ``problem``; an absolute
        path is allowed, as documented, and flagged ``absolute``."""
        table = self._side_table(side)
        if column not in table.columns:
            return [None] * len(table)
        root = (self.path if self.path is not None else Path(".")).resolve()
        out: list[ImageLocation | None] = []
        for value in table[column].tolist():
            if not isinstance(value, str) or not value or value.startswith(("http://", "https://")):
                out.append(None)
                continue
            candidate = Path(value)
            if candidate.is_absolute():
                out.append(ImageLocation(candidate, absolute=True))
            elif not (root / candidate).resolve().is_relative_to(root):
                out.append(ImageLocation(root / candidate, problem=f"is outside the dataset folder {root} "
                                                                   f"(a relative path may not leave it); refused"))
            else:
                out.append(ImageLocation(root / candidate))
        return out

    def _side_table(self, side: str) -> pd.DataFrame:
        if side not in SIDES:
            raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
        return self.items if side == "item" else self.users

    def with_features(self, features: ModalityFeatures, side: str = "item") -> Dataset:
        """Return a copy of this dataset with ``features`` added (or replaced) as an item modality
        (``side="user"``: a user modality)."""
        self._side_table(side)
        if side == "user":
            return replace(self, user_features={**self.user_features, features.name: features})
        return replace(self, features={**self.features, features.name: features})

    def summary(self) -> dict[str, Any]:
        """Counts, density and modalities as one JSON-serialisable object."""
        n = self.num_interactions
        cells = max(self.num_users * self.num_items, 1)
        return {
            "name": self.name,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_interactions": n,
            "splits": self.split_counts(),
            "density": n / cells,
            "modalities": self.modalities,
            "user_modalities": self.user_modalities,
            "item_metadata": [c for c in self.items.columns if c not in ("item", "item_id")],
            "split_protocol": self.manifest.get("split", {}),
            "filters": self.manifest.get("filters", []),
        }

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check the invariants every later step relies on; raise ValueError naming the field."""
        inter = self.interactions
        for column in ("user", "item", "split"):
            if column not in inter.columns:
                raise ValueError(f"dataset {self.name!r}: interactions lack column {column!r}")
        if len(inter):
            users = inter["user"].to_numpy()
            items = inter["item"].to_numpy()
            if users.min() < 0 or users.max() >= self.num_users:
                raise ValueError(f"dataset {self.name!r}: interaction field 'user' out of range "
                                 f"[0, {self.num_users})")
            if items.min() < 0 or items.max() >= self.num_items:
                raise ValueError(f"dataset {self.name!r}: interaction field 'item' out of range "
                                 f"[0, {self.num_items})")
            if inter["split"].isna().any():
                raise ValueError(f"dataset {self.name!r}: interaction field 'split' has missing values")
        for feature in self.features.values():
            if feature.values.shape[0] != self.num_items:
                raise ValueError(f"dataset {self.name!r}: modality {feature.name!r} has "
                                 f"{feature.values.shape[0]} rows but the dataset has {self.num_items} items")
        for feature in self.user_features.values():
            if feature.values.shape[0] != self.num_users:
                raise ValueError(f"dataset {self.name!r}: user modality {feature.name!r} has "
                                 f"{feature.values.shape[0]} rows but the dataset has {self.num_users} users")

    # -------------------------------------------------------------- on disk
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the dataset directory atomically and return its path."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as tmp:
            self.write_into(tmp)
        self.path = path
        return path

    def write_into(self, directory: Path) -> None:
        """Write all files into an existing (temporary) directory."""
        inter = self.interactions
        table = pa.table({
            "user": pa.array(inter["user"].to_numpy(np.int32)),
            "item": pa.array(inter["item"].to_numpy(np.int32)),
            "rating": pa.array(inter["rating"].to_numpy(np.float32) if "rating" in inter
                               else np.full(len(inter), np.nan, np.float32)),
            "timestamp": pa.array(inter["timestamp"] if "timestamp" in inter
                                  else pd.array([None] * len(inter), dtype="Int64"), type=pa.int64()),
            "split": pa.DictionaryArray.from_arrays(
                pa.array(inter["split"].astype(SPLIT_DTYPE).cat.codes.to_numpy(np.int8)),
                pa.array(list(SPLITS))),
        })
        pq.write_table(table, directory / "interactions.parquet", compression="zstd")
        pq.write_table(pa.Table.from_pandas(_with_index_column(self.items, "item"), preserve_index=False),
                       directory / "items.parquet", compression="zstd")
        pq.write_table(pa.Table.from_pandas(_with_index_column(self.users, "user"), preserve_index=False),
                       directory / "users.parquet", compression="zstd")
        modalities = _write_features(directory, "features", self.features)
        user_modalities = _write_features(directory, "features/user", self.user_features)
        manifest = dict(self.manifest)
        manifest.update({
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "counts": {"users": self.num_users, "items": self.num_items,
                       "interactions": self.num_interactions, "splits": self.split_counts()},
            "modalities": modalities,
        })
        manifest.pop("user_modalities", None)
        if user_modalities:
            manifest["user_modalities"] = user_modalities
        write_json(directory / "manifest.json", manifest)
        self.manifest = manifest

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a dataset directory written by :meth:`save` (or ``graphrec convert``)."""
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise DataFormatError("not a graphrec dataset (manifest.json is missing)", path=manifest_path)
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"invalid JSON: {exc.msg}", path=manifest_path, line=exc.lineno) from exc
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise DataFormatError(f"schema version {version!r} is not supported (expected {SCHEMA_VERSION})",
                                  path=manifest_path, field="schema_version")
        table = _read_parquet(path / "interactions.parquet", required=("user", "item", "rating", "timestamp", "split"))
        split_column = table.column("split").combine_chunks()
        if not pa.types.is_dictionary(split_column.type) or split_column.dictionary.to_pylist() != list(SPLITS):
            raise DataFormatError(f"must be a dictionary column of {', '.join(SPLITS)}",
                                  path=path / "interactions.parquet", field="split")
        inter = pd.DataFrame({
            "user": table.column("user").to_numpy(),
            "item": table.column("item").to_numpy(),
            "rating": table.column("rating").to_numpy(),
            "timestamp": table.column("timestamp").to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get),
            "split": pd.Categorical.from_codes(split_column.indices.to_numpy(zero_copy_only=False)
                                               .astype(np.int8),
                                               dtype=SPLIT_DTYPE),
        })
        items = _read_parquet(path / "items.parquet").to_pandas()
        users = _read_parquet(path / "users.parquet").to_pandas()
        features = _read_features(path, manifest.get("modalities", {}), items, "item")
        user_features = _read_features(path, manifest.get("user_modalities", {}), users, "user")
        try:
            dataset = cls(name=manifest.get("name", path.name), interactions=inter, items=items, users=users,
                          features=features, manifest=manifest, path=path,
                          user_features=user_features)
        except ValueError as exc:
            raise DataFormatError(f"the data files are inconsistent: {exc}", path=path) from None
        counts = manifest.get("counts", {})
        if counts and (counts.get("interactions") != dataset.num_interactions
                       or counts.get("users") != dataset.num_users or counts.get("items") != dataset.num_items):
            raise DataFormatError("counts in manifest.json do not match the data files", path=manifest_path,
                                  field="counts")
        return dataset


def load_dataset(path: str | Path) -> Dataset:
    """Load a graphrec dataset directory."""
    return Dataset.load(path)


def _write_features(directory: Path, folder: str, features: dict[str, ModalityFeatures]) -> dict[str, Any]:
    """Write each modality's values and mask under ``directory / folder``; their manifest entries."""
    entries = {}
    if features:
        (directory / folder).mkdir(parents=True, exist_ok=True)
    for name, feature in features.items():
        values_file, mask_file = f"{folder}/{name}.npy", f"{folder}/{name}.mask.npy"
        check_finite(feature.values, values_file)
        np.save(directory / values_file, feature.values.astype(np.float32))
        np.save(directory / mask_file, feature.mask.astype(bool))
        entries[name] = {"file": values_file, "mask": mask_file, "dim": feature.dim,
                         "missing": feature.num_missing, "encoder": feature.encoder}
    return entries


def _read_features(path: Path, specs: dict[str, Any], table: pd.DataFrame, side: str) -> dict[str, ModalityFeatures]:
    """The modalities the manifest lists for one side, each checked against that side's table."""
    features = {}
    rows, ids = f"{side}s", f"{side}_id"
    for name, spec in specs.items():
        values = read_npy(path / spec["file"], name)
        mask = read_npy(path / spec["mask"], name)
        if values.ndim != 2 or values.shape[0] != len(table):
            raise DataFormatError(f"has shape {values.shape} but the dataset has {len(table)} {rows} (expected "
                                  f"one row per {side})", path=path / spec["file"], field=name)
        if mask.shape != (len(table),) or mask.dtype != bool:
            raise DataFormatError(f"has shape {mask.shape} and dtype {mask.dtype}; expected bool "
                                  f"({len(table)},), one flag per {side}", path=path / spec["mask"], field=name)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            check_finite(values, path / spec["file"], name,
                         table[ids].astype(str).tolist() if ids in table.columns else None, side=side)
        features[name] = ModalityFeatures(name, values, mask, spec.get("encoder", {}))
    return features


def _read_parquet(file: Path, required: Sequence[str] = ()) -> pa.Table:
    """A dataset's Parquet file, or a DataFormatError saying what is wrong with it."""
    if not file.is_file():
        raise DataFormatError("required file of the dataset is missing", path=file)
    try:
        table = pq.read_table(file)
    # a damaged file can fail anywhere from the footer to the schema
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataFormatError(f"is not a readable Parquet file: {exc}", path=file) from None
    for column in required:
        if column not in table.column_names:
            raise DataFormatError(f"lacks column {column!r}", path=file, field=column)
    return table


def check_finite(values: np.ndarray, where: str | Path, modality: str | None = None,
                 item_ids: Sequence[str] | None = None, side: str = "item") -> None:
    """Raise a DataFormatError naming the modality, the first item (``side="user"``: user), by index
    and original id, and the column holding NaN or inf."""
    if values.size and not np.isfinite(values).all():
        rows, columns = np.nonzero(~np.isfinite(values.reshape(len(values), -1)))
        row, column = int(rows[0]), int(columns[0])
        item = f"{side} {row}" + (f" (id {item_ids[row]!r})" if item_ids is not None else "")
        what = f"modality {modality!r} " if modality else "features "
        raise DataFormatError(f"{what}holds {values.reshape(len(values), -1)[row, column]} at {item}, column "
                              f"{column} ({len(rows):,} non-finite values in all); re-encode the modality",
                              path=where, line=row + 1, field=modality or f"row {row}")


def _with_index_column(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    out = frame.reset_index(drop=True).copy()
    out[column] = np.arange(len(out), dtype=np.int32)
    ordered: Iterable[str] = [column] + [c for c in out.columns if c != column]
    return out[list(ordered)]

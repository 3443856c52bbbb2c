r"""Content-addressed cache of item embeddings, and the encoding loop both encoders share.

An item's embedding depends only on the encoder and on the item's input, so it is
stored under

.. math::
    \mathrm{key}(i) = \mathrm{sha256}\big(\mathrm{sha256}(\text{encoder identity})
    \,\|\, \texttt{\textbackslash 0} \,\|\, \text{input}_i\big),

where the identity is a JSON object naming everything that changes the output
(model name and revision or the hash of a local model directory, the hash of a
weights file, truncation length, preprocessing, precision) and the input is the
item's assembled text or its image file's bytes. Re-encoding a dataset therefore
runs the model only on items whose input (or encoder) changed.

The embeddings of one encoder live in ``<cache_dir>/<identity digest[:16]>/`` as
``.npz`` shards (``keys``: ``S64`` hex digests, ``values``: ``float32`` matrix),
each written atomically; a run adds one shard and, past :attr:`EmbeddingCache.max_shards`,
merges them into one. Shards are derived data: a shard that cannot be read is
reported with a warning and ignored, and its items are encoded again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from graphrec.data.storage import atomic_file, write_json
from graphrec.errors import DataFormatError

#: Bump when the encoding code changes in a way that changes its output.
ENCODER_FORMAT_VERSION = 1


# ------------------------------------------------------------------ hashing
def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_directory(path: str | Path) -> str:
    """Hex sha256 over a directory's files (relative names and contents, in sorted order).

    Files and folders whose name starts with a dot are left out: download tools keep
    timestamped metadata there (``.cache/huggingface``) that says nothing about the model.
    """
    root = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = file.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode() + b"\0" + bytes.fromhex(sha256_file(file)))
    return digest.hexdigest()


def sha256_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 of a ``state_dict``'s names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def identity_digest(identity: Mapping[str, Any]) -> str:
    """Hex sha256 of an encoder identity, as canonical JSON."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


# -------------------------------------------------------------------- cache
class EmbeddingCache:
    """The embeddings one encoder (``identity``) has computed, keyed by input content."""

    def __init__(self, root: str | Path, identity: Mapping[str, Any], max_shards: int = 16) -> None:
        self.identity = dict(identity)
        self.digest = identity_digest(self.identity)
        self.directory = Path(root) / self.digest[:16]
        self.max_shards = max_shards
        self._prefix = bytes.fromhex(self.digest) + b"\0"

    def key(self, payload: bytes) -> str:
        """The cache key of one input (its text as UTF-8, or its image file's bytes)."""
        return hashlib.sha256(self._prefix + payload).hexdigest()

    def shards(self) -> list[Path]:
        return sorted(self.directory.glob("shard-*.npz"))

    def lookup(self, keys: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Return ``(found, values)``: which keys are cached and their rows (zeros where not)."""
        stored_keys, stored_values = self._load()
        found = np.zeros(len(keys), dtype=bool)
        if stored_values is None or not len(keys):
            return found, None
        positions = pd.Index(stored_keys).get_indexer(np.asarray(keys, dtype="S64"))
        found = positions >= 0
        values = np.zeros((len(keys), stored_values.shape[1]), dtype=np.float32)
        values[found] = stored_values[positions[found]]
        return found, values

    def store(self, keys: Sequence[str] | np.ndarray, values: np.ndarray) -> None:
        """Add embeddings (one row per key) as a new shard, atomically."""
        if not len(keys):
            return
        keys_array = np.asarray(keys, dtype="S64")
        if values.shape[0] != len(keys_array):
            raise ValueError(f"{len(keys_array)} keys but {values.shape[0]} rows")
        self.directory.mkdir(parents=True, exist_ok=True)
        identity_file = self.directory / "identity.json"
        if not identity_file.exists():
            write_json(identity_file, {"digest": self.digest, "identity": self.identity})
        self._write_shard(keys_array, values.astype(np.float32, copy=False))
        shards = self.shards()
        if len(shards) > self.max_shards:
            self._compact(shards)

    def __len__(self) -> int:
        keys, _ = self._load()
        return len(keys)

    # ---------------------------------------------------------- internals
    def _write_shard(self, keys: np.ndarray, values: np.ndarray) -> Path:
        name = hashlib.sha256(keys.tobytes() + values.tobytes()).hexdigest()[:20]
        path = self.directory / f"shard-{name}.npz"
        with atomic_file(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=keys, values=values)
        return path

    def _compact(self, shards: list[Path]) -> None:
        keys, values = self._load()
        if values is None:
            return
        merged = self._write_shard(keys, values)
        # The merged shard is in place before the old ones go, so a reader never misses a key.
        for shard in shards:
            if shard != merged:
                shard.unlink(missing_ok=True)

    def _load(self) -> tuple[np.ndarray, np.ndarray | None]:
        keys: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for shard in self.shards():
            try:
                with np.load(shard, allow_pickle=False) as data:
                    shard_keys, shard_values = data["keys"], data["values"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                warnings.warn(f"ignoring unreadable embedding cache shard {shard}: {exc}", stacklevel=3)
                continue
            if shard_values.ndim != 2 or shard_values.shape[0] != len(shard_keys):
                warnings.warn(f"ignoring embedding cache shard {shard}: {len(shard_keys)} keys but values of "
                              f"shape {shard_values.shape}", stacklevel=3)
                continue
            if values and shard_values.shape[1] != values[0].shape[1]:
                raise DataFormatError(f"holds {shard_values.shape[1]}-d embeddings but other shards of the same "
                                      f"encoder hold {values[0].shape[1]}-d ones; delete {self.directory}",
                                      path=shard, field="values")
            keys.append(shard_keys.astype("S64"))
            values.append(shard_values.astype(np.float32, copy=False))
        if not values:
            return np.zeros(0, dtype="S64"), None
        all_keys = np.concatenate(keys)
        all_values = np.concatenate(values)
        # The same key can sit in two shards (two runs at once, or a compaction under way).
        all_keys, first = np.unique(all_keys, return_index=True)
        return all_keys, all_values[first]


# ------------------------------------------------------------ shared loop
@dataclass(frozen=True)
class EncodingStats:
    """What one encoding pass did.

    ``cached`` counts items whose embedding came from the cache; ``encoded`` counts
    the distinct inputs run through the model (items with identical inputs share
    one); ``missing`` counts items without this modality (no input, or an input
    that could not be read); ``problems`` says why, item by item, for inputs that
    exist but could not be read.
    """

    items: int
    missing: int
    cached: int
    encoded: int
    seconds: float
    problems: tuple[str, ...] = field(default=())

    @property
    def items_per_second(self) -> float:
        """Throughput of the model: distinct inputs encoded per second of the whole pass."""
        return self.encoded / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {"items": self.items, "missing": self.missing, "cached": self.cached, "encoded": self.encoded,
                "seconds": round(self.seconds, 3), "items_per_second": round(self.items_per_second, 2)
                if self.encoded else None, "problems": len(self.problems)}

    def summary(self, modality: str, rows: str = "items") -> str:
        rate = f" ({self.items_per_second:.1f} {rows}/s)" if self.encoded else ""
        return (f"{modality}: {self.items} {rows}: {self.encoded} encoded{rate}, {self.cached} from cache, "
                f"{self.missing} missing, in {self.seconds:.1f} s")


#: ``compute(positions) -> (values, ok, problems)``: encode the items at ``positions``;
#: ``ok[j]`` is False where item ``positions[j]`` could not be read after all.
ComputeFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, list[str]]]


def encode_with_cache(keys: Sequence[str | None], compute: ComputeFn, dim: Callable[[], int],
                      cache: EmbeddingCache | None) -> tuple[np.ndarray, np.ndarray, EncodingStats]:
    """Fill one row per item from the cache or from ``compute``; ``None`` keys are missing items.

    Items sharing a key are encoded once. Returns ``(values, mask, stats)`` with zero
    rows where ``mask`` is False. ``dim()`` is asked only when nothing was encoded or cached.
    """
    start = time.perf_counter()
    n = len(keys)
    present = np.fromiter((key is not None for key in keys), dtype=bool, count=n)
    present_positions = np.flatnonzero(present)
    present_keys = np.asarray([keys[i] for i in present_positions.tolist()], dtype="S64")
    found = np.zeros(len(present_keys), dtype=bool)
    cached_values = None
    if cache is not None and len(present_keys):
        found, cached_values = cache.lookup(present_keys)
    unique_missing, first, inverse = np.unique(present_keys[~found], return_index=True, return_inverse=True)
    miss_positions = present_positions[~found]
    problems: list[str] = []
    computed, computed_ok = np.zeros((0, 0), np.float32), np.zeros(0, bool)
    if len(unique_missing):
        computed, computed_ok, problems = compute(miss_positions[first])
        computed = np.asarray(computed, dtype=np.float32)
        computed[~computed_ok] = 0.0
        if cache is not None and computed_ok.any():
            cache.store(unique_missing[computed_ok], computed[computed_ok])
    width = (cached_values.shape[1] if cached_values is not None
             else computed.shape[1] if len(unique_missing) else dim())
    values = np.zeros((n, width), dtype=np.float32)
    mask = np.zeros(n, dtype=bool)
    if cached_values is not None and found.any():
        values[present_positions[found]] = cached_values[found]
        mask[present_positions[found]] = True
    if len(unique_missing):
        values[miss_positions] = computed[inverse]
        mask[miss_positions] = computed_ok[inverse]
    stats = EncodingStats(items=n, missing=int((~mask).sum()), cached=int(found.sum()),
                          encoded=int(computed_ok.sum()), seconds=time.perf_counter() - start,
                          problems=tuple(problems))
    return values, mask, stats


# ----------------------------------------------------------------- helpers
def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

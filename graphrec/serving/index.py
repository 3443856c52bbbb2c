r"""Nearest-neighbour index over item embeddings for serving top-k at scale.

A query :math:`\mathbf{q}` (a user embedding) retrieves the items with the largest
:math:`\langle \mathbf{q}, \mathbf{v}_i \rangle` (``metric="ip"``, the models' score) or
cosine (``metric="cosine"``: vectors and queries are L2-normalised first).

Backends:

* ``exact``: brute force, :math:`\mathbf{Q} \mathbf{V}^\top` and a top-k, in torch.
* ``faiss``: ``IndexFlatIP`` (exact) for small catalogues; ``IndexIVFFlat`` for large ones
  (at least :data:`IVF_MIN_ITEMS` items, or whenever ``nlist`` is given): k-means splits
  the items into ``nlist`` cells and a query scans only the ``nprobe`` cells whose
  centroids score highest, trading recall for speed. :meth:`EmbeddingIndex.recall_against_exact`
  measures that trade; :func:`build_index` raises ``nprobe`` until it reaches a target recall.
* ``auto``: ``faiss`` when it can be imported, else ``exact``.

Saved indexes are directories (written atomically)::

    OUT/index.json     backend, metric, kind, nlist, nprobe, counts and build statistics
    OUT/item_ids.txt   original item ids, one per line, in index order
    OUT/index.faiss    faiss backend (faiss.write_index)
    OUT/vectors.npy    exact backend
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphrec.data.storage import atomic_directory, check_not_input, write_json
from graphrec.errors import DataFormatError, GraphrecError
from graphrec.evaluation import top_k
from graphrec.serving.export import read_ids, write_ids

INDEX_BACKENDS: tuple[str, ...] = ("auto", "faiss", "exact")
INDEX_METRICS: tuple[str, ...] = ("ip", "cosine")
#: Below this many items a flat scan is already fast, so ``faiss`` builds an exact ``IndexFlatIP``.
IVF_MIN_ITEMS = 10_000
#: faiss warns when k-means has fewer training points than this per centroid.
_POINTS_PER_CELL = 39
#: Largest ``queries x items`` score block of the exact search.
_BLOCK_ELEMENTS = 1 << 25


def faiss_available() -> bool:
    """Whether the faiss backend can be used (``faiss-cpu`` or ``faiss-gpu`` is installed)."""
    return importlib.util.find_spec("faiss") is not None


def default_nlist(num_items: int) -> int:
    """About :math:`4\\sqrt{n}` cells, but never fewer than 39 training points per cell."""
    return max(1, min(round(4 * math.sqrt(num_items)), num_items // _POINTS_PER_CELL))


def default_nprobe(nlist: int) -> int:
    """Scan one cell in eight by default; :func:`build_index` tunes it by measured recall instead."""
    return max(1, math.ceil(nlist / 8))


class EmbeddingIndex:
    """Top-k inner-product (or cosine) search over item embeddings; build it with :meth:`build`.

    Attributes:
        item_ids: original item ids, row ``i`` of the vectors being item index ``i``.
        backend: ``"faiss"`` or ``"exact"``; metric: ``"ip"`` or ``"cosine"``.
        nlist, nprobe: IVF cells and cells scanned per query (``None`` unless IVF).
    """

    def __init__(self, item_ids: Sequence[str] | np.ndarray, backend: str, metric: str, dim: int,
                 vectors: np.ndarray | None = None, faiss_index: Any = None, nlist: int | None = None,
                 nprobe: int | None = None) -> None:
        self.item_ids = np.asarray(item_ids, dtype=object)
        self.backend = backend
        self.metric = metric
        self.dim = int(dim)
        self.nlist = nlist
        self._vectors = vectors
        self._faiss = faiss_index
        self._nprobe: int | None = None
        if nprobe is not None:
            self.nprobe = nprobe

    # ------------------------------------------------------------ building
    @classmethod
    def build(cls, item_emb: np.ndarray | torch.Tensor, item_ids: Sequence[str] | np.ndarray,
              backend: str = "auto", metric: str = "ip", nlist: int | None = None,
              nprobe: int | None = None) -> EmbeddingIndex:
        """Index ``item_emb`` ``[num_items, d]`` (see the module docstring for the backends)."""
        if backend not in INDEX_BACKENDS:
            raise GraphrecError(f"unknown index backend {backend!r}; choose one of {', '.join(INDEX_BACKENDS)}")
        if metric not in INDEX_METRICS:
            raise GraphrecError(f"unknown metric {metric!r}; choose one of {', '.join(INDEX_METRICS)}")
        vectors = _as_matrix(item_emb, "item embeddings")
        if len(item_ids) != len(vectors):
            raise GraphrecError(f"{len(item_ids)} item ids for {len(vectors)} item embeddings")
        if len(vectors) == 0:
            raise GraphrecError("cannot index an empty catalogue")
        if not np.isfinite(vectors).all():
            row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
            raise GraphrecError(f"item embedding of {item_ids[row]!r} (row {row}) holds NaN or inf")
        if metric == "cosine":
            vectors = _normalize(vectors)
        if backend == "auto":
            backend = "faiss" if faiss_available() else "exact"
        if backend == "exact":
            if nlist is not None or nprobe is not None:
                raise GraphrecError("nlist and nprobe apply to the faiss backend only")
            return cls(item_ids, "exact", metric, vectors.shape[1], vectors=vectors)
        faiss = _import_faiss()
        num_items, dim = vectors.shape
        if nlist is None and num_items >= IVF_MIN_ITEMS:
            nlist = default_nlist(num_items)
        if nlist is None:
            if nprobe is not None:
                raise GraphrecError(f"nprobe applies to an IVF index; {num_items:,} items get an exact "
                                    f"IndexFlatIP unless nlist is given")
            index = faiss.IndexFlatIP(dim)
            index.add(vectors)
            return cls(item_ids, "faiss", metric, dim, vectors=vectors, faiss_index=index)
        if not 1 <= nlist <= num_items:
            raise GraphrecError(f"nlist must be between 1 and the number of items ({num_items:,}), got {nlist}")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.add(vectors)
        built = cls(item_ids, "faiss", metric, dim, vectors=vectors, faiss_index=index, nlist=nlist)
        built.nprobe = default_nprobe(nlist) if nprobe is None else nprobe
        return built

    # ------------------------------------------------------------- queries
    @property
    def kind(self) -> str:
        """``"exact"``, ``"IndexFlatIP"`` or ``"IndexIVFFlat"``."""
        return "exact" if self._faiss is None else ("IndexIVFFlat" if self.nlist is not None else "IndexFlatIP")

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def nprobe(self) -> int | None:
        return self._nprobe

    @nprobe.setter
    def nprobe(self, value: int | None) -> None:
        if self.nlist is None:
            if value is not None:
                raise GraphrecError(f"nprobe applies to an IVF index only, this one is {self.kind}")
            self._nprobe = None
            return
        if value is None or not 1 <= value <= self.nlist:
            raise GraphrecError(f"nprobe must be between 1 and nlist ({self.nlist}), got {value}")
        self._nprobe = int(value)
        self._faiss.nprobe = int(value)

    @property
    def vectors(self) -> np.ndarray:
        """The indexed vectors ``[num_items, d]`` (normalised for cosine), read back from faiss if needed."""
        if self._vectors is None:
            if self.nlist is not None:
                self._faiss.make_direct_map()
            self._vectors = self._faiss.reconstruct_n(0, self._faiss.ntotal)
        return self._vectors

    def search(self, queries: np.ndarray | torch.Tensor, k: int,
               exclude: Sequence[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items for each query, leaving out ``exclude[b]`` (item indices) for query ``b``.

        Returns ``(scores, indices)``, each ``[B, min(k, num_items)]``, best first; where
        fewer items qualify (exclusions, or an IVF probe that reached too few items) the
        tail holds index ``-1`` and score ``-inf``.
        """
        return self._search(queries, k, exclude, approximate=True)

    def exact_search(self, queries: np.ndarray | torch.Tensor, k: int,
                     exclude: Sequence[set[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` by brute force over the indexed vectors, whatever the backend."""
        return self._search(queries, k, exclude, approximate=False)

    def recall_against_exact(self, queries: np.ndarray | torch.Tensor, k: int) -> float:
        """Mean over queries of :math:`|\\text{ANN top-}k \\cap \\text{exact top-}k| / k`."""
        _, approximate = self.search(queries, k)
        _, exact = self.exact_search(queries, k)
        hits = _members(approximate, exact) & (approximate >= 0)
        return float(hits.sum(axis=1).mean() / max(exact.shape[1], 1))

    def _search(self, queries: np.ndarray | torch.Tensor, k: int, exclude: Sequence[set[int]] | None,
                approximate: bool) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise GraphrecError(f"k must be at least 1, got {k}")
        queries = _as_matrix(queries, "queries")
        if queries.shape[1] != self.dim:
            raise GraphrecError(f"queries have dimension {queries.shape[1]}, the index {self.dim}")
        if exclude is not None and len(exclude) != len(queries):
            raise GraphrecError(f"exclude has {len(exclude)} sets for {len(queries)} queries")
        if self.metric == "cosine":
            queries = _normalize(queries)
        width = min(k, self.num_items)
        most_excluded = max((len(s) for s in exclude), default=0) if exclude is not None else 0
        # Fetch enough extra candidates that removing the excluded ones still leaves k.
        fetch = min(self.num_items, width + most_excluded)
        if approximate and self._faiss is not None:
            scores, indices = self._faiss.search(queries, fetch)
            indices = indices.astype(np.int64)
        else:
            scores, indices = self._brute_force(queries, fetch)
        usable = indices >= 0
        if exclude is not None and most_excluded:
            usable &= ~_excluded(indices, exclude, self.num_items)
        # Stable sort on "unusable" moves the usable candidates to the front in score order.
        order = np.argsort(~usable, axis=1, kind="stable")[:, :width]
        usable = np.take_along_axis(usable, order, axis=1)
        scores = np.where(usable, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32)
        indices = np.where(usable, np.take_along_axis(indices, order, axis=1), -1)
        return scores, indices

    def _brute_force(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = torch.from_numpy(self.vectors)
        step = max(1, _BLOCK_ELEMENTS // self.num_items)
        scores, indices = [], []
        for start in range(0, len(queries), step):
            block = torch.from_numpy(queries[start:start + step]) @ vectors.t()
            values, columns = top_k(block, k)
            scores.append(values.numpy())
            indices.append(columns.numpy().astype(np.int64))
        if not scores:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(scores), np.concatenate(indices)

    # ------------------------------------------------------------- on disk
    def save(self, path: str | Path, overwrite: bool = False, stats: dict[str, Any] | None = None,
             reads: Sequence[str | Path | None] = ()) -> Path:
        """Write the index directory atomically (see the module docstring); ``stats`` go into index.json.
        ``path`` may not replace any of ``reads`` (the inputs it was built from)."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite, reads=reads) as tmp:
            if self._faiss is not None:
                _import_faiss().write_index(self._faiss, str(tmp / "index.faiss"))
            else:
                np.save(tmp / "vectors.npy", self.vectors)
            write_ids(tmp / "item_ids.txt", self.item_ids, "item")
            meta = {"backend": self.backend, "kind": self.kind, "metric": self.metric, "dim": self.dim,
                    "num_items": self.num_items, "nlist": self.nlist, "nprobe": self.nprobe,
                    "stats": stats or {}}
            write_json(tmp / "index.json", meta)
        return path

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingIndex:
        """Read an index directory written by :meth:`save`."""
        path = Path(path)
        meta_path = path / "index.json"
        if not meta_path.is_file():
            raise DataFormatError("not a graphrec index (index.json is missing)", path=meta_path)
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"invalid JSON: {exc.msg}", path=meta_path, line=exc.lineno) from exc
        for key in ("backend", "metric", "dim", "num_items"):
            if key not in meta:
                raise DataFormatError("field is missing", path=meta_path, field=key)
        item_ids = read_ids(path / "item_ids.txt")
        if len(item_ids) != meta["num_items"]:
            raise DataFormatError(f"has {len(item_ids)} ids, index.json says {meta['num_items']} items",
                                  path=path / "item_ids.txt")
        if meta["backend"] == "exact":
            vectors = np.load(path / "vectors.npy")
            return cls(item_ids, "exact", meta["metric"], meta["dim"], vectors=vectors)
        index = _import_faiss().read_index(str(path / "index.faiss"))
        if index.ntotal != meta["num_items"] or index.d != meta["dim"]:
            raise DataFormatError(f"holds {index.ntotal} vectors of dimension {index.d}, index.json says "
                                  f"{meta['num_items']} of dimension {meta['dim']}", path=path / "index.faiss")
        loaded = cls(item_ids, "faiss", meta["metric"], meta["dim"], faiss_index=index, nlist=meta.get("nlist"))
        # faiss does not store nprobe with the index: restore the one that was chosen.
        loaded.nprobe = meta.get("nprobe")
        return loaded

    def __repr__(self) -> str:
        extra = f", nlist={self.nlist}, nprobe={self.nprobe}" if self.nlist is not None else ""
        return f"EmbeddingIndex({self.kind}, metric={self.metric}, items={self.num_items:,}, dim={self.dim}{extra})"


#: The recall@k against exact search that ``build_index`` tunes an IVF index's nprobe up to.
DEFAULT_TARGET_RECALL = 0.95


def build_index(run_path: str | Path, out: str | Path | None = None, backend: str = "auto", metric: str = "ip",
                nlist: int | None = None, nprobe: int | None = None, k: int = 10, num_queries: int = 1000,
                target_recall: float | None = None, overwrite: bool = False,
                seed: int = 0) -> tuple[Path, dict[str, Any]]:
    """Index a trained run's item embeddings and measure the index against exact search.

    The queries are ``num_queries`` of the run's own user embeddings (drawn with ``seed``),
    the searches serving will do. For an IVF index without ``nprobe``, ``nprobe`` doubles
    from 1 until recall@``k`` against exact search reaches ``target_recall`` (default
    :data:`DEFAULT_TARGET_RECALL`); asking for a target where nothing is tuned (with
    ``nprobe``, or an exact index) is an error rather than a setting without effect.
    The index goes to ``out`` (default ``RUN/index``).

    Returns:
        ``(path, stats)``; ``stats`` (also stored in ``index.json``) holds the kind of index,
        ``nlist``, ``nprobe``, ``recall@k`` and the measured milliseconds per query of the
        index and of exact search.
    """
    from graphrec.training.run import load_run

    if target_recall is not None:
        if not 0.0 < target_recall <= 1.0:
            raise GraphrecError(f"--target-recall must lie in (0, 1], got {target_recall}")
        if nprobe is not None:
            raise GraphrecError("--target-recall tunes nprobe: give it or --nprobe, not both")
    run_path = Path(run_path)
    out_path = Path(out) if out is not None else run_path / "index"
    check_not_input(out_path, [run_path])  # before the run is loaded and searched
    run = load_run(run_path)
    user_emb, item_emb = (e.float().numpy() for e in run.embeddings())
    started = time.perf_counter()
    index = EmbeddingIndex.build(item_emb, run.dataset.items["item_id"].astype(str).to_numpy(), backend=backend,
                                 metric=metric, nlist=nlist, nprobe=nprobe)
    build_seconds = time.perf_counter() - started
    if target_recall is not None and index.nlist is None:
        raise GraphrecError(f"--target-recall tunes an IVF index, but this one is {index.kind}, which searches "
                            f"exactly: pass --nlist for IVF, or leave --target-recall out")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(user_emb), size=min(num_queries, len(user_emb)), replace=False))
    queries = user_emb[chosen]
    recall = index.recall_against_exact(queries, k)
    if index.nlist is not None and nprobe is None:
        index.nprobe = 1
        recall = index.recall_against_exact(queries, k)
        target = DEFAULT_TARGET_RECALL if target_recall is None else target_recall
        while recall < target and index.nprobe < index.nlist:
            index.nprobe = min(index.nprobe * 2, index.nlist)
            recall = index.recall_against_exact(queries, k)
    stats = {"kind": index.kind, "backend": index.backend, "metric": index.metric, "num_items": index.num_items,
             "dim": index.dim, "nlist": index.nlist, "nprobe": index.nprobe, "k": k,
             "num_queries": len(queries), f"recall@{k}": recall, "build_seconds": build_seconds,
             "ms_per_query": _ms_per_query(index.search, queries, k),
             "exact_ms_per_query": _ms_per_query(index.exact_search, queries, k)}
    index.save(out_path, overwrite=overwrite, stats=stats, reads=[run_path, run.dataset.path])
    return out_path, stats


def _ms_per_query(search: Any, queries: np.ndarray, k: int) -> float:
    started = time.perf_counter()
    search(queries, k)
    return 1000 * (time.perf_counter() - started) / max(len(queries), 1)


def _as_matrix(values: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.ascontiguousarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise GraphrecError(f"{what} must be a 2-D matrix, got shape {values.shape}")
    return values


def _normalize(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return np.ascontiguousarray(values / np.maximum(norms, 1e-12), dtype=np.float32)


def _excluded(indices: np.ndarray, exclude: Sequence[set[int]], num_items: int) -> np.ndarray:
    """``[B, F]`` bool: is ``indices[b, f]`` in ``exclude[b]``? (one vectorised membership test)."""
    lengths = np.fromiter((len(s) for s in exclude), dtype=np.int64, count=len(exclude))
    flat = np.fromiter((item for s in exclude for item in s), dtype=np.int64, count=int(lengths.sum()))
    keys = np.repeat(np.arange(len(exclude), dtype=np.int64), lengths) * num_items + flat
    rows = np.arange(len(indices), dtype=np.int64)[:, None]
    return np.isin(rows * num_items + indices, keys)


def _members(candidates: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``[B, F]`` bool: is ``candidates[b, f]`` among the valid entries of ``reference[b]``?"""
    width = max(int(candidates.max(initial=0)), int(reference.max(initial=0))) + 1
    rows = np.arange(len(candidates), dtype=np.int64)[:, None]
    valid = reference >= 0
    return np.isin(rows * width + candidates, (rows * width + reference)[valid])


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise GraphrecError("the faiss backend needs faiss: pip install faiss-cpu "
                            "(or graphrec[faiss]), or use backend='exact'") from exc
    return faiss


__all__ = ["INDEX_BACKENDS", "INDEX_METRICS", "IVF_MIN_ITEMS", "EmbeddingIndex", "build_index", "default_nlist",
           "default_nprobe", "faiss_available"]

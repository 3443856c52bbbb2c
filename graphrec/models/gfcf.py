r"""GF-CF: a linear filter plus an ideal low-pass filter on the normalised item–item graph.

From `"How Powerful is Graph Convolution for Recommendation?" <https://arxiv.org/abs/2108.07567>`_
(Shen et al., CIKM 2021). With :math:`R \in \{0, 1\}^{M \times N}` the training interactions of
:math:`M` users and :math:`N` items, :math:`D_U` and :math:`D_I` the user and item degrees,

.. math::
    \tilde{R} = D_U^{-1/2} R D_I^{-1/2}, \qquad \tilde{P} = \tilde{R}^\top \tilde{R},

and :math:`V_k \in \mathbb{R}^{N \times k}` the top-:math:`k` right singular vectors of
:math:`\tilde{R}` (the eigenvectors of the :math:`k` largest eigenvalues of :math:`\tilde{P}`),
user :math:`u`, with training row :math:`r_u`, scores the items

.. math::
    s_u = r_u \tilde{P} + \alpha\, r_u D_I^{-1/2} V_k V_k^\top D_I^{1/2}.

The first term is a linear low-pass filter on the item–item graph, the second an ideal low-pass
filter that keeps only its :math:`k` smoothest frequencies. Nothing is learnt:
:meth:`GFCF.from_dataset` normalises the training matrix and solves the truncated SVD once.
Items without a training interaction have an empty column in :math:`\tilde{R}` and score 0.

**Cold users.** A user without a training interaction has :math:`r_u = 0` and would score 0 everywhere.
With ``cold_user_neighbours`` :math:`k > 0` and user features in the dataset (attribute columns, user
modalities), :math:`r_u` is replaced by a pseudo-history, the mean training row of the :math:`k` warm
users most similar to it by cosine of their features (:mod:`graphrec.models.user_side`). The filters
are linear in the row, so :math:`s_u` is the mean of those neighbours' scores; a new user given by its
attribute values is scored the same way (:meth:`GFCF.score_new_users`). Warm users are unchanged.

**Choosing** :math:`\alpha` **and** :math:`k`. Left ``None`` they are chosen on the validation split
(:meth:`GFCF.setting_scorer` and :meth:`GFCF.select`). Every setting shares :math:`r_u \tilde{P}` and
the projection :math:`r_u D_I^{-1/2} V_K` on the largest :math:`K` of the grid; the ideal term of a
smaller :math:`k` is a prefix of the same sum over singular vectors, so one pass accumulates it for
every :math:`k` at the cost of the largest. A grid value of :math:`k` that the training graph cannot
give (at least :math:`\min(M, N)`) is capped at :math:`\min(M, N) - 1`, chosen or given, so that the
options a run records rebuild on any graph; any other :math:`k` must fit.

**The item–item graph.** :math:`r_u \tilde{P}` is a sparse–sparse product, either through
:math:`\tilde{P}` materialised once or on the fly as :math:`(r_u \tilde{R}^\top) \tilde{R}`, which
never holds :math:`\tilde{P}` (``item_graph``; ``auto`` materialises it when its estimated size
fits ``item_graph_budget_mb``). With :math:`E` training interactions, :math:`d_u` the user degrees,
CSR in float32 with 32-bit indices (8 bytes a non-zero):

* always: :math:`\tilde{R}` and :math:`\tilde{R}^\top`, :math:`16E` bytes, and the two
  :math:`N \times K` factors of the ideal filter, :math:`8NK` bytes;
* materialised, on top: :math:`8\,\mathrm{nnz}(\tilde{P})` bytes, with
  :math:`\mathrm{nnz}(\tilde{P}) \le \min(N^2, \sum_u d_u^2)` (each user joins at most
  :math:`d_u^2` item pairs; the estimate ``auto`` uses);
* scoring :math:`B` users: the :math:`4BN`-byte dense scores, plus sparse intermediates of at most
  :math:`12BN` bytes (:math:`12BM` more on the fly, for :math:`r_u \tilde{R}^\top`).

For a catalogue of :math:`E = 10^7` interactions :math:`\tilde{R}` and :math:`\tilde{R}^\top` take
160 MB and :math:`\tilde{P}` at most :math:`8 \sum_u d_u^2 = 80\,c` MB, with :math:`c = \sum_u d_u^2 / E`
the mean degree of the user behind an interaction (4 GB at :math:`c = 50`); on the fly the bound is the
160 MB, plus :math:`8NK` and the batch. Dense signals (BSPM's ODE states) always take the factored route
:math:`(x \tilde{R}^\top) \tilde{R}`: it costs :math:`2BE` multiply-adds against
:math:`B\,\mathrm{nnz}(\tilde{P})`, and :math:`\mathrm{nnz}(\tilde{P}) \gg 2E` on real graphs.

**Truncated SVD** (``solver``): ``randomized`` is Halko et al.'s randomised range finder
(:func:`randomized_svd`) with ``oversampling`` extra directions and ``power_iterations`` power
iterations, an approximation of the top-:math:`k` subspace; ``arpack`` is
:func:`scipy.sparse.linalg.svds` in float64, converged to
ARPACK's tolerance (as the authors' Lanczos ``sparsesvd``);
``dense`` is LAPACK's exact SVD of :math:`\tilde{R}` as a dense matrix (small graphs only); ``auto``
takes ``dense`` below :data:`DENSE_SVD_ENTRIES` matrix entries and :data:`AUTO_SVD_SOLVER` above
(``benchmarks/graph_filter_kernels.py`` compares the solvers).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError, GraphrecError
from graphrec.models.base import ModelOptions, Recommender, ScoreFn, check_non_negative, check_positive
from graphrec.models.user_side import Attributes, PseudoHistories

#: Truncated SVD solvers (see the module docstring).
SVD_SOLVERS: tuple[str, ...] = ("auto", "randomized", "arpack", "dense")
#: How :math:`r_u \tilde{P}` is computed (see the module docstring).
ITEM_GRAPHS: tuple[str, ...] = ("auto", "materialise", "on_the_fly")
#: ``solver="auto"`` solves the exact dense SVD up to this many entries of :math:`\tilde{R}` (M x N).
DENSE_SVD_ENTRIES = 4_000_000
#: ``solver="auto"`` above :data:`DENSE_SVD_ENTRIES`.
AUTO_SVD_SOLVER = "randomized"
#: Users per sparse product: bounds the sparse intermediates of a large batch (not its dense scores);
#: smaller products also keep their work in cache (``benchmarks/graph_filter_kernels.py``).
USER_CHUNK = 256
#: Rows of a sparse product below which it is not worth another thread.
LINEAR_ROWS_PER_THREAD = 64

#: Warm users whose training rows make a cold user's pseudo-history, unless told otherwise.
DEFAULT_COLD_USER_NEIGHBOURS = 50

OptionsT = TypeVar("OptionsT", bound=ModelOptions)


# ------------------------------------------------------------------------------------------ options
def check_choice(options: ModelOptions, name: str, choices: Sequence[str]) -> None:
    """A :class:`~graphrec.errors.ConfigError` unless option ``name`` is one of ``choices``."""
    value = getattr(options, name)
    if value not in choices:
        raise ConfigError(f"must be one of {', '.join(choices)}, got {value!r}", field=name)


def check_number(options: ModelOptions, name: str, minimum: float = 0.0, integer: bool = False,
                 strict: bool = False) -> None:
    """A :class:`~graphrec.errors.ConfigError` unless option ``name`` is ``None`` (chosen on validation)
    or a number (an integer when ``integer``) at least ``minimum`` (above it when ``strict``)."""
    value = getattr(options, name)
    if value is None:
        return
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
            or (integer and not isinstance(value, (int, np.integer)))):
        raise ConfigError(f"must be {'an integer' if integer else 'a number'}, got {value!r}", field=name)
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}", field=name)


def grid_metadata(help_text: str, grid: tuple[Any, ...]) -> dict[str, Any]:
    """The field metadata of an option chosen on validation from ``grid``, its help naming the grid."""
    return {"help": f"{help_text} (default: chosen on validation from {', '.join(map(str, grid))})", "grid": grid}


@dataclass(frozen=True)
class LowPassOptions(ModelOptions):
    """The options GF-CF and BSPM share: how the truncated SVD is solved and how the item–item graph
    is held. Subclasses check their own fields, then call ``super().__post_init__()``."""

    solver: str = field(default="auto", metadata={"help": "truncated SVD: randomized, arpack, dense (exact; small "
                                                          "graphs) or auto"})
    oversampling: int = field(default=64, metadata={"help": "randomized SVD: random directions beyond k"})
    power_iterations: int = field(default=2, metadata={"help": "randomized SVD: power iterations"})
    item_graph: str = field(default="auto", metadata={
        "help": "item–item graph: materialise it, or compute it on_the_fly from the interactions (auto: "
                "materialise it when its estimated size fits item_graph_budget_mb)"})
    item_graph_budget_mb: float = field(default=2048.0, metadata={
        "help": "memory the materialised item–item graph may take (MiB), for item_graph=auto"})

    def __post_init__(self) -> None:
        check_choice(self, "solver", SVD_SOLVERS)
        check_number(self, "oversampling", integer=True)
        check_number(self, "power_iterations", integer=True)
        check_non_negative(self, "oversampling", "power_iterations")
        check_choice(self, "item_graph", ITEM_GRAPHS)
        check_number(self, "item_graph_budget_mb")
        check_positive(self, "item_graph_budget_mb")


@dataclass(frozen=True)
class GFCFOptions(LowPassOptions):
    alpha: float | None = field(default=None, metadata=grid_metadata("weight α of the ideal low-pass filter",
                                                             (0.0, 0.1, 0.3, 0.6, 1.0)))
    k: int | None = field(default=None, metadata=grid_metadata("singular vectors of the ideal low-pass filter, fewer "
                                                       "than the items and users", (64, 128, 256, 448)))
    cold_user_neighbours: int = field(default=DEFAULT_COLD_USER_NEIGHBOURS, metadata={
        "help": "a user without training interactions is filtered from the mean training row of this many warm "
                "users most similar by user features (0: off; no effect without user features)"})

    #: Runs saved before cold users had pseudo-histories scored them from an empty row.
    added_later: ClassVar[Mapping[str, Any]] = {"cold_user_neighbours": 0}

    def __post_init__(self) -> None:
        check_number(self, "alpha")
        check_number(self, "k", minimum=0, integer=True, strict=True)
        check_number(self, "cold_user_neighbours", integer=True)
        check_non_negative(self, "cold_user_neighbours")
        super().__post_init__()


# ------------------------------------------------------------------------------------------ the graph
def _torch_csr(matrix: sp.csr_matrix) -> Tensor:
    """``matrix`` as a torch CSR tensor sharing its arrays (valid by construction, so not re-checked)."""
    with warnings.catch_warnings():
        # torch calls CSR "beta" and warns even with the checks explicitly off; tests cover the products.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr), torch.from_numpy(matrix.indices),
                                       torch.from_numpy(matrix.data), matrix.shape, check_invariants=False)


def _inverse_sqrt(degree: np.ndarray) -> np.ndarray:
    safe = np.maximum(degree, 1).astype(np.float64)
    return np.where(degree > 0, 1.0 / np.sqrt(safe), 0.0)


class ItemGraph:
    r"""The normalised training matrix :math:`\tilde{R}` and products with :math:`\tilde{P} = \tilde{R}^\top
    \tilde{R}`: :meth:`linear` of users' binary rows (sparse), :meth:`propagate` of dense signals.

    ``item_graph`` and ``budget_mb`` choose whether :math:`\tilde{P}` is materialised (see the module
    docstring); :attr:`estimated_bytes` is the bound ``auto`` compares with the budget."""

    def __init__(self, train: sp.csr_matrix, item_graph: str = "auto", budget_mb: float = 2048.0) -> None:
        if item_graph not in ITEM_GRAPHS:
            raise ConfigError(f"must be one of {', '.join(ITEM_GRAPHS)}, got {item_graph!r}", field="item_graph")
        binary = train.astype(np.float32, copy=True).tocsr()
        binary.sum_duplicates()
        binary.eliminate_zeros()
        binary.sort_indices()
        self.num_users, self.num_items = (int(size) for size in binary.shape)
        user_degree = np.diff(binary.indptr)
        self.item_degree = np.bincount(binary.indices, minlength=self.num_items)
        self.item_inverse_sqrt = _inverse_sqrt(self.item_degree)
        rows = np.repeat(np.arange(self.num_users), user_degree)
        norm = binary
        norm.data = (_inverse_sqrt(user_degree)[rows] * self.item_inverse_sqrt[norm.indices]).astype(np.float32)
        self.norm: sp.csr_matrix = norm
        self.norm_t: sp.csr_matrix = norm.T.tocsr()
        self.norm_t.sort_indices()
        self.estimated_nnz = min(self.num_items ** 2, int((user_degree.astype(np.int64) ** 2).sum()))
        self.estimated_bytes = 8 * self.estimated_nnz + 8 * (self.num_items + 1)
        self.materialised = item_graph == "materialise" or (
            item_graph == "auto" and self.estimated_bytes <= budget_mb * 2 ** 20)
        self.item_item: sp.csr_matrix | None = (self.norm_t @ self.norm).tocsr() if self.materialised else None
        #: ``[num_users, num_items]`` pseudo-histories of the cold users (empty rows for the warm ones),
        #: which :meth:`rows` adds; ``None``: every user is scored from its own row.
        self.cold_rows: sp.csr_matrix | None = None
        self._norm = _torch_csr(self.norm)
        self._norm_t = _torch_csr(self.norm_t)

    @property
    def nnz(self) -> int:
        """Training interactions :math:`E`."""
        return int(self.norm.nnz)

    def rows(self, users: np.ndarray) -> sp.csr_matrix:
        """The binary training rows :math:`r_u` of ``users`` (``[B, N]``, sparse)."""
        rows = self.norm[users]
        rows.data[:] = 1.0
        if self.cold_rows is not None:  # empty rows of cold users take their pseudo-histories
            rows = sp.csr_matrix(rows + self.cold_rows[users], dtype=np.float32)
        return rows

    def history_rows(self, rows: sp.csr_matrix) -> sp.csr_matrix:
        """``rows`` ``[B, N]`` of interactions (any users, new ones too) as binary float32 rows."""
        if rows.ndim != 2 or rows.shape[1] != self.num_items:
            raise GraphrecError(f"histories must be rows over the {self.num_items:,} items, got shape {rows.shape}")
        binary = sp.csr_matrix(rows, dtype=np.float32, copy=True)
        binary.sum_duplicates()
        binary.data[:] = 1.0
        binary.eliminate_zeros()
        return binary

    def linear(self, rows: sp.csr_matrix) -> Tensor:
        r""":math:`r \tilde{P}` of sparse ``rows`` ``[B, N]``, dense. SciPy's sparse product runs on one
        core but releases the GIL, so blocks of rows are multiplied on as many threads as torch uses."""
        out = np.zeros(rows.shape, dtype=np.float32)  # toarray(out=) adds into it

        def multiply(block: slice) -> None:
            part = rows[block]
            product = part @ self.item_item if self.item_item is not None else (part @ self.norm_t) @ self.norm
            product.toarray(out=out[block])

        threads = max(1, min(torch.get_num_threads(), rows.shape[0] // LINEAR_ROWS_PER_THREAD))
        bounds = np.linspace(0, rows.shape[0], threads + 1).astype(int)
        blocks = [slice(start, stop) for start, stop in itertools.pairwise(bounds)]
        if threads == 1:
            multiply(blocks[0])
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(multiply, blocks))
        return torch.from_numpy(out)

    def propagate(self, x: Tensor) -> Tensor:
        r""":math:`x \tilde{P} = (x \tilde{R}^\top) \tilde{R}` of a dense ``x`` ``[B, N]``."""
        return self.propagate_columns(x.t().contiguous()).t().contiguous()

    def propagate_columns(self, x: Tensor) -> Tensor:
        r""":math:`\tilde{P} x = \tilde{R}^\top (\tilde{R} x)` of dense signals held item-major, ``x``
        ``[N, B]`` contiguous: torch's sparse-dense product reads the dense operand by rows, so a chain
        of products (an ODE's steps) is fastest kept in this layout."""
        return self._norm_t @ (self._norm @ x)

    def max_rank(self) -> int:
        """The most singular vectors a truncated SVD of :math:`\\tilde{R}` can give: ``min(M, N) - 1``."""
        return min(self.num_users, self.num_items) - 1

    def rank_for(self, k: int | None, grid: Sequence[int], name: str = "k") -> int:
        """The singular vectors to compute for option ``k``: the largest of ``grid`` when ``k`` is
        ``None``. A grid value beyond :meth:`max_rank` is capped at it (so that a setting chosen on
        validation, which the run records, rebuilds on any graph); any other ``k`` must fit."""
        limit = self.max_rank()
        if limit < 1:
            raise GraphrecError(f"the training graph ({self.num_users} users, {self.num_items} items) is too small "
                                f"for a low-pass filter: it needs at least 2 of each")
        if k is None or (k in grid and k > limit):
            return min(max(grid) if k is None else k, limit)
        if k > limit:
            raise ConfigError(f"must be smaller than the training graph's {self.num_items:,} items and "
                              f"{self.num_users:,} users, got {k}", field=name)
        return int(k)


# ------------------------------------------------------------------------------------------ the SVD
def choose_solver(solver: str, num_users: int, num_items: int) -> str:
    """The SVD solver ``auto`` stands for at this size (others as given)."""
    if solver != "auto":
        return solver
    return "dense" if num_users * num_items <= DENSE_SVD_ENTRIES else AUTO_SVD_SOLVER


def truncated_svd(matrix: sp.csr_matrix, k: int, solver: str = "auto", oversampling: int = 16,
                  power_iterations: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest singular values (descending) of ``matrix`` and its right singular vectors
    ``[N, k]`` (float32), by ``solver`` (see the module docstring); seeded, so a rebuild repeats it."""
    num_rows, num_columns = matrix.shape
    if not 0 < k < min(num_rows, num_columns):
        raise ConfigError(f"must be in [1, {min(num_rows, num_columns) - 1}] for a {num_rows} x {num_columns} "
                          f"matrix, got {k}", field="k")
    solver = choose_solver(solver, num_rows, num_columns)
    if solver == "dense":
        _, values, vt = np.linalg.svd(matrix.toarray().astype(np.float64), full_matrices=False)
        return values[:k], np.ascontiguousarray(vt[:k].T, dtype=np.float32)
    if solver == "arpack":
        start = np.random.default_rng(seed).standard_normal(min(num_rows, num_columns))
        _, values, vt = svds(matrix.astype(np.float64), k=k, solver="arpack", v0=start)
        order = np.argsort(-values)
        return values[order], np.ascontiguousarray(vt[order].T, dtype=np.float32)
    if solver == "randomized":
        return randomized_svd(matrix, k, min(k + oversampling, min(num_rows, num_columns)), power_iterations, seed)
    raise ConfigError(f"must be one of {', '.join(SVD_SOLVERS)}, got {solver!r}", field="solver")


def randomized_svd(matrix: sp.csr_matrix, k: int, width: int, power_iterations: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The ``k`` largest singular values and right singular vectors of ``matrix`` :math:`A`
    (``[M, N]``), by Halko, Martinsson and Tropp's randomised range finder on ``width`` random directions.

    Written here rather than taken from :func:`torch.svd_lowrank` for two costs that the latter pays on
    a sketch this wide (about ``k + 64`` directions): it re-orthonormalises every power iteration with a
    Householder QR, where the subspace only needs rescaling (an LU factor :math:`PL` of :math:`Y = PLU`
    spans the same subspace as :math:`Y`, and is what scikit-learn's ``randomized_svd`` uses); and it
    takes the final SVD of the ``width`` :math:`\times N` matrix :math:`B = Q^\top A` with LAPACK's
    bidiagonalisation of all of it, where the eigendecomposition of the ``width`` :math:`\times`
    ``width`` Gram matrix :math:`B B^\top` (in float64) gives the same top ``k`` for a fraction of the
    work: :math:`B B^\top = W \Sigma^2 W^\top`, :math:`V = B^\top W \Sigma^{-1}`.
    ``benchmarks/graph_filter_kernels.py`` measures both against ARPACK.
    """
    matrix = matrix.astype(np.float32, copy=False)
    a, a_t = _torch_csr(matrix), _torch_csr(matrix.T.tocsr())
    generator = torch.Generator().manual_seed(seed)
    sample = a @ torch.randn(matrix.shape[1], width, generator=generator)  # [M, width]
    for _ in range(power_iterations):
        sample = a @ _lu_span(a_t @ _lu_span(sample))
    range_basis = torch.linalg.qr(sample).Q  # [M, width], orthonormal
    projected = (a_t @ range_basis).double()  # B^T, [N, width]
    eigenvalues, eigenvectors = torch.linalg.eigh(projected.T @ projected)
    top = torch.argsort(eigenvalues, descending=True)[:k]
    values = eigenvalues[top].clamp_min(0.0).sqrt()
    vectors = (projected @ eigenvectors[:, top]) / values.clamp_min(torch.finfo(torch.float64).tiny)
    return values.numpy(), np.ascontiguousarray(vectors.numpy(), dtype=np.float32)


def _lu_span(sample: Tensor) -> Tensor:
    """A well-scaled basis of ``sample``'s column space: :math:`PL` of its partially pivoted LU (unit lower
    triangular, so of full rank even where ``sample`` is not, as on a graph of lower rank than the sketch)."""
    factors, pivots, _ = torch.linalg.lu_factor_ex(sample)
    lower = torch.tril(factors, diagonal=-1)
    lower.diagonal().fill_(1.0)
    # LAPACK's pivots are row swaps applied in turn; their product is the permutation P
    order = np.arange(sample.size(0))
    for row, pivot in enumerate(pivots.numpy() - 1):
        order[[row, pivot]] = order[[pivot, row]]
    return torch.empty_like(lower).index_copy_(0, torch.from_numpy(order), lower)


class LowPassBasis:
    r"""The ideal low-pass filter :math:`D_I^{-1/2} V_K V_K^\top D_I^{1/2}` in its two factors:
    :meth:`project` gives :math:`z = r D_I^{-1/2} V_K` and :meth:`expand` the part of :math:`z V^\top
    D_I^{1/2}` from singular vectors ``start:stop``, so that any :math:`k \le K` is a prefix."""

    def __init__(self, graph: ItemGraph, vectors: np.ndarray) -> None:
        self.rank = int(vectors.shape[1])
        self.left = (graph.item_inverse_sqrt[:, None] * vectors).astype(np.float32)
        self.right = torch.from_numpy(np.ascontiguousarray(
            (vectors * np.sqrt(graph.item_degree)[:, None]).T, dtype=np.float32))

    @classmethod
    def solve(cls, graph: ItemGraph, rank: int, solver: str, oversampling: int, power_iterations: int,
              seed: int) -> LowPassBasis:
        _, vectors = truncated_svd(graph.norm, rank, solver, oversampling, power_iterations, seed)
        return cls(graph, vectors)

    def project(self, rows: sp.csr_matrix) -> Tensor:
        r""":math:`r D_I^{-1/2} V_K` of sparse ``rows`` ``[B, N]``: ``[B, K]``."""
        return torch.from_numpy(np.asarray(rows @ self.left, dtype=np.float32))

    def expand(self, z: Tensor, start: int = 0, stop: int | None = None, out: Tensor | None = None,
               alpha: float = 1.0) -> Tensor:
        r""":math:`\alpha z_{:, a:b} V_{:, a:b}^\top D_I^{1/2}` (``[B, N]``) of ``z = project(rows)``, added
        into ``out`` when given (and returned)."""
        stop = self.rank if stop is None else stop
        out = torch.zeros(z.size(0), self.right.size(1)) if out is None else out
        return out.addmm_(z[:, start:stop], self.right[start:stop], alpha=alpha)


def chunked(score: Callable[[np.ndarray], Tensor], users: Tensor, num_items: int) -> Tensor:
    """``score`` of ``users`` applied :data:`USER_CHUNK` users at a time, into one ``[B, num_items]`` tensor."""
    ids = user_ids(users)
    if len(ids) <= USER_CHUNK:
        return score(ids).to(users.device)
    out = torch.empty(len(ids), num_items)
    for start in range(0, len(ids), USER_CHUNK):
        out[start:start + USER_CHUNK] = score(ids[start:start + USER_CHUNK])
    return out.to(users.device)


def on_device(scores: Iterable[Tensor | int], device: torch.device) -> Iterator[Tensor | int]:
    """A setting scorer's items (score matrices, or indices of earlier settings) with the matrices on ``device``."""
    return (item if isinstance(item, int) else item.to(device) for item in scores)


def weighted_sums(keys: Sequence[Hashable], terms: Sequence[tuple[Tensor, Tensor | None, float]],
                  fresh: bool) -> Iterator[Tensor | int]:
    """For each setting in turn, ``base + weight * ideal`` of its ``terms`` (``base`` alone at weight 0),
    or, for a setting with the key of an earlier one, that one's index. Unless ``fresh``, the sums are
    written into one buffer, which the next overwrites (what :func:`~graphrec.evaluation.evaluate_many`
    allows)."""
    first: dict[Hashable, int] = {}
    buffer: Tensor | None = None
    for index, (key, (base, ideal, weight)) in enumerate(zip(keys, terms, strict=True)):
        if first.setdefault(key, index) != index:
            yield first[key]
            continue
        out = torch.empty_like(base) if fresh or buffer is None else buffer
        buffer = out
        if weight == 0:
            yield out.copy_(base)
        else:
            assert ideal is not None  # a weighted setting has its ideal term
            yield torch.add(base, ideal, alpha=weight, out=out)


def shared_list(scores: Iterable[Tensor | int]) -> list[Tensor]:
    """A setting scorer's items as a list of fresh score matrices, an index standing for the earlier matrix."""
    out: list[Tensor] = []
    for item in scores:
        out.append(out[item] if isinstance(item, int) else item)
    return out


def user_ids(users: Tensor) -> np.ndarray:
    """User indices as a NumPy array (the sparse products run on the CPU, with SciPy)."""
    return users.detach().to("cpu", torch.long).numpy()


def option_grid(options: type[ModelOptions], name: str) -> tuple[Any, ...]:
    """The grid declared on option ``name`` of an options dataclass."""
    return tuple(next(option for option in fields(options) if option.name == name).metadata["grid"])


def resolve_setting(model: Recommender, search: OptionsT, setting: Mapping[str, Any], rank: int) -> OptionsT:
    """``search`` with its searched options fixed to ``setting`` (a grid value each), ``k`` capped at
    the ``rank`` computed: the concrete options of one setting."""
    searched = search.searched()
    if set(setting) != set(searched):
        raise GraphrecError(f"model {model.name!r}: a setting must fix exactly the options still to choose "
                            f"({', '.join(searched) or 'none'}), got {', '.join(setting) or 'none'}")
    for name, value in setting.items():
        if value not in searched[name]:
            raise ConfigError(f"{value!r} is not in the grid {searched[name]}", field=name)
    options = replace(search, **setting)
    if "k" in setting and getattr(options, "k", 0) > rank:
        options = replace(options, **{"k": rank})
    return options


def check_chosen(model: Recommender, options: ModelOptions) -> None:
    """A :class:`~graphrec.errors.GraphrecError` while ``options`` still leave something to choose."""
    left = options.searched()
    if left:
        raise GraphrecError(f"model {model.name!r} has options still to choose on the validation split "
                            f"({', '.join(left)}): select(setting) one of options.settings() first, or give "
                            f"them values")


# ------------------------------------------------------------------------------------------ the model
class GFCF(Recommender):
    """GF-CF over the training graph (see the module docstring). ``options`` are the concrete options it
    scores with: those given, with the searched ones filled in by :meth:`select`.

    Scores are not one inner product of fixed user and item vectors of a useful size (the linear term
    would need an :math:`M`-dimensional user vector, :math:`r_u \\tilde{R}^\\top`), so the model has no
    embeddings and scores users through :meth:`scorer`. It keeps nothing in its ``state_dict``:
    :meth:`from_dataset` rebuilds everything from the training split (the SVD seeded)."""

    name = "gfcf"
    Options = GFCFOptions
    trained_by_gradient = False
    has_embeddings = False
    selects_on_validation = True
    linear_in_history = True
    scores_new_users = True

    def __init__(self, graph: ItemGraph, basis: LowPassBasis, options: GFCFOptions) -> None:
        super().__init__(graph.num_users, graph.num_items)
        self.graph = graph
        self.basis = basis
        self.search = options if options.k is None or options.k <= basis.rank else replace(options, k=basis.rank)
        self.options = self.search
        self.pseudo_histories: PseudoHistories | None = None

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: GFCFOptions, seed: int = 0) -> GFCF:
        """GF-CF of the dataset's training interactions (only them)."""
        graph = ItemGraph(dataset.csr("train"), options.item_graph, options.item_graph_budget_mb)
        rank = graph.rank_for(options.k, option_grid(GFCFOptions, "k"))
        basis = LowPassBasis.solve(graph, rank, options.solver, options.oversampling, options.power_iterations,
                                   seed)
        return cls(graph, basis, options).with_cold_users(dataset, options.cold_user_neighbours)

    def with_cold_users(self, dataset: Dataset, neighbours: int) -> Self:
        """This filter, scoring ``dataset``'s cold users from their pseudo-histories (see the module
        docstring); call it once the filter's own structures are built from the training rows."""
        self.pseudo_histories = PseudoHistories(dataset, neighbours)
        self.graph.cold_rows = self.pseudo_histories.cold_rows()
        return self

    def reset_parameters(self) -> None:
        """Nothing to learn: the filters are fixed by the training graph."""

    def setting_scorer(self, settings: Sequence[Mapping[str, Any]]) -> Callable[[Tensor], Iterable[Tensor | int]]:
        """Settings that come to the same options (``alpha = 0`` for every ``k``, or ``k`` capped) are
        scored once: the later ones give the index of the first."""
        chosen = [resolve_setting(self, self.search, setting, self.basis.rank) for setting in settings]
        return lambda users: on_device(self._setting_scores(self.graph.rows(user_ids(users)), chosen), users.device)

    def select(self, setting: Mapping[str, Any]) -> None:
        self.options = resolve_setting(self, self.search, setting, self.basis.rank)

    @torch.no_grad()
    def scorer(self) -> ScoreFn:
        check_chosen(self, self.options)
        options = [self.options]
        return lambda users: chunked(lambda ids: self._scores(ids, options)[0], users, self.num_items)

    @torch.no_grad()
    def score_histories(self, rows: sp.csr_matrix) -> Tensor:
        return self._filter(self.graph.history_rows(rows))

    @torch.no_grad()
    def score_new_users(self, attributes: Sequence[Attributes]) -> Tensor:
        """Scores ``[B, num_items]`` of new users given by attribute values, through their pseudo-histories."""
        if self.pseudo_histories is None:
            raise GraphrecError(f"model {self.name!r} was built without user features")
        return self._filter(self.pseudo_histories.of_new_users(attributes))

    def _filter(self, rows: sp.csr_matrix) -> Tensor:
        """The chosen filter of any (pseudo-)history rows."""
        check_chosen(self, self.options)
        return self._row_scores(rows, [self.options])[0]

    def _scores(self, users: np.ndarray, settings: Sequence[GFCFOptions]) -> list[Tensor]:
        return self._row_scores(self.graph.rows(users), settings)

    def _row_scores(self, rows: sp.csr_matrix, settings: Sequence[GFCFOptions]) -> list[Tensor]:
        """The scores of ``rows`` under each of ``settings``: a list (settings with the same options
        share a tensor)."""
        return shared_list(self._setting_scores(rows, settings, fresh=True))

    def _setting_scores(self, rows: sp.csr_matrix, settings: Sequence[GFCFOptions],
                        fresh: bool = False) -> Iterator[Tensor | int]:
        """The scores ``[B, N]`` of ``rows`` under each of ``settings`` in turn, or, for a setting with
        the options of an earlier one, that one's index. Unless ``fresh``, the settings are written
        into one buffer, which the next overwrites (:func:`weighted_sums`): a search then holds the
        linear term, one ideal term per ``k`` and that buffer, however many ``alpha`` it tries."""
        linear = self.graph.linear(rows)
        chosen = [(alpha, k if alpha != 0 else 0) for alpha, k in map(_alpha_k, settings)]  # alpha = 0: no k
        ks = sorted({k for alpha, k in chosen if alpha != 0})
        if len(set(chosen)) == 1:  # one setting: its ideal term goes into the linear scores in place
            alpha, k = chosen[0]
            yield linear if alpha == 0 else self.basis.expand(self.basis.project(rows), 0, k, out=linear, alpha=alpha)
            yield from itertools.repeat(0, len(chosen) - 1)
            return
        ideals: dict[int, Tensor] = {}
        if ks:
            z, running, done = self.basis.project(rows), torch.zeros_like(linear), 0
            for k in ks:  # the ideal term of k: the running sum of its first k vectors
                running = self.basis.expand(z, done, k, out=running)
                ideals[k], done = running if k == ks[-1] else running.clone(), k
        yield from weighted_sums(chosen, [(linear, ideals.get(k), alpha) for alpha, k in chosen], fresh)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {filter_repr(self.graph, self.basis)}"


def filter_repr(graph: ItemGraph, basis: LowPassBasis) -> str:
    """What a low-pass filter's ``repr`` says of its graph: the rank and how the item graph is held."""
    return f"rank={basis.rank}, item_graph={'materialised' if graph.materialised else 'on the fly'}"


def _alpha_k(options: GFCFOptions) -> tuple[float, int]:
    assert options.alpha is not None and options.k is not None  # resolved: select or resolve_setting
    return float(options.alpha), int(options.k)

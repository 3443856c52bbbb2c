r"""BSPM: a blurring ODE and a sharpening ODE on the normalised item–item graph.

From `"Blurring-Sharpening Process Models for Collaborative Filtering"
<https://arxiv.org/abs/2211.09324>`_ (Choi et al., SIGIR 2023). With :math:`\tilde{P}`, :math:`D_I` and
:math:`V_k` as in :mod:`graphrec.models.gfcf`, user :math:`u`'s training row :math:`r_u` is blurred by
the heat equation on the item–item graph, the ideal low-pass term
:math:`\ell_u = r_u D_I^{-1/2} V_k V_k^\top D_I^{1/2}` is added with weight :math:`\beta`, and the
result is sharpened by the reverse process:

.. math::
    \frac{dx}{dt} = x (\tilde{P} - I), \quad x(0) = r_u, \quad t \in [0, T_b];
    \qquad
    \frac{dy}{dt} = -y \tilde{P}, \quad y(0) = x(T_b) + \beta \ell_u, \quad t \in [0, T_s];
    \qquad s_u = y(T_s).

With ``final_sharpening`` off, the ideal term is added after sharpening instead:
:math:`y(0) = x(T_b)` and :math:`s_u = y(T_s) + \beta \ell_u`. Each ODE is solved with :math:`K`
fixed steps of Euler or RK4 of size :math:`h = T / K` (``K_b``, ``solver_b``; ``K_s``, ``solver_s``), as
the authors' code does with torchdiffeq's fixed-grid solvers; one Euler step of blurring with
:math:`T_b = 1` is exactly GF-CF's linear filter :math:`r_u \tilde{P}`. The setting published for
Gowalla is :math:`T_b = 1` (one Euler step), RK4 sharpening with :math:`K_s = 1`, :math:`T_s = 2.5`,
:math:`\beta = 0.2`, :math:`k = 448` and final sharpening.

**The steps as polynomials.** Both ODEs are linear and autonomous, :math:`x' = xA`, so a fixed step
is a polynomial in :math:`A`: an Euler step maps :math:`x` to :math:`x (I + hA)` and an RK4 step to
:math:`x \sum_{j=0}^{4} (hA)^j / j!` (any four-stage RK method of order 4 gives that on a linear
problem: the classical one and torchdiffeq's 3/8 rule alike). :math:`K` steps give
:math:`x\, p(hA)^K`, with :math:`p` the step's polynomial. Hence

.. math::
    s_u = r_u\, \sigma(\tilde{P})\, b(\tilde{P}) + \beta\, z_u\, W \sigma(\tilde{P}), \qquad
    z_u = r_u D_I^{-1/2} V_k, \quad W = V_k^\top D_I^{1/2},

with :math:`b(\lambda) = p_b(h_b(\lambda - 1))^{K_b}` and :math:`\sigma(\lambda) = p_s(-h_s \lambda)^{K_s}`
(without final sharpening the last factor :math:`\sigma(\tilde{P})` of the ideal term goes). Scoring
computes the sequence :math:`r_u, r_u \tilde{P}, r_u \tilde{P}^2, \dots` once, as many products as the
steps take (5 in the published setting: one for blurring, four for the RK4 step), and combines it with
the coefficients of :math:`\sigma b`; :math:`W \sigma(\tilde{P})` (:math:`k \times N`) is sharpened once,
when the model is built. Every setting of the searched :math:`T_s` and :math:`\beta` then shares the
products: one sequence serves every :math:`T_s`, one projection :math:`z_u` every :math:`\beta`. The
coefficients of :math:`\sigma` grow like :math:`e^{T_s}` in magnitude while :math:`y` decays, so
float32 scores keep their precision only for moderate sharpening times (:data:`MAX_COEFFICIENTS`).

Memory and the item–item graph are as in :mod:`graphrec.models.gfcf`; the products after the first
(of the sparse :math:`r_u`) act on dense signals and take the factored route
:math:`(x \tilde{R}^\top) \tilde{R}`. Scoring holds a few dense :math:`B \times N` buffers, plus two per
searched :math:`T_s` value (its base and its ideal term); the settings share one more.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from numpy.polynomial import Polynomial
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError
from graphrec.models.base import Recommender, ScoreFn
from graphrec.models.gfcf import (
    ItemGraph,
    LowPassBasis,
    LowPassOptions,
    check_choice,
    check_chosen,
    check_number,
    chunked,
    filter_repr,
    grid_metadata,
    on_device,
    resolve_setting,
    shared_list,
    user_ids,
    weighted_sums,
)

#: ODE solvers: fixed-step Euler and classical fourth-order Runge–Kutta.
ODE_SOLVERS: tuple[str, ...] = ("euler", "rk4")
#: One step of each solver on :math:`x' = xA` is :math:`x\,p(hA)`: the coefficients of :math:`p`, lowest first.
STEP_POLYNOMIALS: dict[str, tuple[float, ...]] = {"euler": (1.0, 1.0), "rk4": (1.0, 1.0, 1 / 2, 1 / 6, 1 / 24)}
#: The largest sum of absolute coefficients of the scoring polynomial (about :math:`e^{T_s}`): float32
#: rounding of the scores then stays below about 1e-3 of the signal.
MAX_COEFFICIENTS = 1e4
#: Users whose ODE steps run together: torch's sparse-dense products are fastest on narrow signals.
PROPAGATE_USERS = 128
#: Singular vectors of the ideal low-pass filter when ``k`` is not given (the published setting).
DEFAULT_K = 448


def ode_polynomial(method: str, time: float, steps: int, scale: float, shift: float) -> np.ndarray:
    r"""Coefficients (lowest first), as a polynomial in :math:`\lambda`, of ``steps`` fixed steps of
    ``method`` over ``time`` on :math:`x' = x A` with :math:`A = \text{scale}\,\tilde{P} + \text{shift}\,I`:
    :math:`x(T) = \sum_j c_j\, x \tilde{P}^j`."""
    h = time / steps
    step = Polynomial(STEP_POLYNOMIALS[method])(Polynomial([h * shift, h * scale]))
    return np.polynomial.polynomial.polypow(step.coef, steps, maxpower=max(steps, 16))


@dataclass(frozen=True)
class BSPMOptions(LowPassOptions):
    T_b: float = field(default=1.0, metadata={"help": "blurring time T_b (0: no blurring)",
                                              "space": {"low": 0.0, "high": 2.0}})
    K_b: int = field(default=1, metadata={"help": "blurring steps (step size T_b / K_b)"})
    solver_b: str = field(default="euler", metadata={"help": "blurring ODE solver: euler or rk4"})
    T_s: float | None = field(default=None, metadata=grid_metadata("sharpening time T_s", (1.5, 2.0, 2.5, 3.0)))
    K_s: int = field(default=1, metadata={"help": "sharpening steps (step size T_s / K_s)"})
    solver_s: str = field(default="rk4", metadata={"help": "sharpening ODE solver: euler or rk4"})
    beta: float | None = field(default=None, metadata=grid_metadata("weight β of the ideal low-pass term",
                                                                    (0.1, 0.2, 0.3)))
    k: int | None = field(default=None, metadata={
        "help": f"singular vectors of the ideal low-pass filter, fewer than the items and users (default: "
                f"{DEFAULT_K}, or as many as the training graph has)"})
    final_sharpening: bool = field(default=True, metadata={
        "help": "add the ideal low-pass term before sharpening (on) or after it (off)"})

    def __post_init__(self) -> None:
        check_number(self, "T_b")
        check_number(self, "T_s")
        check_number(self, "K_b", minimum=1, integer=True)
        check_number(self, "K_s", minimum=1, integer=True)
        check_choice(self, "solver_b", ODE_SOLVERS)
        check_choice(self, "solver_s", ODE_SOLVERS)
        check_number(self, "beta")
        check_number(self, "k", minimum=0, integer=True, strict=True)
        if not isinstance(self.final_sharpening, bool):
            raise ConfigError(f"must be true or false, got {self.final_sharpening!r}", field="final_sharpening")
        super().__post_init__()
        for time in (self.T_s,) if self.T_s is not None else self.searched()["T_s"]:
            size = np.abs(self.score_polynomial(time)).sum()
            if size > MAX_COEFFICIENTS:
                name = "T_b" if np.abs(self.blur_polynomial()).sum() > MAX_COEFFICIENTS else "T_s"
                raise ConfigError(f"blurring for T_b={self.T_b:g} and sharpening for T_s={time:g} make a polynomial "
                                  f"whose coefficients sum to {size:.3g} in magnitude, more than float32 scores "
                                  f"can take ({MAX_COEFFICIENTS:g}); choose shorter times", field=name)

    def blur_polynomial(self) -> np.ndarray:
        r"""Coefficients of :math:`b`: the blurring ODE's solution is :math:`\sum_j b_j\, r \tilde{P}^j`."""
        return ode_polynomial(self.solver_b, self.T_b, self.K_b, scale=1.0, shift=-1.0)

    def sharpen_polynomial(self, time: float) -> np.ndarray:
        r"""Coefficients of :math:`\sigma` for sharpening time ``time``."""
        return ode_polynomial(self.solver_s, time, self.K_s, scale=-1.0, shift=0.0)

    def score_polynomial(self, time: float) -> np.ndarray:
        r"""Coefficients of :math:`\sigma b`, blurring then sharpening for ``time``."""
        return np.polynomial.polynomial.polymul(self.sharpen_polynomial(time), self.blur_polynomial())


class BSPM(Recommender):
    """BSPM over the training graph (see the module docstring). ``options`` are the concrete options it
    scores with: those given (``k`` resolved), with the searched ones filled in by :meth:`select`.

    Like :class:`~graphrec.models.gfcf.GFCF`, it has no embeddings (scores are polynomials of the
    item–item graph applied to each user's row) and keeps nothing in its ``state_dict``."""

    name = "bspm"
    Options = BSPMOptions
    trained_by_gradient = False
    has_embeddings = False
    selects_on_validation = True
    linear_in_history = True

    def __init__(self, graph: ItemGraph, basis: LowPassBasis, options: BSPMOptions) -> None:
        super().__init__(graph.num_users, graph.num_items)
        self.graph = graph
        self.basis = basis
        self.search = replace(options, k=basis.rank)
        self.options = self.search
        self._sharpened: dict[float, Tensor] = {}

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: BSPMOptions, seed: int = 0) -> BSPM:
        """BSPM of the dataset's training interactions (only them)."""
        graph = ItemGraph(dataset.csr("train"), options.item_graph, options.item_graph_budget_mb)
        rank = graph.rank_for(options.k, (DEFAULT_K,))
        basis = LowPassBasis.solve(graph, rank, options.solver, options.oversampling, options.power_iterations,
                                   seed)
        return cls(graph, basis, options)

    def reset_parameters(self) -> None:
        """Nothing to learn: the filters are fixed by the training graph."""

    def setting_scorer(self, settings: Sequence[Mapping[str, Any]]) -> Callable[[Tensor], Iterable[Tensor | int]]:
        """Settings that come to the same options are scored once: the later ones give the index of the first."""
        chosen = [resolve_setting(self, self.search, setting, self.basis.rank) for setting in settings]
        self._sharpen_ideal({_setting(options)[0] for options in chosen})
        return lambda users: on_device(self._setting_scores(self.graph.rows(user_ids(users)), chosen), users.device)

    def select(self, setting: Mapping[str, Any]) -> None:
        self.options = resolve_setting(self, self.search, setting, self.basis.rank)
        time = _setting(self.options)[0]
        self._sharpened = {t: right for t, right in self._sharpened.items() if t == time}

    @torch.no_grad()
    def scorer(self) -> ScoreFn:
        check_chosen(self, self.options)
        options = [self.options]
        self._sharpen_ideal({_setting(self.options)[0]})
        return lambda users: chunked(lambda ids: self._scores(ids, options)[0], users, self.num_items)

    @torch.no_grad()
    def _sharpen_ideal(self, times: set[float]) -> None:
        r""":math:`W \sigma(\tilde{P})` for each sharpening time in ``times`` not yet computed (only with final
        sharpening), from one sequence :math:`W, W \tilde{P}, \dots`."""
        missing = sorted(times - set(self._sharpened))
        if not missing or not self.search.final_sharpening:
            return
        polynomials = {time: self.search.sharpen_polynomial(time) for time in missing}
        signal = self.basis.right
        sums = {time: signal * float(c[0]) for time, c in polynomials.items()}
        for power in range(1, max(len(c) for c in polynomials.values())):
            signal = self.graph.propagate(signal)
            for time, c in polynomials.items():
                if power < len(c):
                    sums[time].add_(signal, alpha=float(c[power]))
        self._sharpened.update(sums)

    @torch.no_grad()
    def score_histories(self, rows: sp.csr_matrix) -> Tensor:
        check_chosen(self, self.options)
        self._sharpen_ideal({_setting(self.options)[0]})
        return self._row_scores(self.graph.history_rows(rows), [self.options])[0]

    def _scores(self, users: np.ndarray, settings: Sequence[BSPMOptions]) -> list[Tensor]:
        return self._row_scores(self.graph.rows(users), settings)

    def _row_scores(self, rows: sp.csr_matrix, settings: Sequence[BSPMOptions]) -> list[Tensor]:
        """The scores of ``rows`` under each of ``settings``: a list (settings with the same options
        share a tensor)."""
        return shared_list(self._setting_scores(rows, settings, fresh=True))

    def _setting_scores(self, rows: sp.csr_matrix, settings: Sequence[BSPMOptions],
                        fresh: bool = False) -> Iterator[Tensor | int]:
        """The scores ``[B, N]`` of ``rows`` under each of ``settings`` in turn, or, for a setting with
        the options of an earlier one, that one's index; unless ``fresh``, written into one buffer that
        the next setting overwrites (:func:`~graphrec.models.gfcf.weighted_sums`)."""
        chosen = [_setting(options) for options in settings]
        bases = self._bases(rows, {time: self.search.score_polynomial(time) for time, _ in chosen})
        z = self.basis.project(rows)
        right = {time: self._sharpened[time] if self.search.final_sharpening else self.basis.right for time in bases}
        if len(set(chosen)) == 1:  # one setting: its ideal term goes into its base in place
            time, beta = chosen[0]
            yield bases[time].addmm_(z, right[time], alpha=beta) if beta != 0 else bases[time]
            yield from itertools.repeat(0, len(chosen) - 1)
            return
        ideals = {time: z @ right[time] for time in bases if any(t == time and beta != 0 for t, beta in chosen)}
        yield from weighted_sums(chosen, [(bases[time], ideals.get(time), beta) for time, beta in chosen], fresh)

    def _bases(self, rows: sp.csr_matrix, polynomials: Mapping[float, np.ndarray]) -> dict[float, Tensor]:
        r""":math:`r\,\sigma(\tilde{P})\, b(\tilde{P})` ``[B, N]`` of ``rows`` for each sharpening time's
        polynomial, from one sequence :math:`r, r \tilde{P}, r \tilde{P}^2, \dots` (one product each), held
        item-major (:meth:`~graphrec.models.gfcf.ItemGraph.propagate_columns`) a few users at a time."""
        degree = max(len(c) for c in polynomials.values()) - 1
        bases = {time: torch.empty(rows.shape[0], self.num_items) for time in polynomials}
        for start in range(0, rows.shape[0], PROPAGATE_USERS):
            block = rows[start:start + PROPAGATE_USERS]
            sums = {time: torch.zeros(self.num_items, block.shape[0]) for time in polynomials}
            signal = torch.empty(0)
            for power in range(degree + 1):
                terms = [(time, float(c[power])) for time, c in polynomials.items() if power < len(c) and c[power] != 0]
                if power == 0:
                    signal = torch.from_numpy(block.toarray().T) if terms else signal
                elif power == 1:
                    signal = self.graph.linear(block).t().contiguous()
                else:
                    signal = self.graph.propagate_columns(signal)
                for time, coefficient in terms:
                    sums[time].add_(signal, alpha=coefficient)
            for time, total in sums.items():
                bases[time][start:start + PROPAGATE_USERS] = total.t()
        return bases

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {filter_repr(self.graph, self.basis)}"


def _setting(options: BSPMOptions) -> tuple[float, float]:
    """``(T_s, beta)`` of resolved options: the searched ones."""
    assert options.T_s is not None and options.beta is not None  # resolved: select or resolve_setting
    return float(options.T_s), float(options.beta)


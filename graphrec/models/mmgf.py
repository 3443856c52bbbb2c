r"""A multimodal graph filter: GF-CF's item–item filters, a content map fitted in closed form, and
one content graph per modality.

GF-CF (:mod:`graphrec.models.gfcf`; Shen et al., CIKM 2021) filters each user's row :math:`r_u` over
the item–item graph of co-interactions, :math:`\tilde{P} = \tilde{R}^\top \tilde{R}`. An item nobody
interacted with in training has an empty column there and can never be recommended. Two content terms
reach every item with features, cold ones included:

* **A content map.** With :math:`X` the items' features (each modality's rows L2-normalised, the
  modalities side by side, zeros where one is missing) and :math:`X_w` those of the items with training
  interactions, the item–item kernel :math:`X W X^\top` closest to the co-interaction graph in the
  ridge sense,

  .. math::
      W_\lambda = \arg\min_W \|X_w W X_w^\top - \tilde{P}_{ww}\|_F^2 + \text{ridge}
      = G^{-1} X_w^\top \tilde{P}_{ww} X_w G^{-1}, \qquad G = X_w^\top X_w + \lambda I,

  maps content into the collaborative space, as CB2CF and LinMap do with a learnt map, here in closed
  form (one eigendecomposition of :math:`X_w^\top X_w` gives every :math:`\lambda`). It costs
  :math:`O(d^2)` memory for :math:`d` feature columns.
* **Content graphs**, as LATTICE and FREEDOM add them: per modality :math:`m`, :math:`\tilde{A}_m`, the
  symmetric-normalised :math:`k`-nearest-neighbour cosine graph of the pretrained features
  (:func:`graphrec.graph.content.content_graph`).

The scores are

.. math::
    s_u = (1 - \beta) \big( r_u \tilde{P} + \alpha\, r_u D_I^{-1/2} V_k V_k^\top D_I^{1/2} \big)
          + \beta\, c_\lambda\, r_u X W_\lambda X^\top + \sum_m w_m\, c_m\, r_u \tilde{A}_m,

.. math::
    c_\lambda = \frac{\|R_S \tilde{P}\|_F}{\|R_S X W_\lambda X^\top\|_F}, \qquad
    c_m = \frac{\mathbf{1}^\top R\, \tilde{P}\, \mathbf{1}}{\mathbf{1}^\top R\, \tilde{A}_m \mathbf{1}},

where :math:`R_S` are the training rows of the first :data:`SCALE_USERS` users with interactions. The
constants put each content term on the scale of the collaborative one, so that the share :math:`\beta`
and the weights :math:`w_m` mean the same on any dataset (``beta = 1``: content alone).

Nothing is learnt by gradient descent. The options left ``None`` are chosen on the validation split,
in stages (:meth:`MultimodalGraphFilter.selection_stage`): GF-CF's :math:`\alpha` and :math:`k`
without content; then :math:`\lambda` and :math:`\beta` over the chosen filter; then the graph weights
:math:`w_m`, every combination of ``weight_grid`` when that makes at most
:data:`JOINT_WEIGHT_SETTINGS` settings, else one modality at a time. Warm validation decides, so the
options favour warm items; a cold item's rank among cold items depends only on the content terms.

A cold *user* (no training interaction) is filtered from a pseudo-history, the mean training row of
its most similar warm users by user features (``cold_user_neighbours``, as in
:class:`~graphrec.models.gfcf.GFCF`): every term above is linear in the row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError, GraphrecError
from graphrec.graph.content import content_graphs
from graphrec.graph.hetero import chosen_modalities
from graphrec.models.base import ModelOptions, ScoreFn
from graphrec.models.gfcf import (
    GFCF,
    GFCFOptions,
    ItemGraph,
    LowPassBasis,
    check_chosen,
    check_number,
    chunked,
    grid_metadata,
    option_grid,
    resolve_setting,
    user_ids,
)

#: The most weight settings searched jointly; beyond it, one modality at a time.
JOINT_WEIGHT_SETTINGS = 64
#: Training users whose rows set the content map's scale :math:`c_\lambda`.
SCALE_USERS = 2048


@dataclass(frozen=True)
class MultimodalGraphFilterOptions(GFCFOptions):
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})
    map_ridge: float | None = field(default=None, metadata=grid_metadata(
        "content map: ridge λ of the least-squares map from features to the item–item graph", (0.01, 0.1, 1.0, 10.0)))
    map_share: float | None = field(default=None, metadata=grid_metadata(
        "content map: its share β of the score (1: content alone)", (0.0, 0.25, 0.5, 0.75, 1.0)))
    neighbours: int = field(default=10, metadata={"help": "content graph: nearest neighbours of each item by the "
                                                          "cosine of its features"})
    weighted_edges: bool = field(default=False, metadata={
        "help": "content graph: weight edges by their cosine instead of 1"})
    modality_weights: tuple[str, ...] | None = field(default=None, metadata={
        "help": "content weight of each modality, as name=weight, comma-separated; a modality not named "
                "weighs 0 (default: chosen on validation from weight_grid)"})
    weight_grid: tuple[float, ...] = field(default=(0.0, 0.03, 0.1, 0.3, 1.0, 3.0), metadata={
        "help": "content weights tried per modality on validation, comma-separated"})

    def __post_init__(self) -> None:
        check_number(self, "map_ridge", strict=True)
        check_number(self, "map_share")
        if self.map_share is not None and self.map_share > 1:
            raise ConfigError(f"must be at most 1, got {self.map_share!r}", field="map_share")
        if isinstance(self.neighbours, bool) or not isinstance(self.neighbours, (int, np.integer)) \
                or self.neighbours < 1:
            raise ConfigError(f"must be a positive integer, got {self.neighbours!r}", field="neighbours")
        object.__setattr__(self, "weight_grid", tuple(_weight(value, "weight_grid") for value in self.weight_grid))
        if not self.weight_grid:
            raise ConfigError("needs at least one weight", field="weight_grid")
        if self.modality_weights is not None:
            object.__setattr__(self, "modality_weights", format_weights(parse_weights(self.modality_weights)))
        super().__post_init__()


def _weight(value: object, name: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]  # strings from the command line, numbers from code
    except (TypeError, ValueError):
        raise ConfigError(f"weights must be numbers, got {value!r}", field=name) from None
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ConfigError(f"weights must be finite and >= 0, got {value!r}", field=name)
    return number


def parse_weights(entries: Sequence[str]) -> dict[str, float]:
    """``("text=0.3", "image=1")`` as ``{"text": 0.3, "image": 1.0}``."""
    weights: dict[str, float] = {}
    for entry in entries:
        name, equals, value = str(entry).partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"expected name=weight, got {entry!r}", field="modality_weights")
        if name in weights:
            raise ConfigError(f"modality {name!r} is given twice", field="modality_weights")
        weights[name] = _weight(value, "modality_weights")
    return weights


def format_weights(weights: Mapping[str, float]) -> tuple[str, ...]:
    """The inverse of :func:`parse_weights`."""
    return tuple(f"{name}={weight:g}" for name, weight in weights.items())


class ContentMap:
    r"""The content map :math:`r \mapsto c_\lambda\, r X W_\lambda X^\top` for each ridge :math:`\lambda` of
    ``ridges`` (see the module docstring), from ``features`` ``[N, d]``."""

    def __init__(self, graph: ItemGraph, features: np.ndarray, ridges: Sequence[float]) -> None:
        features = np.asarray(features, dtype=np.float64)
        warm = features[graph.item_degree > 0]
        eigenvalues, eigenvectors = np.linalg.eigh(warm.T @ warm)
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        # X^T P~ X, with P~ X as (X^T R~^T) R~: cold items' rows of P~ X are zero
        target = features.T @ (graph.norm_t @ (graph.norm @ features))
        rotated = eigenvectors.T @ target @ eigenvectors
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        self.features_t = self.features.t().contiguous()
        self.maps: dict[float, Tensor] = {}
        for ridge in dict.fromkeys(float(value) for value in ridges):
            inverse = 1.0 / (eigenvalues + ridge)
            solved = eigenvectors @ (inverse[:, None] * rotated * inverse[None, :]) @ eigenvectors.T
            self.maps[ridge] = torch.from_numpy(np.ascontiguousarray(solved, dtype=np.float32))
        sample = np.flatnonzero(np.diff(graph.norm.indptr) > 0)[:SCALE_USERS]
        rows = graph.rows(sample)
        linear = float(torch.linalg.norm(graph.linear(rows))) if len(sample) else 0.0
        projected = self.project(rows)
        self.scale = {}
        for ridge in self.maps:
            mapped = float(torch.linalg.norm(self.expand(projected, ridge, scale=False))) if len(sample) else 0.0
            self.scale[ridge] = linear / mapped if mapped > 0 and linear > 0 else 1.0

    def project(self, rows: sp.csr_matrix) -> Tensor:
        r""":math:`r X` of sparse ``rows`` ``[B, N]``: ``[B, d]``, shared by every :math:`\lambda`."""
        return torch.from_numpy(np.asarray(rows @ self.features.numpy(), dtype=np.float32))

    def expand(self, projected: Tensor, ridge: float, scale: bool = True) -> Tensor:
        r""":math:`c_\lambda (r X) W_\lambda X^\top` (``[B, N]``) of ``projected = project(rows)``."""
        mapped = (projected @ self.maps[ridge]) @ self.features_t
        return mapped.mul_(self.scale[ridge]) if scale else mapped


def side_by_side(dataset: Dataset, modalities: Sequence[str]) -> np.ndarray:
    """The chosen modalities' features, each row L2-normalised (zeros where an item lacks it), side by side."""
    blocks = []
    for name in modalities:
        values = dataset.features[name].values.astype(np.float64)
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        blocks.append(np.divide(values, norms, out=np.zeros_like(values), where=norms > 0))
    return np.concatenate(blocks, axis=1)


class MultimodalGraphFilter(GFCF):
    """GF-CF with a content map and a content graph per modality (see the module docstring). Like GF-CF it
    has no embeddings and keeps nothing in its ``state_dict``: :meth:`from_dataset` rebuilds it."""

    name = "mmgf"
    Options = MultimodalGraphFilterOptions
    reads_features = True

    def __init__(self, graph: ItemGraph, basis: LowPassBasis, content_map: ContentMap,
                 content: Mapping[str, sp.csr_matrix], options: MultimodalGraphFilterOptions) -> None:
        super().__init__(graph, basis, options)
        self.content_map = content_map
        self.content = dict(content)
        self.content_scale = {name: _content_scale(graph, matrix) for name, matrix in self.content.items()}
        self.options: MultimodalGraphFilterOptions = self.options
        self.search: MultimodalGraphFilterOptions = self.search
        self.weights = self._weights(options.modality_weights)

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: GFCFOptions, seed: int = 0) -> MultimodalGraphFilter:
        """The filter of the dataset's training interactions and the content graphs of all its items."""
        assert isinstance(options, MultimodalGraphFilterOptions)
        modalities = chosen_modalities(dataset, options.modalities)
        if not modalities:
            raise GraphrecError(f"model 'mmgf' needs modality features, and dataset {dataset.name!r} has none: "
                                f"encode some first, or use gfcf")
        unknown = sorted(set(modalities) - set(dataset.features))
        if unknown:
            raise ConfigError(f"the dataset has no modality {', '.join(map(repr, unknown))} (it has "
                              f"{', '.join(dataset.modalities)})", field="modalities")
        graph = ItemGraph(dataset.csr("train"), options.item_graph, options.item_graph_budget_mb)
        rank = graph.rank_for(options.k, option_grid(GFCFOptions, "k"))
        basis = LowPassBasis.solve(graph, rank, options.solver, options.oversampling, options.power_iterations,
                                   seed)
        ridges = option_grid(MultimodalGraphFilterOptions, "map_ridge") if options.map_ridge is None \
            else (options.map_ridge,)
        content_map = ContentMap(graph, side_by_side(dataset, modalities), ridges)
        content = content_graphs(dataset, options.neighbours, modalities, weighted=options.weighted_edges)
        return cls(graph, basis, content_map, content, options).with_cold_users(dataset, options.cold_user_neighbours)

    def _weights(self, entries: tuple[str, ...] | None) -> dict[str, float] | None:
        if entries is None:
            return None
        weights = parse_weights(entries)
        unknown = sorted(set(weights) - set(self.content))
        if unknown:
            raise ConfigError(f"no modality {', '.join(map(repr, unknown))} among those read "
                              f"({', '.join(self.content)})", field="modality_weights")
        return {name: weights.get(name, 0.0) for name in self.content}

    # ------------------------------------------------------------------------------------ selection
    def selection_stage(self, options: ModelOptions, stage: int,
                        best: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """Stage by stage (see the module docstring): GF-CF's searched options without content; the content
        map's over them; the graph weights, jointly or one modality at a time."""
        assert isinstance(options, MultimodalGraphFilterOptions)
        searched = options.searched()
        filters = {name: grid for name, grid in searched.items() if name in ("alpha", "k")}
        mapping = {name: grid for name, grid in searched.items() if name in ("map_ridge", "map_share")}
        names, grid = list(self.content), options.weight_grid
        weights_searched = options.modality_weights is None
        stages: list[Callable[[dict[str, Any]], list[dict[str, Any]]]] = []
        without = {**{name: values[0] for name, values in mapping.items()},  # the first share is 0: no map
                   **({"map_share": 0.0} if "map_share" in mapping else {}),
                   **({"modality_weights": format_weights(dict.fromkeys(names, 0.0))} if weights_searched else {})}
        stages.append(lambda _: [{**setting, **without} for setting in _product(filters)])
        if mapping:
            stages.append(lambda best_: [{**best_, **setting} for setting in _product(mapping)])
        if weights_searched:
            if len(grid) ** len(names) <= JOINT_WEIGHT_SETTINGS:
                stages.append(lambda best_: [
                    {**best_, "modality_weights": format_weights(dict(zip(names, values, strict=True)))}
                    for values in itertools.product(grid, repeat=len(names))])
            else:
                for name in names:
                    stages.append(lambda best_, name=name: [  # type: ignore[misc]
                        {**best_, "modality_weights": format_weights(
                            {**parse_weights(best_["modality_weights"]), name: weight})} for weight in grid])
        return stages[stage](dict(best)) if stage < len(stages) else None

    def _resolve(self, setting: Mapping[str, Any]) -> tuple[MultimodalGraphFilterOptions, dict[str, float]]:
        setting = dict(setting)
        entries = setting.pop("modality_weights", self.search.modality_weights)
        options = resolve_setting(self, self.search, setting, self.basis.rank)
        weights = self._weights(entries)
        if weights is None:
            raise GraphrecError("model 'mmgf' has options still to choose on the validation split "
                                "(modality_weights): select a setting first, or give them values")
        return replace(options, modality_weights=format_weights(weights)), weights

    def setting_scorer(self, settings: Sequence[Mapping[str, Any]]) -> Callable[[Tensor], Iterable[Tensor | int]]:
        chosen = [self._resolve(setting) for setting in settings]
        return lambda users: [scores.to(users.device) for scores in self._row_scores_mm(self.graph.rows(
            user_ids(users)), chosen)]

    def select(self, setting: Mapping[str, Any]) -> None:
        self.options, self.weights = self._resolve(setting)

    # ------------------------------------------------------------------------------------ scoring
    @torch.no_grad()
    def scorer(self) -> ScoreFn:
        chosen = [self._chosen()]
        return lambda users: chunked(lambda ids: self._row_scores_mm(self.graph.rows(ids), chosen)[0], users,
                                     self.num_items)

    def _filter(self, rows: sp.csr_matrix) -> Tensor:
        return self._row_scores_mm(rows, [self._chosen()])[0]

    def _chosen(self) -> tuple[MultimodalGraphFilterOptions, dict[str, float]]:
        check_chosen(self, self.options)
        if self.weights is None:
            raise GraphrecError("model 'mmgf' has options still to choose on the validation split "
                                "(modality_weights): select a setting first, or give them values")
        return self.options, self.weights

    def _row_scores_mm(self, rows: sp.csr_matrix,
                       settings: Sequence[tuple[MultimodalGraphFilterOptions, dict[str, float]]]) -> list[Tensor]:
        filtered = self._row_scores(rows, [options for options, _ in settings])
        used = {name for _, weights in settings for name, weight in weights.items() if weight > 0}
        content = {name: torch.from_numpy((rows @ self.content[name]).toarray()) for name in sorted(used)}
        ridges = {_map_setting(options)[0] for options, _ in settings if _map_setting(options)[1] > 0}
        mapped: dict[float, Tensor] = {}
        if ridges:
            projected = self.content_map.project(rows)
            mapped = {ridge: self.content_map.expand(projected, ridge) for ridge in sorted(ridges)}
        out = []
        for scores, (options, weights) in zip(filtered, settings, strict=True):
            ridge, share = _map_setting(options)
            terms = [(name, weight) for name, weight in weights.items() if weight > 0]
            if share > 0 or terms:
                scores = scores * (1.0 - share)  # a new tensor: filtered scores may be shared between settings
                if share > 0:
                    scores.add_(mapped[ridge], alpha=share)
                for name, weight in terms:
                    scores.add_(content[name], alpha=weight * self.content_scale[name])
            out.append(scores)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, content={','.join(self.content)}"


def _map_setting(options: MultimodalGraphFilterOptions) -> tuple[float, float]:
    """``(map_ridge, map_share)`` of resolved options."""
    assert options.map_ridge is not None and options.map_share is not None  # resolved: select or resolve_setting
    return float(options.map_ridge), float(options.map_share)


def _product(grids: Mapping[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(grids, values, strict=True)) for values in itertools.product(*grids.values())]


def _content_scale(graph: ItemGraph, content: sp.csr_matrix) -> float:
    r""":math:`c_m = \mathbf{1}^\top R \tilde{P} \mathbf{1} / \mathbf{1}^\top R \tilde{A}_m \mathbf{1}` (1 when
    the content term is empty on the training users)."""
    degree = torch.from_numpy(graph.item_degree.astype(np.float32))[None]
    linear = float(graph.propagate(degree).sum())
    through_content = float((graph.item_degree.astype(np.float64) @ content).sum())
    return linear / through_content if through_content > 0 and linear > 0 else 1.0

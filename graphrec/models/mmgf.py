r"""A multimodal graph filter: GF-CF's item–item filters plus one content graph per modality.

GF-CF (:mod:`graphrec.models.gfcf`; Shen et al., CIKM 2021) filters each user's row :math:`r_u` over
the item–item graph of co-interactions, :math:`\tilde{P} = \tilde{R}^\top \tilde{R}`. An item nobody
interacted with in training has an empty column there and can never be recommended. Here the
item–item graph is augmented, as LATTICE and FREEDOM augment theirs, with a content graph per modality
:math:`m`: :math:`\tilde{A}_m`, the symmetric-normalised :math:`k`-nearest-neighbour cosine graph of the
pretrained features (:func:`graphrec.graph.content.content_graph`, over every item with the modality,
cold ones included). The scores are

.. math::
    s_u = r_u \tilde{P} + \alpha\, r_u D_I^{-1/2} V_k V_k^\top D_I^{1/2}
          + \sum_m w_m\, c_m\, r_u \tilde{A}_m,
    \qquad c_m = \frac{\mathbf{1}^\top R\, \tilde{P}\, \mathbf{1}}{\mathbf{1}^\top R\, \tilde{A}_m \mathbf{1}},

so that a cold item scores through its content neighbours among the user's items. :math:`c_m` puts
each content term on the scale of the linear term over the training users, which makes the weights
:math:`w_m` comparable across modalities and datasets (``w_m = 1``: the content term weighs as much
as the collaborative one, summed over the training users).

Nothing is learnt. The options left ``None`` are chosen on the validation split, in stages
(:meth:`MultimodalGraphFilter.selection_stage`): first GF-CF's :math:`\alpha` and :math:`k` without
content, then the weights :math:`w_m` over the chosen filter, every combination of ``weight_grid``
when that makes at most :data:`JOINT_WEIGHT_SETTINGS` settings, else one modality at a time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
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
    chunked,
    option_grid,
    resolve_setting,
    user_ids,
)

#: The most weight settings searched jointly; beyond it, one modality at a time.
JOINT_WEIGHT_SETTINGS = 64


@dataclass(frozen=True)
class MultimodalGraphFilterOptions(GFCFOptions):
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})
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


class MultimodalGraphFilter(GFCF):
    """GF-CF with a content graph per modality (see the module docstring). Like GF-CF it has no
    embeddings and keeps nothing in its ``state_dict``: :meth:`from_dataset` rebuilds it."""

    name = "mmgf"
    Options = MultimodalGraphFilterOptions
    reads_features = True

    def __init__(self, graph: ItemGraph, basis: LowPassBasis, content: Mapping[str, sp.csr_matrix],
                 options: MultimodalGraphFilterOptions) -> None:
        super().__init__(graph, basis, options)
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
        content = content_graphs(dataset, options.neighbours, modalities, weighted=options.weighted_edges)
        return cls(graph, basis, content, options)

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
        """Stage 0: GF-CF's searched options without content. Then the weights over the chosen filter:
        every combination in one stage when that makes at most :data:`JOINT_WEIGHT_SETTINGS` settings,
        else a stage per modality, each over the weights chosen before it."""
        assert isinstance(options, MultimodalGraphFilterOptions)
        if options.modality_weights is not None:
            return options.settings() if stage == 0 else None
        names, grid = list(self.content), options.weight_grid
        if stage == 0:
            return [{**setting, "modality_weights": format_weights(dict.fromkeys(names, 0.0))}
                    for setting in options.settings()]
        joint = len(grid) ** len(names) <= JOINT_WEIGHT_SETTINGS
        if stage > (1 if joint else len(names)):
            return None
        if joint:
            return [{**best, "modality_weights": format_weights(dict(zip(names, values, strict=True)))}
                    for values in itertools.product(grid, repeat=len(names))]
        chosen = parse_weights(best["modality_weights"])
        return [{**best, "modality_weights": format_weights({**chosen, names[stage - 1]: weight})}
                for weight in grid]

    def _resolve(self, setting: Mapping[str, Any]) -> tuple[MultimodalGraphFilterOptions, dict[str, float]]:
        setting = dict(setting)
        entries = setting.pop("modality_weights", self.search.modality_weights)
        options = resolve_setting(self, self.search, setting, self.basis.rank)
        weights = self._weights(entries)
        if weights is None:
            raise GraphrecError("model 'mmgf' has options still to choose on the validation split "
                                "(modality_weights): select a setting first, or give them values")
        return replace(options, modality_weights=format_weights(weights)), weights

    def setting_scorer(self, settings: Sequence[Mapping[str, Any]]) -> Callable[[Tensor], list[Tensor]]:
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

    @torch.no_grad()
    def score_histories(self, rows: sp.csr_matrix) -> Tensor:
        return self._row_scores_mm(self.graph.history_rows(rows), [self._chosen()])[0]

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
        out = []
        for scores, (_, weights) in zip(filtered, settings, strict=True):
            terms = [(name, weight) for name, weight in weights.items() if weight > 0]
            if terms:
                scores = scores.clone()  # filtered scores may be shared between settings
                for name, weight in terms:
                    scores.add_(content[name], alpha=weight * self.content_scale[name])
            out.append(scores)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, content={','.join(self.content)}"


def _content_scale(graph: ItemGraph, content: sp.csr_matrix) -> float:
    r""":math:`c_m = \mathbf{1}^\top R \tilde{P} \mathbf{1} / \mathbf{1}^\top R \tilde{A}_m \mathbf{1}` (1 when
    the content term is empty on the training users)."""
    degree = torch.from_numpy(graph.item_degree.astype(np.float32))[None]
    linear = float(graph.propagate(degree).sum())
    through_content = float((graph.item_degree.astype(np.float64) @ content).sum())
    return linear / through_content if through_content > 0 and linear > 0 else 1.0

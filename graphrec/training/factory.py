"""Build a model by name from a dataset: the only place that knows which inputs each model needs."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from graphrec.data.dataset import Dataset
from graphrec.errors import GraphrecError
from graphrec.graph import (
    GraphConfig,
    build_graph,
    chosen_modalities,
    normalized_adjacency,
)
from graphrec.models import MF, VBPR, LightGCN, ModalityGAT
from graphrec.models.baselines import Popularity, RandomScores
from graphrec.models.fusion import FUSION_STRATEGIES

#: The :class:`ModelConfig` options each model reads besides ``dim``, which every model accepts so
#: that one dimension can be passed to all of them (the popularity and random baselines ignore it).
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "mf": (), "lightgcn": ("layers",), "vbpr": ("modalities",),
    "gat": ("layers", "heads", "dropout", "fusion", "entities", "modalities"), "pop": (), "random": (),
}
MODEL_NAMES = tuple(MODEL_OPTIONS)
#: The models that read the dataset's modality features.
CONTENT_MODELS = tuple(name for name, options in MODEL_OPTIONS.items() if "modalities" in options)
#: The entity columns a GAT uses unless told otherwise: whichever of them a dataset has (chosen
#: columns must all exist).
DEFAULT_ENTITIES = ("genres", "categories", "brand")


@dataclass(frozen=True)
class ModelConfig:
    """Model architecture. ``entities`` are item columns that become side-entity nodes (GAT)."""

    name: str = "lightgcn"
    dim: int = 64
    layers: int = 3
    heads: int = 1
    dropout: float = 0.0
    fusion: str = "attention"
    entities: tuple[str, ...] = DEFAULT_ENTITIES
    modalities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise GraphrecError(f"unknown model {self.name!r}; choose one of {', '.join(MODEL_NAMES)}")
        if self.dim <= 0 or self.layers < 0:
            raise GraphrecError("--dim must be positive and --layers non-negative")
        if self.heads < 1:
            raise GraphrecError(f"--heads must be at least 1, got {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise GraphrecError(f"--dropout must lie in [0, 1), got {self.dropout}")
        if self.fusion not in FUSION_STRATEGIES or self.fusion == "late":
            raise GraphrecError(f"unknown --fusion {self.fusion!r}; choose one of "
                                f"{', '.join(f for f in FUSION_STRATEGIES if f != 'late')}")

    def check_options(self) -> None:
        """Refuse options that ``name`` would ignore, set away from their defaults.

        Not part of construction: runs written before this check may hold such values, and
        they must still load."""
        ignored = [field.name for field in fields(self) if field.name not in ("name", "dim", *MODEL_OPTIONS[self.name])
                   and getattr(self, field.name) != field.default]
        if ignored:
            owners = "; ".join(f"--{option} is for " + ", ".join(model for model, options in MODEL_OPTIONS.items()
                                                                 if option in options) for option in ignored)
            raise GraphrecError(f"model {self.name!r} does not use " + ", ".join(
                f"--{option} {getattr(self, option)!r}" for option in ignored) + f": leave it out ({owners})")


def create_model(config: ModelConfig, dataset: Dataset, seed: int = 0) -> torch.nn.Module:
    """Instantiate ``config.name`` for ``dataset`` (training edges only)."""
    torch.manual_seed(seed)
    users, items = dataset.pairs("train")
    if config.name == "mf":
        return MF(dataset.num_users, dataset.num_items, dim=config.dim)
    if config.name == "lightgcn":
        adjacency = normalized_adjacency(dataset.num_users, dataset.num_items, users, items)
        return LightGCN(dataset.num_users, dataset.num_items, adjacency, dim=config.dim, num_layers=config.layers)
    if config.name == "vbpr":
        features, mask, dims = _stacked_features(dataset, model_modalities(config, dataset))
        warm = torch.zeros(dataset.num_items, dtype=torch.bool)
        warm[torch.from_numpy(items)] = True
        return VBPR(dataset.num_users, dataset.num_items, features, mask, dim=config.dim, content_dim=config.dim,
                    modality_dims=dims, warm_items=warm)
    if config.name == "gat":
        unknown = [column for column in config.entities if column not in dataset.items.columns]
        if config.entities != DEFAULT_ENTITIES and unknown:
            raise GraphrecError(f"--entities {unknown} are not item columns of dataset {dataset.name!r}; its columns "
                                f"are {[c for c in dataset.items.columns if c not in ('item', 'item_id')]}")
        graph = build_graph(dataset, GraphConfig(entities=config.entities, modalities=config.modalities))
        return ModalityGAT.from_graph(graph, dim=config.dim, num_layers=config.layers, heads=config.heads,
                                      dropout=config.dropout, fusion=config.fusion)
    if config.name == "pop":
        return Popularity(dataset.num_users, dataset.num_items, items, seed=seed)
    return RandomScores(dataset.num_users, dataset.num_items, seed=seed)


def model_modalities(config: ModelConfig, dataset: Dataset) -> list[str]:
    """The modalities a content model reads: those chosen, else every one the dataset has."""
    return chosen_modalities(dataset, config.modalities)


def _stacked_features(dataset: Dataset, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    if not names:
        raise GraphrecError(f"model 'vbpr' needs item features, but dataset {dataset.name!r} has no modality; "
                            f"run `graphrec encode` first")
    missing = [n for n in names if n not in dataset.features]
    if missing:
        raise GraphrecError(f"dataset {dataset.name!r} has no modality {missing}")
    features = torch.cat([torch.from_numpy(dataset.features[n].values) for n in names], dim=1)
    mask = torch.stack([torch.from_numpy(dataset.features[n].mask) for n in names], dim=1)
    return features, mask, [dataset.features[n].dim for n in names]

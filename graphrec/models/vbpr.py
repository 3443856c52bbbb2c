r"""VBPR: BPR with a content term from pretrained item features.

From `"VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback"
<https://arxiv.org/abs/1510.01784>`_ (He & McAuley, AAAI 2016), extended to several
modalities with missing values. For item features :math:`\mathbf{f}_i = [\mathbf{f}_{i,1}
\| \dots \| \mathbf{f}_{i,M}]` (one block per modality),

.. math::
    \hat{y}_{ui} = \langle \boldsymbol{\gamma}_u, \boldsymbol{\gamma}_i \rangle
                 + \langle \boldsymbol{\theta}_u, \mathbf{c}_i \rangle,
    \qquad \mathbf{c}_i = \sum_{m=1}^{M} \begin{cases}
        \mathbf{E}_m \mathbf{f}_{i,m} & \text{if item } i \text{ has modality } m \\
        \mathbf{z}_m & \text{otherwise (a learned placeholder)} \end{cases}

With every modality present, :math:`\mathbf{c}_i = \mathbf{E} \mathbf{f}_i` for
:math:`\mathbf{E} = [\mathbf{E}_1 \dots \mathbf{E}_M]`, the original model. The score is
computed as one inner product of concatenations, :math:`\mathbf{u}_u = [\boldsymbol{\gamma}_u
\| \boldsymbol{\theta}_u]` and :math:`\mathbf{v}_i = [\boldsymbol{\gamma}_i \| \mathbf{c}_i]`,
so :meth:`~VBPR.embed` serves full ranking like any other model. The item and
global-visual bias terms of the paper are left out (as in the MMRec benchmark code).

**User sources** (``user_entities``, ``user_modalities``), symmetric to the item content: the user's
attribute entities (mean learned embedding per type, :mod:`graphrec.models.user_side`) and user
modalities (projected by :math:`\mathbf{P}_m`) add a content part to the user vector,

.. math::
    \mathbf{u}_u = w_u [\boldsymbol{\gamma}_u \| \boldsymbol{\theta}_u] + (1 - w_u) \bar{\mathbf{u}}
    + \mathbf{q}_u, \qquad
    \mathbf{q}_u = \sum_{t \in \mathcal{T}_u} \frac{1}{|\mathcal{E}_{u,t}|} \sum_{e \in \mathcal{E}_{u,t}}
    \mathbf{w}_e + \sum_{m \in \mathcal{M}_u} \mathbf{P}_m \mathbf{x}_{u,m},

over the sources the user has (the entity embeddings are ``dim + content_dim`` wide, as
:math:`\mathbf{u}_u`). :math:`w_u = 0` for a user without training interactions, whose
:math:`\boldsymbol{\gamma}_u, \boldsymbol{\theta}_u` were never trained (a cold user is placed by
:math:`\mathbf{q}_u` and :math:`\bar{\mathbf{u}}`, the mean :math:`[\boldsymbol{\gamma} \| \boldsymbol{\theta}]`
of the warm users, held fixed: its expected id part), else 1; in training, with
``user_id_dropout`` :math:`p`, :math:`w_u` is 0 with probability :math:`p` for each warm user and
forward (DropoutNet, Volkovs et al., NeurIPS 2017), so that :math:`\mathbf{q}_u` also learns to
score alone.

:meth:`~graphrec.models.base.Recommender.regularization` penalises
:math:`[\boldsymbol{\gamma}_u \| \boldsymbol{\theta}_u]` and :math:`[\boldsymbol{\gamma}_i \|
\mathbf{c}_i]`: the projected content of the batch's items counts as their layer-0
representation (as MMRec does), which also keeps :math:`\mathbf{E}` small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.data.dataset import Dataset
from graphrec.errors import GraphrecError
from graphrec.graph.hetero import INTERACTS, GraphConfig, build_graph, chosen_modalities, item_modalities
from graphrec.models.base import (
    EMBEDDING_INIT_STD,
    ModelOptions,
    Recommender,
    check_dropout,
    check_positive,
    info_nce,
)
from graphrec.models.user_side import AVERAGE_USER, Attributes, UserAttributes, UserSources, average_user


@dataclass(frozen=True)
class VBPROptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "width of the id and of the projected content embeddings",
                                           "space": {"choices": (32, 64, 128)}})
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})
    user_entities: bool = field(default=False, metadata={
        "help": "the user attribute columns (age bucket, gender, ...) add learned entity embeddings to the user "
                "(off by default: on ml-100k they placed cold users far better but cost warm users more, on "
                "validation, benchmarks/results/user_sources.json)"})
    user_modalities: bool = field(default=False, metadata={
        "help": "the user modalities (encoded user text, ...) add their projection to the user"})
    user_id_dropout: float = field(default=0.0, metadata={
        "help": "in training, drop a warm user's id embeddings with this probability, so that its sources "
                "learn to place it alone, as they place a cold user", "space": {"low": 0.0, "high": 0.5}})

    #: Runs saved before user sources were trained without them.
    added_later: ClassVar[Mapping[str, Any]] = {"user_entities": False, "user_modalities": False,
                                                "user_id_dropout": 0.0}

    def __post_init__(self) -> None:
        check_positive(self, "dim")
        check_dropout(self, "user_id_dropout")


class VBPR(Recommender):
    """VBPR over ``features`` ``[I, F]`` (modalities concatenated, ``modality_dims`` wide each).

    ``mask`` ``[I, M]`` marks which modalities each item has (``None``: all). With more than
    one modality, ``modality_dims`` says how ``F`` splits into them. Features are a
    non-persistent buffer: not saved in the ``state_dict``.
    """

    name = "vbpr"
    Options = VBPROptions
    supports_alignment = True
    reads_features = True
    scores_new_users = True
    features: Tensor  # buffers registered in __init__
    mask: Tensor
    warm_items: Tensor
    warm_users: Tensor

    def __init__(self, num_users: int, num_items: int, features: Tensor, mask: Tensor | None = None,
                 dim: int = 64, content_dim: int = 64, modality_dims: Sequence[int] | None = None,
                 warm_items: Tensor | None = None, user_sources: UserSources | None = None,
                 warm_users: Tensor | None = None, user_id_dropout: float = 0.0,
                 user_attributes: UserAttributes | None = None) -> None:
        super().__init__(num_users, num_items)
        if features.dim() != 2 or features.size(0) != num_items:
            raise ValueError(f"features must have shape ({num_items}, F), got {tuple(features.shape)}")
        if mask is None:
            mask = torch.ones(num_items, 1 if modality_dims is None else len(modality_dims), dtype=torch.bool)
        if mask.dim() == 1:
            mask = mask.unsqueeze(1)
        if mask.shape[0] != num_items:
            raise ValueError(f"mask must have shape ({num_items}, M), got {tuple(mask.shape)}")
        if modality_dims is None:
            if mask.size(1) != 1:
                raise ValueError(f"mask has {mask.size(1)} modalities: pass modality_dims to say how the "
                                 f"{features.size(1)} feature columns split between them")
            modality_dims = [features.size(1)]
        modality_dims = [int(width) for width in modality_dims]
        if len(modality_dims) != mask.size(1) or sum(modality_dims) != features.size(1):
            raise ValueError(f"modality_dims {modality_dims} must have one entry per mask column "
                             f"({mask.size(1)}) and sum to the feature width ({features.size(1)})")
        self.dim = int(dim)
        self.content_dim = int(content_dim)
        self.modality_dims = modality_dims
        self.register_buffer("features", features.detach().to(torch.float32), persistent=False)
        self.register_buffer("mask", mask.detach().to(torch.bool), persistent=False)
        # gamma_i of an item without training interactions was never trained: such cold items are
        # scored by their content alone (None: every item is warm).
        warm = torch.ones(num_items, dtype=torch.bool) if warm_items is None else warm_items.to(torch.bool)
        self.register_buffer("warm_items", warm.reshape(num_items), persistent=False)
        self.user_embedding = torch.nn.Embedding(num_users, dim)          # gamma_u
        self.user_content_embedding = torch.nn.Embedding(num_users, content_dim)  # theta_u
        self.item_embedding = torch.nn.Embedding(num_items, dim)          # gamma_i
        self.projections = torch.nn.ModuleList(
            [torch.nn.Linear(width, content_dim, bias=False) for width in modality_dims])  # E_m
        self.placeholders = torch.nn.Parameter(torch.empty(len(modality_dims), content_dim))  # z_m
        # the user's sources, their entity embeddings as wide as the user vector (None: no user source)
        if user_sources is not None and user_sources.dim != dim + content_dim:
            raise ValueError(f"user_sources must be dim + content_dim = {dim + content_dim} wide, "
                             f"got {user_sources.dim}")
        self.user_sources = user_sources if user_sources else None
        self.user_projections = torch.nn.ModuleDict(
            {name: torch.nn.Linear(self.user_sources.in_dims[name], dim + content_dim, bias=False)
             for name in self.user_sources.modality_names} if self.user_sources is not None else {})
        self.user_attributes = user_attributes
        self.user_id_dropout = float(user_id_dropout)
        warm_user = torch.ones(num_users, dtype=torch.bool) if warm_users is None else warm_users.to(torch.bool)
        self.register_buffer("warm_users", warm_user.reshape(num_users), persistent=False)
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: VBPROptions, seed: int = 0) -> VBPR:
        """VBPR over the chosen modalities of ``dataset`` (all of them by default), with the
        training interactions telling warm items from cold ones."""
        names = chosen_modalities(dataset, options.modalities)
        if not names:
            raise GraphrecError(f"model 'vbpr' needs item features, but dataset {dataset.name!r} has no modality; "
                                f"run `graphrec encode` first")
        missing = [n for n in names if n not in dataset.features]
        if missing:
            raise GraphrecError(f"dataset {dataset.name!r} has no modality {missing}")
        features = torch.cat([torch.from_numpy(dataset.features[n].values) for n in names], dim=1)
        mask = torch.stack([torch.from_numpy(dataset.features[n].mask) for n in names], dim=1)
        users, items = dataset.pairs("train")
        sources = attributes = None
        if options.user_entities or options.user_modalities:
            graph = build_graph(dataset, GraphConfig(entities=(), modalities=(),
                                                     user_entities=None if options.user_entities else (),
                                                     user_modalities=None if options.user_modalities else ()))
            sources = UserSources.from_graph(graph, 2 * options.dim)
            attributes = UserAttributes.from_dataset(dataset, None if options.user_entities else ())
        return cls(dataset.num_users, dataset.num_items, features, mask, dim=options.dim, content_dim=options.dim,
                   modality_dims=[dataset.features[n].dim for n in names],
                   warm_items=_interacted(dataset.num_items, torch.from_numpy(items)), user_sources=sources,
                   warm_users=_interacted(dataset.num_users, torch.from_numpy(users)),
                   user_id_dropout=options.user_id_dropout, user_attributes=attributes)

    @classmethod
    def from_graph(cls, data: HeteroData, dim: int = 64, content_dim: int = 64) -> VBPR:
        """VBPR over all modality node types of ``data`` (see :func:`~graphrec.graph.build_graph`)."""
        modalities = item_modalities(data)
        if not modalities:
            raise ValueError("VBPR needs item features, but the graph has no modality node type "
                             "(encode a modality first, e.g. text or image)")
        features = torch.cat([values for values, _ in modalities.values()], dim=1)
        mask = torch.stack([present for _, present in modalities.values()], dim=1)
        num_items = data["item"].num_nodes
        return cls(data["user"].num_nodes, num_items, features, mask, dim=dim,
                   content_dim=content_dim, modality_dims=[v.size(1) for v, _ in modalities.values()],
                   warm_items=_interacted(num_items, data[INTERACTS].edge_index[1]))

    def reset_parameters(self) -> None:
        for embedding in (self.user_embedding, self.user_content_embedding, self.item_embedding):
            torch.nn.init.normal_(embedding.weight, std=EMBEDDING_INIT_STD)
        for projection in self.projections:
            torch.nn.init.xavier_uniform_(cast(torch.nn.Linear, projection).weight)
        torch.nn.init.normal_(self.placeholders, std=EMBEDDING_INIT_STD)
        if self.user_sources is not None:
            self.user_sources.reset_parameters()
        for projection in self.user_projections.values():
            torch.nn.init.xavier_uniform_(cast(torch.nn.Linear, projection).weight)

    def content(self, items: Tensor | None = None) -> Tensor:
        """Projected content :math:`\\mathbf{c}_i` of ``items`` (all items when ``None``; any shape,
        e.g. ``(B, K)`` negatives, giving ``items.shape + (content_dim,)``)."""
        if items is not None and items.dim() != 1:
            return self.content(items.reshape(-1)).view(*items.shape, self.content_dim)
        features = self.features if items is None else self.features[items]
        mask = self.mask if items is None else self.mask[items]
        blocks = features.split(self.modality_dims, dim=1)
        total = features.new_zeros(features.size(0), self.content_dim)
        for m, (block, projection) in enumerate(zip(blocks, self.projections)):
            total = total + torch.where(mask[:, m:m + 1], projection(block), self.placeholders[m])
        return total

    def _source_parts(self, inputs: Mapping[str, Tensor], mask: Tensor) -> Tensor:
        r"""``[n, S, dim + content_dim]``: each user source's part of :math:`\mathbf{q}_u` (zero where missing)."""
        assert self.user_sources is not None
        parts = [self.user_projections[name](inputs[name]) if name in self.user_projections else inputs[name]
                 for name in self.user_sources.names]
        return torch.stack(parts, dim=1) * mask.unsqueeze(-1)

    def user_content(self, users: Tensor | None = None) -> Tensor | None:
        r""":math:`\mathbf{q}_u` of the distinct ``users`` (default: all), ``None`` without user sources."""
        if self.user_sources is None:
            return None
        return self._source_parts(*self.user_sources.inputs(users)).sum(1)

    def _user_vectors(self, users: Tensor | None = None) -> Tensor:
        ids = torch.cat([self.user_embedding.weight, self.user_content_embedding.weight], dim=1)
        if users is not None:
            ids = ids.index_select(0, users)
        content = self.user_content(users)
        if content is None:
            return ids
        keep = self.warm_users if users is None else self.warm_users.index_select(0, users)
        if self.training and self.user_id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.user_id_dropout)
        return torch.where(keep.unsqueeze(1), ids, self._average_user()) + content

    def _average_user(self) -> Tensor:
        weight = torch.cat([self.user_embedding.weight, self.user_content_embedding.weight], dim=1)
        return average_user(weight, self.warm_users)

    def embed(self) -> tuple[Tensor, Tensor]:
        items = torch.cat([self.item_embedding.weight * self.warm_items.unsqueeze(1), self.content()], dim=1)
        return self._user_vectors(), items

    def new_user_embeddings(self, attributes: Sequence[Attributes]) -> Tensor:
        parts = self.user_source_parts(attributes=attributes)
        assert parts is not None  # user_source_parts raises without user sources
        return parts[1].sum(1)

    def user_source_parts(self, users: Tensor | None = None,
                          attributes: Sequence[Attributes] | None = None) -> tuple[list[str], Tensor]:
        if self.user_sources is None or self.user_attributes is None:
            raise GraphrecError("this vbpr was trained without user sources (user_entities and user_modalities "
                                "off, or a dataset without user features): it cannot place a user by them")
        if attributes is not None:
            inputs, mask = self.user_sources.new_inputs(self.user_attributes.entity_edges(attributes), len(attributes))
        else:
            inputs, mask = self.user_sources.inputs(users)
        parts = self._source_parts(inputs, mask)
        prior = self._average_user().expand(parts.size(0), 1, -1)
        return [AVERAGE_USER, *self.user_sources.names], torch.cat([prior, parts], dim=1)

    def alignment_loss(self, items: Tensor, temperature: float = 0.2) -> Tensor:
        """InfoNCE between the projected content of ``items`` and their id embeddings
        (needs ``dim == content_dim``)."""
        if self.dim != self.content_dim:
            raise ValueError(f"alignment needs dim == content_dim, got {self.dim} and {self.content_dim}")
        return info_nce(self.content(items), self.item_embedding(items), temperature)

    def user_ego(self, users: Tensor) -> Tensor:
        ids = torch.cat([self.user_embedding(users), self.user_content_embedding(users)], dim=1)
        if self.user_sources is None:
            return ids
        # the sources of each distinct user of the batch (entity means are gathered per distinct user)
        distinct, inverse = torch.unique(users, return_inverse=True)
        content = self.user_content(distinct)
        assert content is not None
        return torch.cat([ids, content[inverse]], dim=1)

    def item_ego(self, items: Tensor) -> Tensor:
        return torch.cat([self.item_embedding(items), self.content(items)], dim=-1)

    def extra_repr(self) -> str:
        user_side = f", user_sources={self.user_sources.names}" if self.user_sources is not None else ""
        return (f"{super().extra_repr()}, dim={self.dim}, content_dim={self.content_dim}, "
                f"modality_dims={self.modality_dims}{user_side}")


def _interacted(num_items: int, items: Tensor) -> Tensor:
    """``[num_items]`` bool: the items among ``items`` (their training interactions)."""
    warm = torch.zeros(num_items, dtype=torch.bool)
    warm[items.to(torch.long)] = True
    return warm

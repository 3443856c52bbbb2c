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

:meth:`~graphrec.models.base.Recommender.regularization` penalises
:math:`[\boldsymbol{\gamma}_u \| \boldsymbol{\theta}_u]` and :math:`[\boldsymbol{\gamma}_i \|
\mathbf{c}_i]`: the projected content of the batch's items counts as their layer-0
representation (as MMRec does), which also keeps :math:`\mathbf{E}` small.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.data.dataset import Dataset
from graphrec.errors import GraphrecError
from graphrec.graph.hetero import INTERACTS, chosen_modalities, item_modalities
from graphrec.models.base import EMBEDDING_INIT_STD, ModelOptions, Recommender, check_positive, info_nce


@dataclass(frozen=True)
class VBPROptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "width of the id and of the projected content embeddings",
                                           "space": {"choices": (32, 64, 128)}})
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})

    def __post_init__(self) -> None:
        check_positive(self, "dim")


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
    features: Tensor  # buffers registered in __init__
    mask: Tensor
    warm_items: Tensor

    def __init__(self, num_users: int, num_items: int, features: Tensor, mask: Tensor | None = None,
                 dim: int = 64, content_dim: int = 64, modality_dims: Sequence[int] | None = None,
                 warm_items: Tensor | None = None) -> None:
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
        _, items = dataset.pairs("train")
        return cls(dataset.num_users, dataset.num_items, features, mask, dim=options.dim, content_dim=options.dim,
                   modality_dims=[dataset.features[n].dim for n in names],
                   warm_items=_interacted(dataset.num_items, torch.from_numpy(items)))

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

    def embed(self) -> tuple[Tensor, Tensor]:
        users = torch.cat([self.user_embedding.weight, self.user_content_embedding.weight], dim=1)
        items = torch.cat([self.item_embedding.weight * self.warm_items.unsqueeze(1), self.content()], dim=1)
        return users, items

    def alignment_loss(self, items: Tensor, temperature: float = 0.2) -> Tensor:
        """InfoNCE between the projected content of ``items`` and their id embeddings
        (needs ``dim == content_dim``)."""
        if self.dim != self.content_dim:
            raise ValueError(f"alignment needs dim == content_dim, got {self.dim} and {self.content_dim}")
        return info_nce(self.content(items), self.item_embedding(items), temperature)

    def user_ego(self, users: Tensor) -> Tensor:
        return torch.cat([self.user_embedding(users), self.user_content_embedding(users)], dim=1)

    def item_ego(self, items: Tensor) -> Tensor:
        return torch.cat([self.item_embedding(items), self.content(items)], dim=-1)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, dim={self.dim}, content_dim={self.content_dim}, "
                f"modality_dims={self.modality_dims}")


def _interacted(num_items: int, items: Tensor) -> Tensor:
    """``[num_items]`` bool: the items among ``items`` (their training interactions)."""
    warm = torch.zeros(num_items, dtype=torch.bool)
    warm[items.to(torch.long)] = True
    return warm

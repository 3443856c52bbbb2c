r"""Matrix factorisation trained with BPR (MF-BPR).

From `"BPR: Bayesian Personalized Ranking from Implicit Feedback"
<https://arxiv.org/abs/1205.2618>`_ (Rendle et al., UAI 2009): each user and item
has a free embedding and the score is their inner product,

.. math::
    \hat{y}_{ui} = \langle \mathbf{p}_u, \mathbf{q}_i \rangle,
    \qquad \mathbf{p}_u, \mathbf{q}_i \in \mathbb{R}^d.

It is LightGCN with zero layers: the graph-free baseline every graph model must beat.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.data.dataset import Dataset
from graphrec.models.base import EMBEDDING_INIT_STD, ModelOptions, Recommender, check_positive


@dataclass(frozen=True)
class MFOptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "embedding width", "space": {"choices": (32, 64, 128)}})

    def __post_init__(self) -> None:
        check_positive(self, "dim")


class MF(Recommender):
    """MF-BPR. Embeddings start as :math:`\\mathcal{N}(0, 0.1^2)`, as in the LightGCN reference."""

    name = "mf"
    Options = MFOptions

    def __init__(self, num_users: int, num_items: int, dim: int = 64) -> None:
        super().__init__(num_users, num_items)
        self.dim = int(dim)
        self.user_embedding = torch.nn.Embedding(num_users, dim)
        self.item_embedding = torch.nn.Embedding(num_items, dim)
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: MFOptions, seed: int = 0) -> MF:
        return cls(dataset.num_users, dataset.num_items, dim=options.dim)

    @classmethod
    def from_graph(cls, data: HeteroData, dim: int = 64) -> MF:
        return cls(data["user"].num_nodes, data["item"].num_nodes, dim=dim)

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_embedding.weight, std=EMBEDDING_INIT_STD)
        torch.nn.init.normal_(self.item_embedding.weight, std=EMBEDDING_INIT_STD)

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight

    def user_ego(self, users: Tensor) -> Tensor:
        return self.user_embedding(users)

    def item_ego(self, items: Tensor) -> Tensor:
        return self.item_embedding(items)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}"

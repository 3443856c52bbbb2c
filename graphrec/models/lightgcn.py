r"""LightGCN: linear propagation of id embeddings over the user–item graph.

From `"LightGCN: Simplifying and Powering Graph Convolution Network for
Recommendation" <https://arxiv.org/abs/2002.02126>`_ (He et al., SIGIR 2020).
With :math:`\mathbf{E}^{(0)} = [\mathbf{E}_U; \mathbf{E}_I] \in \mathbb{R}^{(N+M) \times d}`
the free user and item embeddings and :math:`\tilde{\mathbf{A}}` the symmetrically
normalised bipartite adjacency (:func:`~graphrec.graph.adjacency.normalized_adjacency`),

.. math::
    \mathbf{E}^{(k+1)} = \tilde{\mathbf{A}} \mathbf{E}^{(k)}, \qquad
    \mathbf{E} = \sum_{k=0}^{L} \alpha_k \mathbf{E}^{(k)}, \qquad \alpha_k = \frac{1}{L + 1},

and :math:`\hat{y}_{ui} = \langle \mathbf{e}_u, \mathbf{e}_i \rangle`. No feature
transformation, no non-linearity, no self-loop: the layer combination plays the
self-loop's part.

Differences from :class:`torch_geometric.nn.models.LightGCN`: embeddings start as
:math:`\mathcal{N}(0, 0.1^2)` (the authors' reference implementation; PyG uses Xavier),
and propagation is one sparse CSR product per layer whose backward is the same
product (:func:`~graphrec.graph.adjacency.propagate`), instead of message passing
over an edge list.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.graph.adjacency import normalized_adjacency, propagate
from graphrec.graph.hetero import INTERACTS
from graphrec.models.base import EMBEDDING_INIT_STD, Recommender


class LightGCN(Recommender):
    """LightGCN over a fixed, symmetric ``adjacency`` of shape ``(N + M, N + M)``, users first.

    The adjacency is a non-persistent buffer: it moves with :meth:`~torch.nn.Module.to`
    but is not saved in the ``state_dict`` (rebuild the model from the same training graph
    to load a checkpoint).
    """

    def __init__(self, num_users: int, num_items: int, adjacency: Tensor, dim: int = 64,
                 num_layers: int = 3) -> None:
        super().__init__(num_users, num_items)
        num_nodes = num_users + num_items
        if tuple(adjacency.shape) != (num_nodes, num_nodes):
            raise ValueError(f"adjacency must have shape ({num_nodes}, {num_nodes}) for {num_users} users "
                             f"and {num_items} items, got {tuple(adjacency.shape)}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if adjacency.layout != torch.sparse_csr:
            adjacency = adjacency.to_sparse_csr()
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.register_buffer("adjacency", adjacency.detach(), persistent=False)
        self.user_embedding = torch.nn.Embedding(num_users, dim)
        self.item_embedding = torch.nn.Embedding(num_items, dim)
        self.reset_parameters()

    @classmethod
    def from_graph(cls, data: HeteroData, dim: int = 64, num_layers: int = 3) -> LightGCN:
        """LightGCN over the graph's training ``(user, interacts, item)`` edges."""
        num_users, num_items = data["user"].num_nodes, data["item"].num_nodes
        users, items = data[INTERACTS].edge_index
        return cls(num_users, num_items, normalized_adjacency(num_users, num_items, users, items),
                   dim=dim, num_layers=num_layers)

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_embedding.weight, std=EMBEDDING_INIT_STD)
        torch.nn.init.normal_(self.item_embedding.weight, std=EMBEDDING_INIT_STD)

    def embed(self) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        total = x
        for _ in range(self.num_layers):
            x = propagate(self.adjacency, x)
            total = total + x
        final = total / (self.num_layers + 1)
        return final[:self.num_users], final[self.num_users:]

    def user_ego(self, users: Tensor) -> Tensor:
        return self.user_embedding(users)

    def item_ego(self, items: Tensor) -> Tensor:
        return self.item_embedding(items)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}, num_layers={self.num_layers}"

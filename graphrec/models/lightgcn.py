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

**On a sampled subgraph** (:meth:`LightGCN.embed_subgraph`, for neighbour-sampled
mini-batches), each sampled edge :math:`(w \to v)` carries the full-graph weight
:math:`1/\sqrt{d_v d_w}` scaled by :math:`d_v / s_v`, with :math:`s_v` the number of
neighbours sampled for :math:`v`: an unbiased estimate of :math:`\tilde{\mathbf{A}}\mathbf{E}`
at :math:`v`, and exactly it when every neighbour is sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.data.dataset import Dataset
from graphrec.graph.adjacency import normalized_adjacency, propagate
from graphrec.graph.hetero import INTERACTS, REV_INTERACTS
from graphrec.models.base import (
    EMBEDDING_INIT_STD,
    ModelOptions,
    Recommender,
    check_both_directions,
    check_non_negative,
    check_positive,
    edges_within_hops,
    layerwise_mean,
    nodes_within_hops,
)


@dataclass(frozen=True)
class LightGCNOptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "embedding width", "space": {"choices": (32, 64, 128)}})
    layers: int = field(default=3, metadata={"help": "propagation layers L", "space": {"low": 1, "high": 4}})

    def __post_init__(self) -> None:
        check_positive(self, "dim")
        check_non_negative(self, "layers")


class LightGCN(Recommender):
    """LightGCN over a fixed, symmetric ``adjacency`` of shape ``(N + M, N + M)``, users first.

    The adjacency is a non-persistent buffer: it moves with :meth:`~torch.nn.Module.to`
    but is not saved in the ``state_dict`` (rebuild the model from the same training graph
    to load a checkpoint).
    """

    name = "lightgcn"
    Options = LightGCNOptions
    supports_subgraphs = True
    adjacency: Tensor  # buffers registered in __init__
    degree: Tensor

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
        crow = adjacency.detach().crow_indices()
        self.register_buffer("degree", (crow[1:] - crow[:-1]).to(torch.float32), persistent=False)
        self.user_embedding = torch.nn.Embedding(num_users, dim)
        self.item_embedding = torch.nn.Embedding(num_items, dim)
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: LightGCNOptions, seed: int = 0) -> LightGCN:
        """LightGCN over the dataset's training interactions."""
        users, items = dataset.pairs("train")
        adjacency = normalized_adjacency(dataset.num_users, dataset.num_items, users, items)
        return cls(dataset.num_users, dataset.num_items, adjacency, dim=options.dim, num_layers=options.layers)

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

    @torch.no_grad()
    def embed_layerwise(self, chunk_size: int = 65_536) -> tuple[Tensor, Tensor]:
        """:meth:`embed` without autograd, one layer at a time over row chunks of the adjacency:
        memory holds two layers of activations and never the whole graph's product at once."""
        crow, col, values = self.adjacency.crow_indices(), self.adjacency.col_indices(), self.adjacency.values()
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])

        def layer(_: int, x: Tensor, start: int, stop: int, lo: int, hi: int) -> Tensor:
            block = torch.sparse_csr_tensor(crow[start:stop + 1] - lo, col[lo:hi], values[lo:hi],
                                            (stop - start, x.size(0)), check_invariants=False)
            return block @ x

        final = layerwise_mean(x, self.num_layers, crow, chunk_size, layer)
        return final[:self.num_users], final[self.num_users:]

    def embed_subgraph(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        """Final embeddings of the seed nodes of a sampled subgraph, in local order (``data[t].n_id``
        global ids; edges ``(user, interacts, item)`` and ``(item, rev_interacts, user)`` in local
        ids; seeds are the first ``num_sampled_nodes[0]`` nodes of each type).

        As PyG's ``trim_to_layer``, layer :math:`l` of :math:`L` updates only the nodes within
        :math:`L - l` hops of the seeds, from the edges of the first :math:`L - l + 1` hops
        (:func:`~graphrec.models.base.edges_within_hops`), so the work of the outer layers shrinks
        to the inner hops. Exact for the seed nodes when every neighbour was sampled (see the
        module docstring)."""
        check_both_directions(data)
        user_ids, item_ids = data["user"].n_id, data["item"].n_id
        x_user, x_item = self.user_embedding(user_ids), self.item_embedding(item_ids)
        deg_user, deg_item = self.degree[user_ids], self.degree[self.num_users + item_ids]
        seed_users, seed_items = nodes_within_hops(data, "user", 0), nodes_within_hops(data, "item", 0)
        total_user, total_item = x_user[:seed_users], x_item[:seed_items]
        for layer in range(self.num_layers):
            hops = self.num_layers - layer
            num_users = nodes_within_hops(data, "user", hops - 1)
            num_items = nodes_within_hops(data, "item", hops - 1)
            to_item = edges_within_hops(data, INTERACTS, hops)
            to_user = edges_within_hops(data, REV_INTERACTS, hops)
            new_item = self._aggregate(to_item, self._sampled_weights(to_item, deg_user, deg_item, num_items),
                                       x_user, num_items)
            new_user = self._aggregate(to_user, self._sampled_weights(to_user, deg_item, deg_user, num_users),
                                       x_item, num_users)
            x_user, x_item = new_user, new_item
            total_user = total_user + x_user[:seed_users]
            total_item = total_item + x_item[:seed_items]
        return total_user / (self.num_layers + 1), total_item / (self.num_layers + 1)

    @staticmethod
    def _sampled_weights(edge_index: Tensor | None, deg_src: Tensor, deg_dst: Tensor,
                         num_dst: int) -> Tensor | None:
        if edge_index is None or edge_index.numel() == 0:
            return None
        src, dst = edge_index
        sampled = torch.bincount(dst, minlength=num_dst).to(deg_dst.dtype)
        return (deg_src[src] * deg_dst[dst]).rsqrt() * deg_dst[dst] / sampled[dst]

    @staticmethod
    def _aggregate(edge_index: Tensor | None, weight: Tensor | None, x_src: Tensor, num_dst: int) -> Tensor:
        out = x_src.new_zeros(num_dst, x_src.size(1))
        if edge_index is None or weight is None:
            return out
        return out.index_add(0, edge_index[1], x_src[edge_index[0]] * weight.unsqueeze(1))

    def user_ego(self, users: Tensor) -> Tensor:
        return self.user_embedding(users)

    def item_ego(self, items: Tensor) -> Tensor:
        return self.item_embedding(items)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}, num_layers={self.num_layers}"

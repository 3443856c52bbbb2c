r"""One sampled computation graph per BPR mini-batch.

A BPR step scores triplets :math:`(u, i^+, i^-)` by
:math:`\hat y_{ui^+} - \hat y_{ui^-}`, so a message-passing model needs the :math:`L`-hop
neighbourhoods of the batch's users and of its positive and negative items. :func:`bpr_subgraph`
samples them in *one* call, with the distinct users and the distinct items as seeds, and returns
where each triplet's nodes sit in the subgraph, so that a model can run on the subgraph and index
its output rows directly.

The seeds go through :meth:`~torch_geometric.sampler.BaseSampler.sample_from_edges` as the
pseudo-edges :math:`(u, i^+)` and :math:`(u, i^-)`: that is the public sampler entry point taking
seeds of two node types, and PyG's ``edge_sample`` already de-duplicates them and returns the
inverse indices, for PyG's sampler and for :class:`TorchNeighborSampler` alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader.utils import filter_hetero_data
from torch_geometric.sampler import BaseSampler, EdgeSamplerInput, HeteroSamplerOutput
from torch_geometric.typing import EdgeType

from graphrec.graph.hetero import INTERACTS
from graphrec.sampling.loader import sliceable_view


@dataclass(frozen=True)
class BPRBatch:
    """A sampled subgraph and the local positions of a batch of BPR triplets inside it.

    ``data[t].n_id`` maps local node ids of type ``t`` to global ones, so
    ``data["user"].n_id[users]`` are the triplets' users, ``data["item"].n_id[pos]`` their
    positive and ``data["item"].n_id[neg]`` their negative items (``neg`` has the shape of the
    negatives that were passed: ``(B,)`` or ``(B, K)``). The seeds are the first
    ``data[t].num_sampled_nodes[0]`` nodes of their type.
    """

    data: HeteroData
    users: Tensor
    pos: Tensor
    neg: Tensor

    @property
    def batch_size(self) -> int:
        return self.users.numel()


def bpr_subgraph(sampler: BaseSampler, users: Tensor, pos: Tensor, neg: Tensor, *,
                 data: HeteroData | None = None, edge_type: EdgeType = INTERACTS) -> BPRBatch:
    """Sample one computation graph for the users and items of ``(users, pos, neg)`` triplets.

    ``users`` and ``pos`` have shape ``(B,)``, ``neg`` ``(B,)`` or ``(B, K)``; ``edge_type``
    names the user and item node types. Without ``data`` the subgraph holds the structure only
    (``n_id``, ``num_nodes``, ``edge_index``, ``e_id`` and the per-hop counts), which is all an
    embedding model needs; with the full graph ``data`` its node and edge attributes (such as
    modality features ``x``) are sliced in as PyG's loaders do, with the sampler's indices, so
    ``data`` must be on the sampler's device.
    """
    users, pos, neg = (torch.as_tensor(t, dtype=torch.long) for t in (users, pos, neg))
    if users.dim() != 1 or pos.shape != users.shape or neg.shape[:1] != users.shape or neg.dim() > 2:
        raise ValueError(f"expected users (B,), pos (B,) and neg (B,) or (B, K); got {tuple(users.shape)}, "
                         f"{tuple(pos.shape)} and {tuple(neg.shape)}")
    num_negatives = neg.shape[1] if neg.dim() == 2 else 1
    pseudo_sources = torch.cat([users, users.repeat_interleave(num_negatives)])
    pseudo_targets = torch.cat([pos, neg.reshape(-1)])
    out = sampler.sample_from_edges(EdgeSamplerInput(None, pseudo_sources, pseudo_targets, input_type=edge_type))
    source_index, target_index = out.metadata[1]  # PyG's edge_label_index: inverse indices into the seeds
    batch = len(users)
    subgraph = _to_hetero_data(out, sampler, data)
    return BPRBatch(data=subgraph, users=source_index[:batch], pos=target_index[:batch],
                    neg=target_index[batch:].reshape(neg.shape))


def _to_hetero_data(out: HeteroSamplerOutput, sampler: BaseSampler, data: HeteroData | None) -> HeteroData:
    perm = sampler.edge_permutation or {}
    edge_ids = {key: (perm[key][edge] if perm.get(key) is not None else edge)
                for key, edge in (out.edge or {}).items() if edge is not None}
    restore = None
    if data is not None:
        # filter_hetero_data applies the permutation itself.
        view, restore = sliceable_view(data)
        subgraph = filter_hetero_data(view, dict(out.node), dict(out.row), dict(out.col), dict(out.edge or {}),
                                      sampler.edge_permutation)
    else:
        subgraph = HeteroData()
        for node_type, node in out.node.items():
            subgraph[node_type].num_nodes = node.numel()
        for key in out.row:
            subgraph[key].edge_index = torch.stack([out.row[key], out.col[key]])
    for node_type, node in out.node.items():
        subgraph[node_type].n_id = node
    for key, edge in edge_ids.items():
        subgraph[key].e_id = edge
    subgraph.set_value_dict("num_sampled_nodes", out.num_sampled_nodes)
    subgraph.set_value_dict("num_sampled_edges", out.num_sampled_edges)
    return subgraph if restore is None else restore(subgraph)

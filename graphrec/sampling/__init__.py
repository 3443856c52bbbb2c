"""Heterogeneous neighbour sampling: PyG's loaders, with a plain-torch sampler when pyg-lib is absent."""

from graphrec.sampling.bpr_batches import BPRBatch, bpr_subgraph
from graphrec.sampling.loader import (
    link_neighbor_loader,
    make_neighbor_sampler,
    neighbor_loader,
    sliceable_view,
    uses_pyg_lib,
)
from graphrec.sampling.torch_sampler import TorchNeighborSampler, merge_nodes, sample_csc

__all__ = [
    "BPRBatch",
    "TorchNeighborSampler",
    "bpr_subgraph",
    "link_neighbor_loader",
    "make_neighbor_sampler",
    "merge_nodes",
    "neighbor_loader",
    "sample_csc",
    "sliceable_view",
    "uses_pyg_lib",
]

"""Mini-batch loaders over sampled neighbourhoods: PyG's loaders with the best sampler available.

PyG's :class:`~torch_geometric.sampler.NeighborSampler` needs ``pyg-lib`` (or ``torch-sparse``)
to sample; where it is installed graphrec uses it, and otherwise
:class:`~graphrec.sampling.torch_sampler.TorchNeighborSampler`. Both plug into PyG's
:class:`~torch_geometric.loader.NodeLoader` / :class:`~torch_geometric.loader.LinkLoader`, so
the mini-batches are the same kind of :class:`~torch_geometric.data.HeteroData` either way.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import BaseSampler, NegativeSampling, NeighborSampler
from torch_geometric.typing import EdgeType, NodeType

from graphrec.sampling.torch_sampler import NumNeighborsType, TorchNeighborSampler


def uses_pyg_lib() -> bool:
    """Whether ``pyg-lib`` is importable, so that PyG's own neighbour sampler can run."""
    return bool(torch_geometric.typing.WITH_PYG_LIB)


def make_neighbor_sampler(data: HeteroData, num_neighbors: NumNeighborsType, *, replace: bool = False,
                          seed: int | None = None, device: torch.device | str = "cpu") -> BaseSampler:
    """PyG's :class:`~torch_geometric.sampler.NeighborSampler` if ``pyg-lib`` is there, else ours.

    ``seed`` seeds :class:`TorchNeighborSampler`'s own generator. PyG's sampler draws from
    ``pyg-lib``'s generator, which has no per-sampler seed; a ``seed`` given there only warns.
    ``device`` other than the CPU always gives :class:`TorchNeighborSampler` on that device, since
    PyG's sampler runs on the CPU only.
    """
    if torch.device(device).type != "cpu":
        return TorchNeighborSampler(data, num_neighbors, replace=replace, seed=seed, device=device)
    if uses_pyg_lib():
        if seed is not None:
            warnings.warn("PyG's NeighborSampler (pyg-lib) cannot be seeded per sampler; seed torch's global "
                          "generator (torch.manual_seed) for reproducible samples", stacklevel=2)
        return NeighborSampler(data, num_neighbors, replace=replace)
    return TorchNeighborSampler(data, num_neighbors, replace=replace, seed=seed)


def neighbor_loader(data: HeteroData, num_neighbors: NumNeighborsType,
                    input_nodes: NodeType | tuple[NodeType, Tensor | None], batch_size: int,
                    shuffle: bool = False, seed: int | None = None, *, replace: bool = False,
                    **kwargs) -> NodeLoader:
    """A :class:`~torch_geometric.loader.NodeLoader` of sampled computation graphs around seed nodes.

    ``input_nodes`` is a node type (all its nodes) or ``(node type, ids or mask)``. ``seed`` fixes
    both the shuffling order and the neighbour draws. Other keyword arguments go to the loader
    (e.g. ``num_workers``, ``drop_last``, ``transform``).
    """
    sampler = make_neighbor_sampler(data, num_neighbors, replace=replace, seed=seed)
    view, transform = sliceable_view(data, kwargs.pop("transform", None))
    return NodeLoader(view, node_sampler=sampler, input_nodes=input_nodes, batch_size=batch_size,
                      shuffle=shuffle, generator=_loader_generator(seed), transform=transform, **kwargs)


def link_neighbor_loader(data: HeteroData, num_neighbors: NumNeighborsType,
                         edge_label_index: EdgeType | tuple[EdgeType, Tensor | None], batch_size: int,
                         shuffle: bool = False, seed: int | None = None, *, replace: bool = False,
                         neg_sampling: NegativeSampling | None = None, **kwargs) -> LinkLoader:
    """A :class:`~torch_geometric.loader.LinkLoader` of sampled computation graphs around seed edges.

    ``edge_label_index`` is an edge type (all its edges) or ``(edge type, (2, E) index)``;
    ``neg_sampling`` is PyG's (``"binary"`` or ``"triplet"``).
    """
    sampler = make_neighbor_sampler(data, num_neighbors, replace=replace, seed=seed)
    view, transform = sliceable_view(data, kwargs.pop("transform", None))
    return LinkLoader(view, link_sampler=sampler, edge_label_index=edge_label_index, neg_sampling=neg_sampling,
                      batch_size=batch_size, shuffle=shuffle, generator=_loader_generator(seed),
                      transform=transform, **kwargs)


def _loader_generator(seed: int | None) -> torch.Generator | None:
    # A separate generator from the sampler's, so the shuffling order does not shift the draws.
    return None if seed is None else torch.Generator().manual_seed(seed)


def sliceable_view(data: HeteroData, transform: Callable[[HeteroData], Any] | None = None,
                   ) -> tuple[HeteroData, Callable[[HeteroData], Any] | None]:
    """``data`` without per-node Python lists, and a transform that slices them back in by ``n_id``.

    PyG's loaders slice every node attribute with tensor indexing and refuse Python lists
    (such as the ``names`` of entity nodes). The returned view holds everything else (sharing
    the tensors); the returned transform adds ``batch[type][key]``, the list entries of the
    batch's nodes, before calling ``transform``. Without such lists, ``data`` and ``transform``
    come back unchanged.
    """
    lists = {(node_type, key): np.asarray(value, dtype=object)
             for node_type in data.node_types for key, value in data[node_type].items()
             if isinstance(value, (list, tuple)) and data[node_type].is_node_attr(key)}
    if not lists:
        return data, transform
    view = copy.copy(data)
    for node_type, key in lists:
        del view[node_type][key]
    return view, _RestoreLists(lists, transform)


class _RestoreLists:
    """Add back per-node Python lists to a sampled batch (a class, so loader workers can pickle it)."""

    def __init__(self, lists: dict[tuple[str, str], np.ndarray], then: Callable[[HeteroData], Any] | None) -> None:
        self.lists = lists
        self.then = then

    def __call__(self, batch: HeteroData) -> Any:
        for (node_type, key), values in self.lists.items():
            batch[node_type][key] = values[batch[node_type].n_id.numpy()].tolist()
        return batch if self.then is None else self.then(batch)

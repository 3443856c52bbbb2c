r"""A vectorised heterogeneous neighbour sampler in plain torch, behind PyG's sampler interface.

Why this exists: PyG's :class:`~torch_geometric.sampler.NeighborSampler` delegates the actual
sampling to compiled kernels from ``pyg-lib`` or ``torch-sparse``. ``pyg-lib`` publishes no
wheels on PyPI (only on PyG's own index, per torch/CUDA build) and ``torch-sparse`` compiles
from source for a quarter of an hour, so a plain ``pip install graphrec`` has neither.
:class:`TorchNeighborSampler` implements the same (non-temporal, non-disjoint, directional)
sampling with a handful of torch tensor operations and subclasses
:class:`~torch_geometric.sampler.BaseSampler`, so PyG's own
:class:`~torch_geometric.loader.NodeLoader` and :class:`~torch_geometric.loader.LinkLoader`
drive it and return the usual :class:`~torch_geometric.data.HeteroData` mini-batches
(``n_id``, ``e_id``, ``batch_size``, ``num_sampled_nodes``, ``num_sampled_edges``, ``input_id``).
:func:`graphrec.sampling.make_neighbor_sampler` uses PyG's sampler whenever ``pyg-lib`` is there.

The algorithm, as in PyG: every edge type :math:`(s, r, d)` is stored once in CSC form
(edges grouped by destination, :func:`torch_geometric.sampler.utils.to_hetero_csc`). Starting
from the seed nodes, hop :math:`h = 1, \dots, L` visits every edge type whose destination type
holds nodes that were *added* at hop :math:`h - 1` (the seeds at hop 1) and draws for each such
node :math:`v`

.. math::
    \min(k_{r,h}, \deg_r(v)) \text{ distinct in-neighbours, uniformly}
    \qquad (\text{all } \deg_r(v) \text{ if } k_{r,h} = -1;\;
    k_{r,h} \text{ with replacement if } \texttt{replace}),

where :math:`k_{r,h}` is the fan-out of relation :math:`r` at hop :math:`h`. Newly reached
source nodes are de-duplicated per node type in first-occurrence order after the seeds, become
the frontier of the next hop, and every drawn edge is kept, relabelled to local ids.

Uniform draws without replacement use Floyd's algorithm (Bentley & Floyd, CACM 1987) run for all
frontier nodes at once: for :math:`j = \deg - k, \dots, \deg - 1` draw :math:`t \sim U\{0..j\}`
and keep :math:`t`, or :math:`j` if :math:`t` was already kept. It yields a uniformly random
:math:`k`-subset, needs :math:`O(k)` memory per node (never :math:`O(\deg)`, so a hub of
degree :math:`10^5` costs as much as any other node) and :math:`O(k^2)` comparisons, which is
small for GNN fan-outs. Memory per batch is therefore bounded by batch size times the product of
fan-outs, plus the CSC arrays built once.

Every step is a tensor operation, so the sampler runs on a GPU as it is (``device="cuda"``): the CSC
arrays then live in GPU memory, next to the model that reads the batch. A hop still waits for a
few data-dependent sizes (masks, ``unique``), so a batch costs a few hundred small kernels,
about the same at any batch size; on an H100 that made Gowalla epochs 2.6 to 2.9 times faster
than sampling on the CPU (``benchmarks/gpu_gowalla.py``). On a GPU the draws come from a CUDA generator
re-seeded for every batch from the sampler's own CPU generator, which stays the one source of
randomness, so a checkpoint of it resumes on any device.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    HeteroSamplerOutput,
    NegativeSampling,
    NodeSamplerInput,
)
from torch_geometric.sampler.base import NumNeighbors
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample
from torch_geometric.sampler.utils import to_hetero_csc
from torch_geometric.typing import EdgeType, NodeType

NumNeighborsType: TypeAlias = list[int] | dict[EdgeType, list[int]] | NumNeighbors


class TorchNeighborSampler(BaseSampler):
    r"""Uniform heterogeneous neighbour sampling in plain torch (see the module docstring).

    Args:
        data: the full graph.
        num_neighbors: fan-out per hop, for every edge type (a list) or per edge type (a dict,
            every edge type listed, all lists of the same length); ``-1`` takes all neighbours,
            ``0`` none.
        replace: draw ``k`` neighbours with replacement instead of distinct ones.
        seed: seed of the sampler's own :class:`torch.Generator`; the same seed gives the same
            sequence of samples. ``None`` draws a fresh seed. In a
            :class:`~torch.utils.data.DataLoader` worker the generator is re-seeded once from
            this seed and the worker's seed, so that workers do not repeat each other.
        device: where the CSC arrays live and the neighbour draws run. The sampled nodes and edges
            are on this device; PyG's seed inputs, and so the ``metadata`` of edge sampling and
            any negatives, stay on the CPU. A GPU draws other random numbers than the CPU for the
            same seed (see the module docstring): different, equally distributed samples.

    ``edge`` in the output holds the *original* edge ids of ``data`` (so
    :attr:`edge_permutation` is ``None``). Only what the loaders need of
    :class:`~torch_geometric.sampler.NeighborSampler` is offered: no temporal, weighted,
    disjoint or induced-subgraph sampling.
    """

    def __init__(self, data: HeteroData, num_neighbors: NumNeighborsType, replace: bool = False,
                 seed: int | None = None, device: torch.device | str = "cpu") -> None:
        if not isinstance(data, HeteroData):
            raise TypeError(f"{type(self).__name__} samples heterogeneous graphs; got {type(data).__name__} "
                            f"(wrap a homogeneous graph with Data.to_heterogeneous())")
        self.node_types, self.edge_types = data.metadata()
        self.num_nodes: dict[NodeType, int] = {name: int(data[name].num_nodes) for name in self.node_types}
        self.num_neighbors = num_neighbors if isinstance(num_neighbors, NumNeighbors) else NumNeighbors(num_neighbors)
        self.fan_out: dict[EdgeType, list[int]] = self.num_neighbors.get_values(self.edge_types)
        for edge_type, values in self.fan_out.items():
            if any(int(value) < -1 for value in values):
                raise ValueError(f"fan-outs must be -1 (all neighbours) or >= 0; got {values} for {edge_type}")
        self.num_hops = self.num_neighbors.num_hops
        self.replace = replace
        # ``edge_sample`` reads these two; this sampler is never disjoint and never temporal.
        self.disjoint = False
        self.node_time = None

        self.device = torch.empty(0, device=device).device  # concrete: 'cuda' becomes 'cuda:0'
        colptr, row, perm = to_hetero_csc(data, device="cpu")
        self.colptr: dict[EdgeType, Tensor] = {key: value.to(self.device) for key, value in colptr.items()}
        self.row: dict[EdgeType, Tensor] = {key: value.to(self.device) for key, value in row.items()}
        # perm[p] is the original id of the edge at CSC position p (None: already in CSC order).
        self.csc_to_edge_id: dict[EdgeType, Tensor | None] = {
            key: None if value is None else value.to(self.device) for key, value in perm.items()}

        self.generator = torch.Generator()
        self.seed = int(self.generator.seed() if seed is None else seed) % 2**63
        self.generator.manual_seed(self.seed)
        self._device_generator = None if self.device.type == "cpu" else torch.Generator(device=self.device)
        self._worker_id: int | None = None

    def __repr__(self) -> str:
        device = "" if self.device.type == "cpu" else f", device={str(self.device)!r}"
        return (f"{type(self).__name__}(num_neighbors={self.num_neighbors.values}, replace={self.replace}, "
                f"seed={self.seed}{device})")

    # ------------------------------------------------------------------ BaseSampler interface
    def sample_from_nodes(self, index: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        """Sample the computation graph of ``index.node`` (of type ``index.input_type``)."""
        if index.input_type is None:
            raise ValueError(f"{type(self).__name__} needs the seed node type (NodeSamplerInput.input_type)")
        if index.time is not None:
            raise ValueError(f"{type(self).__name__} does not do temporal sampling (seed times were given)")
        return node_sample(index, self._sample)

    def sample_from_edges(self, index: EdgeSamplerInput,
                          neg_sampling: NegativeSampling | None = None) -> HeteroSamplerOutput:
        """Sample the computation graph of both ends of the seed edges (plus sampled negatives).

        The metadata (``edge_label_index``, or ``src_index`` / ``dst_pos_index`` / ``dst_neg_index``
        for triplet negative sampling) is PyG's, since PyG's ``edge_sample`` computes it.
        """
        if index.input_type is None:
            raise ValueError(f"{type(self).__name__} needs the seed edge type (EdgeSamplerInput.input_type)")
        if index.time is not None:
            raise ValueError(f"{type(self).__name__} does not do temporal sampling (seed times were given)")
        if neg_sampling is not None:
            neg_sampling = _GeneratorNegativeSampling(NegativeSampling.cast(neg_sampling), self._generator())
        return edge_sample(index, self._sample, self.num_nodes, self.disjoint, self.node_time, neg_sampling)

    # ------------------------------------------------------------------ sampling
    def _generator(self) -> torch.Generator:
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.id != self._worker_id:
            # Each worker holds a copy of this sampler; without re-seeding they would all draw
            # the same "random" neighbours.
            self.generator.manual_seed((self.seed * 1_000_003 + worker.seed) % 2**63)
            self._worker_id = worker.id
        return self.generator

    def _neighbor_generator(self) -> torch.Generator:
        """The generator of the neighbour draws, on the sampler's device."""
        generator = self._generator()
        if self._device_generator is None:
            return generator
        # Seeding the device's generator from the CPU one keeps that one the whole random state
        # (checkpoints hold it), at the cost of one draw per batch.
        return self._device_generator.manual_seed(int(torch.randint(2**62, (), generator=generator)))

    def _sample(self, seed: Mapping[NodeType, Tensor], seed_time: Mapping[NodeType, Tensor] | None = None,
                **kwargs) -> HeteroSamplerOutput:
        if seed_time is not None:
            raise ValueError(f"{type(self).__name__} does not do temporal sampling")
        generator = self._neighbor_generator()
        device = self.device
        nodes = {name: torch.empty(0, dtype=torch.long, device=device) for name in self.node_types}
        # frontier[type] = (global ids, local ids) of the nodes whose neighbours the next hop draws
        frontier: dict[NodeType, tuple[Tensor, Tensor]] = {}
        for name, ids in seed.items():
            ids = self._check_seed(name, ids)
            nodes[name] = ids
            frontier[name] = (ids, torch.arange(ids.numel(), device=device))
        num_sampled_nodes = {name: [nodes[name].numel()] for name in self.node_types}
        num_sampled_edges: dict[EdgeType, list[int]] = {edge_type: [] for edge_type in self.edge_types}
        rows: dict[EdgeType, list[Tensor]] = {edge_type: [] for edge_type in self.edge_types}
        cols: dict[EdgeType, list[Tensor]] = {edge_type: [] for edge_type in self.edge_types}
        edges: dict[EdgeType, list[Tensor]] = {edge_type: [] for edge_type in self.edge_types}

        for hop in range(self.num_hops):
            drawn: list[tuple[EdgeType, Tensor]] = []  # (edge type, global source ids) in draw order
            for edge_type in self.edge_types:
                _, _, target_type = edge_type
                fan_out = int(self.fan_out[edge_type][hop])
                if fan_out == 0 or target_type not in frontier:
                    num_sampled_edges[edge_type].append(0)
                    continue
                target_global, target_local = frontier[target_type]
                position, owner = sample_csc(self.colptr[edge_type], target_global, fan_out, self.replace,
                                             generator)
                perm = self.csc_to_edge_id[edge_type]
                edges[edge_type].append(perm[position] if perm is not None else position)
                cols[edge_type].append(target_local[owner])
                drawn.append((edge_type, self.row[edge_type][position]))
                num_sampled_edges[edge_type].append(position.numel())

            frontier = {}
            for name in self.node_types:
                parts = [(edge_type, sources) for edge_type, sources in drawn if edge_type[0] == name]
                if not parts:
                    num_sampled_nodes[name].append(0)
                    continue
                candidates = torch.cat([sources for _, sources in parts])
                first_new = nodes[name].numel()
                nodes[name], local = merge_nodes(nodes[name], candidates)
                for (edge_type, _), part in zip(parts, local.split([s.numel() for _, s in parts])):
                    rows[edge_type].append(part)
                new = nodes[name][first_new:]
                num_sampled_nodes[name].append(new.numel())
                if new.numel():
                    frontier[name] = (new, torch.arange(first_new, first_new + new.numel(), device=device))

        def concat(parts: list[Tensor]) -> Tensor:
            return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long, device=device)

        return HeteroSamplerOutput(
            node=nodes,
            row={edge_type: concat(rows[edge_type]) for edge_type in self.edge_types},
            col={edge_type: concat(cols[edge_type]) for edge_type in self.edge_types},
            edge={edge_type: concat(edges[edge_type]) for edge_type in self.edge_types},
            num_sampled_nodes=num_sampled_nodes,
            num_sampled_edges=num_sampled_edges,
        )

    def _check_seed(self, node_type: NodeType, ids: Tensor) -> Tensor:
        if node_type not in self.num_nodes:
            raise ValueError(f"unknown seed node type {node_type!r}; the graph has {self.node_types}")
        ids = ids.to(torch.long).reshape(-1)
        if ids.numel() == 0:
            return ids.to(self.device)
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= self.num_nodes[node_type]:
            raise ValueError(f"seed {node_type!r} ids must lie in [0, {self.num_nodes[node_type]}), "
                             f"got [{low}, {high}]")
        if torch.unique(ids).numel() != ids.numel():
            # Seeds must map one-to-one to the first local ids (PyG's loaders rely on it).
            raise ValueError(f"seed {node_type!r} ids contain duplicates; pass each node once")
        return ids.to(self.device)


def sample_csc(colptr: Tensor, targets: Tensor, fan_out: int, replace: bool = False,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""Draw in-neighbours of every node in ``targets`` from a CSC graph, all at once.

    ``colptr`` is the CSC pointer (node ``v``'s in-edges occupy positions
    ``colptr[v]:colptr[v + 1]``). ``targets`` may repeat nodes; each occurrence draws independently.
    Node ``targets[i]`` gets all its edges when ``fan_out == -1``, ``fan_out`` uniform draws with
    replacement when ``replace`` (none if it has no edge), and otherwise a uniformly random
    ``min(fan_out, degree)``-subset (Floyd's algorithm, see the module docstring).

    Returns ``(position, owner)``: the CSC positions of the drawn edges and, for each, the index
    into ``targets`` it was drawn for; grouped by owner in ``targets`` order. Everything stays on
    ``colptr``'s device (``targets`` is moved there); ``generator`` must be on it too.
    """
    device = colptr.device
    targets = targets.to(device, torch.long)
    start = colptr[targets]
    degree = colptr[targets + 1] - start
    if fan_out < 0:
        owner = torch.repeat_interleave(torch.arange(targets.numel(), device=device), degree)
        offset = (torch.arange(owner.numel(), device=device)
                  - torch.repeat_interleave(degree.cumsum(0) - degree, degree))
        return start[owner] + offset, owner

    if replace:
        offset = (torch.rand(targets.numel(), fan_out, generator=generator, dtype=torch.float64, device=device)
                  * degree.unsqueeze(1)).long()
        keep = (degree > 0).unsqueeze(1).expand(-1, fan_out)
    else:
        offset = torch.arange(fan_out, device=device).expand(targets.numel(), -1).clone()
        big = degree > fan_out
        if bool(big.any()):
            offset[big] = _floyd_subsets(degree[big], fan_out, generator)
        keep = offset < degree.unsqueeze(1)
    owner = torch.arange(targets.numel(), device=device).unsqueeze(1).expand(-1, fan_out)[keep]
    return start[owner] + offset[keep], owner


def _floyd_subsets(population: Tensor, size: int, generator: torch.Generator | None) -> Tensor:
    """A uniformly random ``size``-subset of ``range(population[i])`` per row (all > size)."""
    device = population.device
    chosen = torch.empty(population.numel(), size, dtype=torch.long, device=device)
    # A step's draw does not depend on the earlier choices, only the collision check does. A GPU
    # makes all steps' draws at once (a few large kernels instead of many small ones); the CPU
    # makes them step by step, which keeps each step's arrays in cache. Both read the random
    # stream in the same order, so a CPU sample is the same either way.
    block = 1 if device.type == "cpu" else size
    for first in range(0, size, block):
        steps = torch.arange(first, min(first + block, size), device=device).unsqueeze(1)
        upper = population - size + steps  # step j draws t from {0, ..., upper[j]}
        draws = (torch.rand(steps.numel(), population.numel(), generator=generator, dtype=torch.float64,
                            device=device) * (upper + 1)).long().minimum(upper)
        for offset in range(steps.numel()):  # a loop over the fan-out, vectorised over nodes
            step = first + offset
            taken = (chosen[:, :step] == draws[offset].unsqueeze(1)).any(1)
            chosen[:, step] = torch.where(taken, upper[offset], draws[offset])
    return chosen


def merge_nodes(existing: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
    """Append the candidates not yet in ``existing`` (first-occurrence order) and relabel them.

    ``existing`` holds distinct global ids whose positions are their local ids. Returns the
    extended node list and the local id of every candidate. Sort-based, so the cost depends on
    the sizes of the two tensors only, not on the size of the graph.
    """
    combined = torch.cat([existing, candidates])
    device = combined.device
    unique, inverse = torch.unique(combined, return_inverse=True)
    first = torch.full((unique.numel(),), combined.numel(), dtype=torch.long, device=device)
    first.scatter_reduce_(0, inverse, torch.arange(combined.numel(), device=device), reduce="amin")
    is_new = first >= existing.numel()
    new_first, order = first[is_new].sort()
    local_of_unique = first.clone()  # an existing node's first position is its local id
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device)
    local_of_unique[is_new] = existing.numel() + rank
    return torch.cat([existing, combined[new_first]]), local_of_unique[inverse[existing.numel():]]


class _GeneratorNegativeSampling(NegativeSampling):
    """PyG's negative sampling configuration, drawing from the sampler's generator.

    PyG's ``NegativeSampling.sample`` draws from torch's global generator; routing it through
    the sampler's own keeps ``seed`` meaningful for link loaders too.
    """

    def __init__(self, config: NegativeSampling, generator: torch.Generator) -> None:
        super().__init__(config.mode, config.amount, config.src_weight, config.dst_weight)
        self.generator = generator

    def sample(self, num_samples: int, endpoint: Literal["src", "dst"], num_nodes: int | None = None) -> Tensor:
        weight = self.src_weight if endpoint == "src" else self.dst_weight
        if weight is None:
            if num_nodes is None:
                raise ValueError("negative sampling without weights needs the number of nodes")
            return torch.randint(num_nodes, (num_samples,), generator=self.generator)
        if num_nodes is not None and weight.numel() != num_nodes:
            raise ValueError(f"negative-sampling weights must have one entry per node ({num_nodes}), "
                             f"got {weight.numel()}")
        return torch.multinomial(weight, num_samples, replacement=True, generator=self.generator)

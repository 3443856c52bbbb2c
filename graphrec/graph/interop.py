r"""The heterogeneous graph in other graph libraries: DGL (both ways) and networkx.

:func:`to_dgl` turns a PyG :class:`~torch_geometric.data.HeteroData` into a DGL
heterograph with the same node types and counts, the same canonical edge types
``(source, relation, target)`` with the same edges in the same order (DGL edge
id :math:`e` is PyG column :math:`e` of ``edge_index``), and every per-node and
per-edge tensor (``x``, ``item_index``, ``edge_weight`` ...) as ``ndata`` /
``edata``. :func:`from_dgl` is its inverse, so
``from_dgl(to_dgl(data))`` equals ``data`` up to what DGL cannot hold: Python
values such as the entity ``names`` lists, which :func:`to_dgl` names in a
warning.

DGL is optional and lives in its own environment: its last Linux release on
PyPI, 2.1.0, is built for torch 2.0 to 2.2.1, while graphrec's core runs on
current torch. ``make test-dgl`` (``bash scripts/test-dgl.sh``) builds that
environment (``.venv-dgl``: torch 2.2.1, dgl 2.1.0, numpy 1.x) and runs the
interop tests in it; see ``docs/dgl.md``. DGL is imported only inside the
functions, so this module imports without it.

:func:`~graphrec.graph.hetero.to_networkx` (undirected, small graphs) is
re-exported here so that all conversions live under one name.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.graph.hetero import to_networkx

if TYPE_CHECKING:
    import dgl

__all__ = ["DGL_REQUIREMENT", "from_dgl", "require_dgl", "to_dgl", "to_networkx"]

DGL_REQUIREMENT = (
    "graphrec's DGL interop needs dgl 2.1.0 with torch <= 2.2.1 and numpy < 2 (DGL's last Linux release "
    "on PyPI is 2.1.0, built for torch 2.0 to 2.2.1), so it runs in its own environment, not in graphrec's "
    "main one: `make test-dgl` (or `bash scripts/test-dgl.sh`) builds .venv-dgl from requirements-dgl.txt "
    "and runs the interop tests there; see docs/dgl.md"
)


def require_dgl() -> Any:
    """Import and return the ``dgl`` module, or raise :class:`ImportError` explaining how to get it.

    DGL that is installed but does not match the running torch fails in many ways
    (a missing ``libdgl_sparse_pytorch_<version>.so``, a numpy ABI error, ...); all of them
    become the same ImportError, with DGL's own message and the torch version in use.
    """
    try:
        import dgl
    except Exception as error:  # any failure to load DGL (not only ImportError) means no usable DGL here
        raise ImportError(f"DGL is not usable in this environment (torch {torch.__version__}; "
                          f"{type(error).__name__}: {error}). {DGL_REQUIREMENT}") from error
    return dgl


def to_dgl(data: HeteroData) -> dgl.DGLHeteroGraph:
    """Convert ``data`` to a DGL heterograph with the same node types, canonical edge types and edges.

    Every node type keeps its ``num_nodes`` (node types without edges and isolated nodes
    included), every edge type its ``edge_index`` in column order, and each tensor whose
    first dimension is the node (edge) count becomes ``ndata`` (``edata``) under its own
    name. Other attributes (Python lists such as entity ``names``, graph-level values)
    have no place in a DGL graph: they are left out and named in a :class:`UserWarning`.
    Node and edge ids are int64, as in PyG.
    """
    dgl = require_dgl()
    num_nodes = {}
    for node_type in data.node_types:
        if data[node_type].num_nodes is None:
            raise ValueError(f"node type {node_type!r} has no num_nodes (and no tensor to infer it from); "
                             f"DGL needs the node count of every type")
        num_nodes[node_type] = int(data[node_type].num_nodes)

    edges = {}
    for edge_type in data.edge_types:
        edge_index = data[edge_type].get("edge_index")
        if edge_index is None:
            raise ValueError(f"edge type {edge_type} has no edge_index (sparse adj_t is not supported); "
                             f"to_dgl needs a (2, E) edge_index for every edge type")
        edges[edge_type] = (edge_index[0], edge_index[1])

    graph = dgl.heterograph(edges, num_nodes_dict=num_nodes, idtype=torch.int64)

    left_out = [f"{key} (graph attribute)" for key in data._global_store]
    for node_type in data.node_types:
        count = num_nodes[node_type]
        for key, value in data[node_type].items():
            if key == "num_nodes":
                continue
            if _is_aligned(value, count):
                graph.nodes[node_type].data[key] = value
            else:
                left_out.append(f"{node_type}.{key} ({_describe(value)})")
    for edge_type in data.edge_types:
        count = int(edges[edge_type][0].numel())
        for key, value in data[edge_type].items():
            if key == "edge_index":
                continue
            if _is_aligned(value, count):
                graph.edges[edge_type].data[key] = value
            else:
                left_out.append(f"{'__'.join(edge_type)}.{key} ({_describe(value)})")
    if left_out:
        warnings.warn(f"to_dgl: DGL holds only per-node and per-edge tensors; left out: {', '.join(left_out)}",
                      UserWarning, stacklevel=2)
    return graph


def from_dgl(graph: dgl.DGLHeteroGraph) -> HeteroData:
    """Convert a DGL graph back to :class:`~torch_geometric.data.HeteroData`.

    Node types keep their counts and ``ndata``, canonical edge types their edges in
    edge-id order (as a ``(2, E)`` int64 ``edge_index``) and their ``edata``. A homogeneous
    DGL graph comes back with DGL's default types ``_N`` and ``("_N", "_E", "_N")``.
    """
    require_dgl()
    data = HeteroData()
    for node_type in graph.ntypes:
        data[node_type].num_nodes = int(graph.num_nodes(node_type))
        for key, value in graph.nodes[node_type].data.items():
            data[node_type][key] = value
    for edge_type in graph.canonical_etypes:
        source, target = graph.edges(order="eid", etype=edge_type)
        data[edge_type].edge_index = torch.stack([source, target]).to(torch.long)
        for key, value in graph.edges[edge_type].data.items():
            data[edge_type][key] = value
    return data


def _is_aligned(value: Any, count: int) -> bool:
    return isinstance(value, Tensor) and value.dim() >= 1 and value.size(0) == count


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)}"
    return type(value).__name__

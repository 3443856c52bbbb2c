"""Graphs built from a dataset: the heterogeneous PyG graph, the normalised adjacency and the item–item
content graphs."""

from graphrec.graph.adjacency import (
    SymmetricPropagation,
    WeightedPropagation,
    normalized_adjacency,
    propagate,
    propagate_weighted,
    symmetric_csr_pattern,
)
from graphrec.graph.content import content_graph, content_graphs, knn_cosine_graph, symmetric_normalize
from graphrec.graph.hetero import (
    ENTITY_NODE_TYPES,
    INTERACTS,
    GraphConfig,
    build_graph,
    chosen_modalities,
    entity_node_types,
    graph_statistics,
    item_entities,
    item_modalities,
    modality_node_types,
    to_networkx,
    user_entities,
    user_entity_node_types,
    user_modalities,
    user_modality_node_types,
)

__all__ = [
    "ENTITY_NODE_TYPES",
    "INTERACTS",
    "GraphConfig",
    "SymmetricPropagation",
    "WeightedPropagation",
    "build_graph",
    "chosen_modalities",
    "content_graph",
    "content_graphs",
    "entity_node_types",
    "graph_statistics",
    "item_entities",
    "item_modalities",
    "knn_cosine_graph",
    "modality_node_types",
    "normalized_adjacency",
    "propagate",
    "propagate_weighted",
    "symmetric_csr_pattern",
    "symmetric_normalize",
    "to_networkx",
    "user_entities",
    "user_entity_node_types",
    "user_modalities",
    "user_modality_node_types",
]

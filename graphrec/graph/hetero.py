"""The heterogeneous graph of a dataset: users, items, modality nodes and side entities.

:func:`build_graph` turns a :class:`~graphrec.data.dataset.Dataset` into a PyG
:class:`~torch_geometric.data.HeteroData` with

========================  ===============================================================
node type                 what
========================  ===============================================================
``user``, ``item``        one node per user / item index (``num_nodes``)
``<modality>``            e.g. ``text``, ``image``: one node per item that *has* the
                          modality; ``x`` its feature row, ``item_index`` its item
``genre``, ``category``,  one node per distinct value of the ``genres``, ``categories``,
``brand``                 ``brand`` item column; ``names`` the values (sorted)
``user_<modality>``       e.g. ``user_text``: one node per user that has the user modality;
                          ``x`` its feature row, ``user_index`` its user
``user_<column>``         e.g. ``user_age``, ``user_occupation``: one node per value (or, for
                          a numeric column with many values, per quantile bucket) of a user
                          attribute column; ``names`` the values
========================  ===============================================================

and the edge types ``(user, interacts, item)`` (training interactions only, each
pair once), ``(item, has_<modality>, <modality>)``, ``(item, has_<entity>, <entity>)``,
``(user, has_user_<modality>, user_<modality>)`` and ``(user, has_user_<column>,
user_<column>)``, each with its reverse ``rev_<relation>`` unless
``GraphConfig.reverse_edges`` is False.

Which user columns become entities by default: every attribute column with between 2 and
``max(2, users / 2)`` distinct values (an id-like column such as a zip code, or a free-text
self-description, has nearly one value per user and says nothing a user's own embedding
does not); a numeric column with more than ``USER_NUMERIC_BUCKETS`` values is cut into that
many quantile buckets (ages become age groups).
Validation and test interactions never enter the graph: they are what the model
is judged on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.errors import GraphrecError

USER = "user"
ITEM = "item"
INTERACTS = (USER, "interacts", ITEM)
REVERSE_PREFIX = "rev_"
REV_INTERACTS = (ITEM, REVERSE_PREFIX + "interacts", USER)

#: item column -> node type of its entities; other columns keep their name as node type.
ENTITY_NODE_TYPES: dict[str, str] = {"genres": "genre", "categories": "category", "brand": "brand"}
#: Prefix of the node types on the user side: ``user_<column>`` entities, ``user_<modality>`` features.
USER_PREFIX = "user_"
#: How many quantile buckets a numeric user column with more distinct values than this is cut into.
USER_NUMERIC_BUCKETS = 8


@dataclass(frozen=True)
class GraphConfig:
    """Which parts of a dataset become nodes and edges.

    ``entities``: item columns whose values become entity nodes (absent or empty columns are skipped).
    ``modalities``: modality names to attach, ``None`` for all of ``dataset.features``.
    ``reverse_edges``: add ``rev_<relation>`` edges so that messages flow both ways.
    ``user_entities``: user columns whose values become ``user_<column>`` entity nodes, ``None``
    for the default choice (see the module docstring), ``()`` for none.
    ``user_modalities``: user modality names to attach, ``None`` for all of ``dataset.user_features``.
    """

    entities: tuple[str, ...] = ("genres", "categories", "brand")
    modalities: tuple[str, ...] | None = None
    reverse_edges: bool = True
    user_entities: tuple[str, ...] | None = None
    user_modalities: tuple[str, ...] | None = None


def chosen_modalities(dataset: Dataset, chosen: Sequence[str] | None) -> list[str]:
    """The modalities to use: those ``chosen``, else (``None``) every one ``dataset`` has."""
    return list(dataset.features) if chosen is None else list(chosen)


def required_modalities(dataset: Dataset, chosen: Sequence[str] | None, model: str, purpose: str) -> list[str]:
    """:func:`chosen_modalities` for a model that cannot run without item features (``purpose``: what
    it needs them for): a :class:`~graphrec.errors.GraphrecError` when there is none, or one is absent."""
    names = chosen_modalities(dataset, chosen)
    if not names:
        raise GraphrecError(f"model {model!r} needs item features for {purpose}, but dataset {dataset.name!r} "
                            f"has no modality; run `graphrec encode` first")
    missing = [name for name in names if name not in dataset.features]
    if missing:
        raise GraphrecError(f"dataset {dataset.name!r} has no modality {missing}")
    return names


def build_graph(dataset: Dataset, config: GraphConfig = GraphConfig()) -> HeteroData:
    """Build the heterogeneous graph of ``dataset`` from its training interactions."""
    data = HeteroData()
    data[USER].num_nodes = dataset.num_users
    data[ITEM].num_nodes = dataset.num_items

    users, items = dataset.pairs("train")
    pairs = np.unique(users * dataset.num_items + items)
    _add_relation(data, INTERACTS, np.stack([pairs // dataset.num_items, pairs % dataset.num_items]),
                  config.reverse_edges)

    modalities = chosen_modalities(dataset, config.modalities)
    unknown = [name for name in modalities if name not in dataset.features]
    if unknown:
        raise GraphrecError(f"dataset {dataset.name!r} has no modality {unknown}; "
                            f"it has {sorted(dataset.features) or 'none'}")
    entity_columns = [column for column in config.entities if column in dataset.items.columns]
    node_types = [ENTITY_NODE_TYPES.get(column, column) for column in entity_columns] + modalities
    clashes = sorted({name for name in node_types if node_types.count(name) > 1 or name in (USER, ITEM)})
    if clashes:
        raise GraphrecError(f"node type name(s) {clashes} used twice (modalities and entity columns must "
                            f"differ from each other and from 'user' / 'item')")

    for name in modalities:
        _add_feature_nodes(data, ITEM, name, dataset.features[name], config.reverse_edges)

    for column in entity_columns:
        node_type = ENTITY_NODE_TYPES.get(column, column)
        item_index, entity_index, names = _entity_edges(dataset.items[column])
        if not names:  # the column exists but holds no value: no node type for it
            continue
        data[node_type].num_nodes = len(names)
        data[node_type].names = names
        _add_relation(data, (ITEM, f"has_{node_type}", node_type), np.stack([item_index, entity_index]),
                      config.reverse_edges)
    _add_user_side(data, dataset, config)
    return data


def default_user_entity_columns(dataset: Dataset) -> list[str]:
    """The user columns that become entities when ``GraphConfig.user_entities`` is None. Columns
    the dataset's reader records as its hidden truth (``latent_user_columns``: the synthetic
    set's ``taste_cluster``, which decides what a user picks) are left out: they would hand a
    model the answer."""
    limit = max(2, dataset.num_users // 2)
    reader = dataset.manifest.get("provenance", {}).get("reader", {})
    latent = set(reader.get("latent_user_columns", [])) if isinstance(reader, dict) else set()
    chosen = []
    for column in dataset.users.columns:
        if column in ("user", "user_id") or column in latent:
            continue
        values = dataset.users[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            distinct = min(int(values.nunique()), USER_NUMERIC_BUCKETS)
        else:
            try:
                distinct = int(values.explode().nunique())
            except TypeError:  # unhashable cells (dicts): not an attribute
                continue
        if 2 <= distinct <= limit:
            chosen.append(column)
    return chosen


def user_entity_values(column: pd.Series) -> pd.Series:
    """One user column as the values its entity nodes are named by: numeric columns with many
    distinct values become quantile buckets named by the smallest and largest value in each
    (``"22-25"``); other cells stay as they are."""
    if (pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
            and column.nunique() > USER_NUMERIC_BUCKETS):
        numbers = column.astype("float64")
        buckets = pd.qcut(numbers, USER_NUMERIC_BUCKETS, labels=False, duplicates="drop")
        ranges = numbers.groupby(buckets).agg(["min", "max"])
        names = {bucket: f"{low:g}" if low == high else f"{low:g}-{high:g}"
                 for bucket, (low, high) in ranges.iterrows()}
        return buckets.map(names).astype(object)
    return column


def _add_user_side(data: HeteroData, dataset: Dataset, config: GraphConfig) -> None:
    modalities = list(dataset.user_features) if config.user_modalities is None else list(config.user_modalities)
    unknown = [name for name in modalities if name not in dataset.user_features]
    if unknown:
        raise GraphrecError(f"dataset {dataset.name!r} has no user modality {unknown}; "
                            f"it has {sorted(dataset.user_features) or 'none'}")
    if config.user_entities is None:
        columns = default_user_entity_columns(dataset)
    else:
        columns = list(config.user_entities)
        attributes = [column for column in dataset.users.columns if column not in ("user", "user_id")]
        missing = [column for column in columns if column not in attributes]
        if missing:
            raise GraphrecError(f"user_entities {missing} are not attribute columns of dataset {dataset.name!r}; "
                                f"its user columns are {attributes}")
    node_types = [USER_PREFIX + name for name in modalities + columns]
    clashes = sorted({name for name in node_types if node_types.count(name) > 1 or name in data.node_types})
    if clashes:
        raise GraphrecError(f"user-side node type name(s) {clashes} used twice (user modalities and user "
                            f"columns must differ from each other and from the item side's node types)")
    for name in modalities:
        _add_feature_nodes(data, USER, USER_PREFIX + name, dataset.user_features[name], config.reverse_edges)
    for column in columns:
        node_type = USER_PREFIX + column
        user_index, entity_index, names = _entity_edges(user_entity_values(dataset.users[column]))
        if not names:
            continue
        data[node_type].num_nodes = len(names)
        data[node_type].names = names
        _add_relation(data, (USER, f"has_{node_type}", node_type), np.stack([user_index, entity_index]),
                      config.reverse_edges)


def _add_feature_nodes(data: HeteroData, owner: str, node_type: str, feature: ModalityFeatures,
                       reverse: bool) -> None:
    """One node per ``owner`` row (item or user) that has the modality: ``x`` its feature row and
    ``<owner>_index`` the row, linked by ``(owner, has_<node type>, node type)``."""
    present = np.flatnonzero(np.asarray(feature.mask, dtype=bool))
    data[node_type].x = torch.from_numpy(np.ascontiguousarray(feature.values[present], dtype=np.float32))
    data[node_type][f"{owner}_index"] = torch.from_numpy(present.astype(np.int64))
    _add_relation(data, (owner, f"has_{node_type}", node_type), np.stack([present, np.arange(len(present))]),
                  reverse)


def _add_relation(data: HeteroData, edge_type: tuple[str, str, str], edge_index: np.ndarray,
                  reverse: bool) -> None:
    index = torch.from_numpy(np.ascontiguousarray(edge_index, dtype=np.int64)).reshape(2, -1)
    data[edge_type].edge_index = index
    if reverse:
        source, relation, target = edge_type
        data[target, REVERSE_PREFIX + relation, source].edge_index = index.flip(0)


def _entity_edges(column: pd.Series) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(item index, entity index, entity names) of one item column, each pair once.

    Cells may be a list / array of values (several edges), one value, or missing; missing
    values and empty strings carry no entity and give no edge.
    """
    values = pd.Series(column.to_numpy(dtype=object), index=np.arange(len(column))).explode()
    values = values.dropna().astype(str).str.strip()
    values = values[values != ""]
    codes, names = pd.factorize(values, sort=True)
    keys = np.unique(values.index.to_numpy(np.int64) * max(len(names), 1) + codes)
    return keys // max(len(names), 1), keys % max(len(names), 1), [str(name) for name in names]


# ---------------------------------------------------------------------------- model inputs
def modality_node_types(data: HeteroData) -> list[str]:
    """Node types that hold one modality (they carry ``x`` and ``item_index``)."""
    return [name for name in data.node_types if "item_index" in data[name] and "x" in data[name]]


def entity_node_types(data: HeteroData) -> list[str]:
    """Node types that hold side entities (they carry ``names`` and an ``item -> entity`` relation)."""
    return [name for name in data.node_types
            if "names" in data[name] and (ITEM, f"has_{name}", name) in data.edge_types]


def user_modality_node_types(data: HeteroData) -> list[str]:
    """Node types that hold one user modality (they carry ``x`` and ``user_index``)."""
    return [name for name in data.node_types if "user_index" in data[name] and "x" in data[name]]


def user_entity_node_types(data: HeteroData) -> list[str]:
    """Node types that hold user attribute entities (``names`` and a ``user -> entity`` relation)."""
    return [name for name in data.node_types
            if "names" in data[name] and (USER, f"has_{name}", name) in data.edge_types]


def item_modalities(data: HeteroData) -> dict[str, tuple[Tensor, Tensor]]:
    """Each modality as an item-aligned ``(features [I, F], mask [I])``; missing rows are zeros."""
    return {name: _aligned(data[name], "item_index", data[ITEM].num_nodes) for name in modality_node_types(data)}


def user_modalities(data: HeteroData) -> dict[str, tuple[Tensor, Tensor]]:
    """Each user modality, keyed by its node type (``user_<name>``), as a user-aligned
    ``(features [U, F], mask [U])``; missing rows are zeros."""
    return {name: _aligned(data[name], "user_index", data[USER].num_nodes)
            for name in user_modality_node_types(data)}


def _aligned(store: Any, index_name: str, count: int) -> tuple[Tensor, Tensor]:
    index = store[index_name]
    features = store.x.new_zeros(count, store.x.size(1))
    features[index] = store.x
    mask = torch.zeros(count, dtype=torch.bool)
    mask[index] = True
    return features, mask


def item_entities(data: HeteroData) -> dict[str, tuple[Tensor, int]]:
    """Each entity type as ``(edge_index (2, E) item -> entity, number of entities)``."""
    return {name: (data[ITEM, f"has_{name}", name].edge_index, int(data[name].num_nodes))
            for name in entity_node_types(data)}


def user_entities(data: HeteroData) -> dict[str, tuple[Tensor, int]]:
    """Each user entity type (``user_<column>``) as ``(edge_index (2, E) user -> entity, number of
    entities)``."""
    return {name: (data[USER, f"has_{name}", name].edge_index, int(data[name].num_nodes))
            for name in user_entity_node_types(data)}


# ---------------------------------------------------------------------------- inspection
def graph_statistics(data: HeteroData) -> dict[str, Any]:
    """Node and edge counts, degree statistics and density, as a JSON-serialisable dict.

    ``degrees[node type]`` summarises each node's degree over the forward relations
    (reverse ``rev_*`` relations mirror them and are not counted twice); ``isolated``
    counts nodes of degree 0 (for example users with no training interaction).
    ``density`` is that of the training user–item graph.
    """
    num_nodes = {name: int(data[name].num_nodes) for name in data.node_types}
    num_edges = {"__".join(edge_type): int(data[edge_type].num_edges) for edge_type in data.edge_types}
    degree = {name: torch.zeros(count, dtype=torch.long) for name, count in num_nodes.items()}
    for edge_type in _forward_edge_types(data):
        source, _, target = edge_type
        edge_index = data[edge_type].edge_index
        degree[source] += torch.bincount(edge_index[0], minlength=num_nodes[source])
        degree[target] += torch.bincount(edge_index[1], minlength=num_nodes[target])
    interactions = int(data[INTERACTS].num_edges) if INTERACTS in data.edge_types else 0
    cells = max(num_nodes.get(USER, 0) * num_nodes.get(ITEM, 0), 1)
    return {
        "num_nodes": num_nodes,
        "num_edges": num_edges,
        "degrees": {name: _summary(values) for name, values in degree.items()},
        "isolated": {name: int((values == 0).sum()) for name, values in degree.items()},
        "density": interactions / cells,
    }


def _forward_edge_types(data: HeteroData) -> list[tuple[str, str, str]]:
    return [edge_type for edge_type in data.edge_types if not edge_type[1].startswith(REVERSE_PREFIX)]


def _summary(values: Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0}
    values = values.to(torch.float64)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "median": float(np.median(values.numpy()))}  # torch's median() is the lower middle value


def to_networkx(data: HeteroData, max_nodes: int = 50_000) -> Any:
    """Return the graph as an undirected :class:`networkx.Graph`.

    Nodes are numbered type after type (in ``data.node_types`` order) and carry
    ``type``, ``index`` (the index within the type) and, for entities, ``name``.
    Edges carry ``relation``; reverse relations are skipped since the graph is undirected.
    Graphs with more than ``max_nodes`` nodes are refused: networkx holds every node
    as a Python object, which is slow and large for a full dataset.
    """
    import networkx as nx

    total = sum(int(data[name].num_nodes) for name in data.node_types)
    if total > max_nodes:
        raise GraphrecError(f"the graph has {total} nodes, more than max_nodes={max_nodes}; "
                            f"networkx export is meant for small graphs or samples "
                            f"(raise max_nodes to force it)")
    graph = nx.Graph()
    offsets: dict[str, int] = {}
    start = 0
    for name in data.node_types:
        count = int(data[name].num_nodes)
        offsets[name] = start
        names = data[name].names if "names" in data[name] else None
        graph.add_nodes_from(
            (start + index, {"type": name, "index": index} | ({"name": names[index]} if names else {}))
            for index in range(count))
        start += count
    for edge_type in _forward_edge_types(data):
        source, relation, target = edge_type
        edge_index = data[edge_type].edge_index
        graph.add_edges_from(zip((edge_index[0] + offsets[source]).tolist(),
                                 (edge_index[1] + offsets[target]).tolist()), relation=relation)
    return graph

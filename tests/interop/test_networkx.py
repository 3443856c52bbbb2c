"""networkx export of a real graph, and what the DGL interop says where DGL is absent (the main environment)."""

import importlib.util
from dataclasses import replace
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from graphrec.data.convert import convert
from graphrec.data.dataset import ModalityFeatures
from graphrec.graph import build_graph, graph_statistics
from graphrec.graph.interop import DGL_REQUIREMENT, from_dgl, require_dgl, to_dgl, to_networkx


@pytest.fixture(scope="module")
def ml100k(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> HeteroData:
    """ml-100k's graph (users, items, genres) with a ``release`` modality for the movies with a year."""
    dataset = convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("ml") / "ml-100k").dataset
    has_year = dataset.items["year"].notna().to_numpy()
    release = np.where(has_year, dataset.items["year"].fillna(0).to_numpy(np.float32), 0)[:, None]
    dataset = replace(dataset, features={"release": ModalityFeatures("release", release, has_year)})
    return build_graph(dataset)


@pytest.fixture(scope="module")
def graph(ml100k: HeteroData) -> nx.Graph:
    return to_networkx(ml100k)


def test_nodes_by_type_match_the_hetero_graph(ml100k, graph):
    types = nx.get_node_attributes(graph, "type")
    counts = {node_type: sum(1 for kind in types.values() if kind == node_type) for node_type in ml100k.node_types}
    assert counts == {node_type: ml100k[node_type].num_nodes for node_type in ml100k.node_types}
    assert counts == {"user": 943, "item": 1682, "genre": 19, "release": 1680,
                      "user_age": 8, "user_gender": 2, "user_occupation": 21}
    # nodes are numbered type after type, each keeping its index within its type
    offset = 0
    for node_type in ml100k.node_types:
        count = ml100k[node_type].num_nodes
        assert [graph.nodes[offset + k]["index"] for k in (0, count - 1)] == [0, count - 1]
        assert {graph.nodes[offset + k]["type"] for k in range(count)} == {node_type}
        offset += count
    assert offset == graph.number_of_nodes()


def test_edges_by_relation_are_the_forward_relations(ml100k, graph):
    relations = nx.get_edge_attributes(graph, "relation")
    counts = {relation: sum(1 for value in relations.values() if value == relation)
              for relation in set(relations.values())}
    forward = {relation: ml100k[source, relation, target].num_edges
               for source, relation, target in ml100k.edge_types if not relation.startswith("rev_")}
    assert counts == forward
    assert set(counts) == {"interacts", "has_genre", "has_release", "has_user_age", "has_user_gender",
                           "has_user_occupation"}
    assert graph.number_of_edges() == sum(forward.values())


def test_degrees_and_structure_agree_with_graph_statistics(ml100k, graph):
    statistics = graph_statistics(ml100k)
    types = nx.get_node_attributes(graph, "type")
    for node_type in ml100k.node_types:
        degrees = np.array([degree for node, degree in graph.degree() if types[node] == node_type])
        assert degrees.max() == statistics["degrees"][node_type]["max"]
        assert degrees.mean() == pytest.approx(statistics["degrees"][node_type]["mean"])
        assert int((degrees == 0).sum()) == statistics["isolated"][node_type]
    interactions = graph.edge_subgraph((u, v) for u, v, relation in graph.edges(data="relation")
                                       if relation == "interacts")
    assert nx.is_bipartite(interactions)


def test_genre_nodes_carry_their_names_and_items(ml100k, graph):
    names = {node: name for node, name in nx.get_node_attributes(graph, "name").items()
             if graph.nodes[node]["type"] == "genre"}
    assert sorted(names.values()) == sorted(ml100k["genre"].names)
    drama = next(node for node, name in names.items() if name == "Drama")
    items = sorted(graph.nodes[neighbour]["index"] for neighbour in graph.neighbors(drama))
    genre_index = ml100k["genre"].names.index("Drama")
    has_genre = ml100k["item", "has_genre", "genre"].edge_index
    assert items == sorted(has_genre[0][has_genre[1] == genre_index].tolist())
    assert len(items) > 700  # Drama is ml-100k's most common genre


@pytest.mark.skipif(importlib.util.find_spec("dgl") is not None, reason="dgl is installed in this environment")
def test_dgl_interop_without_dgl_names_the_version_constraint_and_the_way_out():
    data = HeteroData()
    data["user"].num_nodes = 2
    data["user", "follows", "user"].edge_index = torch.tensor([[0], [1]])
    for call in (lambda: to_dgl(data), lambda: from_dgl(object()), require_dgl):
        with pytest.raises(ImportError) as raised:
            call()
        message = str(raised.value)
        assert "dgl 2.1.0" in message and "torch <= 2.2.1" in message and "numpy < 2" in message
        assert "make test-dgl" in message and "scripts/test-dgl.sh" in message
        assert f"torch {torch.__version__}" in message
        assert isinstance(raised.value.__cause__, ModuleNotFoundError)
    assert DGL_REQUIREMENT in message

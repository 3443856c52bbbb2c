"""DGL interop on a real graph: MovieLens 100K converted by graphrec, to DGL and back.

These tests run in the DGL environment that ``scripts/test-dgl.sh`` builds (torch 2.2.1,
dgl 2.1.0); it sets ``GRAPHREC_REQUIRE_DGL=1``, and then DGL must import or the module
fails. In graphrec's main environment, which has no DGL, the module is skipped with the reason.
"""

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from graphrec.graph.interop import require_dgl

try:
    dgl = require_dgl()
except ImportError as error:
    if os.environ.get("GRAPHREC_REQUIRE_DGL") == "1":
        pytest.fail(f"GRAPHREC_REQUIRE_DGL=1 but DGL does not import: {error}", pytrace=False)
    pytest.skip(f"DGL is not available in this environment (run `make test-dgl`): {error}",
                allow_module_level=True)

import dgl.function as fn
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from graphrec.data.convert import convert
from graphrec.data.dataset import ModalityFeatures
from graphrec.graph import INTERACTS, build_graph, normalized_adjacency, propagate
from graphrec.graph.interop import from_dgl, to_dgl

REVERSE = ("item", "rev_interacts", "user")


@pytest.fixture(scope="module")
def ml100k(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> HeteroData:
    """ml-100k's graph with tensors on every kind of store: a ``release`` modality (the
    release year; two movies have none, so the modality has fewer nodes than items), user
    features from the training ratings, and LightGCN's edge weight on the interactions."""
    dataset = convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("ml") / "ml-100k").dataset
    year = dataset.items["year"]
    has_year = year.notna().to_numpy()
    release = np.zeros((dataset.num_items, 2), np.float32)
    release[has_year, 0] = (year[has_year].to_numpy(np.float32) - 1990) / 20
    release[has_year, 1] = 1.0
    dataset = replace(dataset, features={"release": ModalityFeatures("release", release, has_year)})
    data = build_graph(dataset)

    users, _ = dataset.pairs("train")
    users = torch.from_numpy(users.astype(np.int64))
    ratings = torch.tensor(dataset.interactions.loc[dataset.interactions["split"] == "train", "rating"]
                           .to_numpy(np.float32))
    count = torch.bincount(users, minlength=dataset.num_users).to(torch.float32)
    mean = torch.zeros(dataset.num_users).index_add_(0, users, ratings) / count.clamp(min=1)
    data["user"].x = torch.stack([mean, count.log1p()], dim=1)

    source, target = data[INTERACTS].edge_index
    user_degree = torch.bincount(source, minlength=dataset.num_users).to(torch.float32)
    item_degree = torch.bincount(target, minlength=dataset.num_items).to(torch.float32)
    data[INTERACTS].edge_weight = (user_degree[source] * item_degree[target]).rsqrt()
    return data


@pytest.fixture(scope="module")
def graph(ml100k: HeteroData):
    with pytest.warns(UserWarning, match=r"left out: genre\.names \(list\)"):
        return to_dgl(ml100k)


def test_node_types_and_counts_are_kept(ml100k, graph):
    assert isinstance(graph, dgl.DGLGraph)
    assert sorted(graph.ntypes) == sorted(ml100k.node_types) == ["genre", "item", "release", "user", "user_age",
                                                                 "user_gender", "user_occupation"]
    for node_type in ml100k.node_types:
        assert graph.num_nodes(node_type) == ml100k[node_type].num_nodes
    assert graph.num_nodes("user") == 943 and graph.num_nodes("item") == 1682
    assert graph.num_nodes("release") == 1680
    assert graph.idtype == torch.int64


def test_canonical_edge_types_and_endpoints_are_identical(ml100k, graph):
    assert sorted(graph.canonical_etypes) == sorted(ml100k.edge_types)
    # interacts, has_genre, has_release, the user's age group, gender and occupation, and their reverses
    assert len(graph.canonical_etypes) == 12
    for edge_type in ml100k.edge_types:
        edge_index = ml100k[edge_type].edge_index
        assert graph.num_edges(edge_type) == edge_index.size(1)
        source, target = graph.edges(order="eid", etype=edge_type)
        assert torch.equal(source, edge_index[0]) and torch.equal(target, edge_index[1])
    assert graph.num_edges(INTERACTS) == ml100k[INTERACTS].num_edges > 70_000


def test_node_and_edge_tensors_are_identical(ml100k, graph):
    assert torch.equal(graph.nodes["release"].data["x"], ml100k["release"].x)
    assert torch.equal(graph.nodes["release"].data["item_index"], ml100k["release"].item_index)
    assert torch.equal(graph.nodes["user"].data["x"], ml100k["user"].x)
    assert torch.equal(graph.edges[INTERACTS].data["edge_weight"], ml100k[INTERACTS].edge_weight)
    assert set(graph.nodes["genre"].data.keys()) == set()  # names are a list: not a DGL feature
    assert set(graph.edges[REVERSE].data.keys()) == set()


def test_round_trip_gives_back_the_same_graph(ml100k, graph):
    back = from_dgl(graph)
    assert sorted(back.node_types) == sorted(ml100k.node_types)
    assert sorted(back.edge_types) == sorted(ml100k.edge_types)
    for node_type in ml100k.node_types:
        assert back[node_type].num_nodes == ml100k[node_type].num_nodes
        expected = {key for key, value in ml100k[node_type].items()
                    if isinstance(value, torch.Tensor)}
        assert {key for key in back[node_type] if key != "num_nodes"} == expected
        for key in expected:
            assert torch.equal(back[node_type][key], ml100k[node_type][key]), (node_type, key)
    for edge_type in ml100k.edge_types:
        assert back[edge_type].edge_index.dtype == torch.long
        assert set(back[edge_type].keys()) == set(ml100k[edge_type].keys())
        for key in ml100k[edge_type]:
            assert torch.equal(back[edge_type][key], ml100k[edge_type][key]), (edge_type, key)
    assert "names" not in back["genre"]


def test_dgl_message_passing_matches_a_pyg_scatter(ml100k, graph):
    graph.update_all(fn.copy_u("x", "m"), fn.sum("m", "user_sum"), etype=INTERACTS)
    source, target = ml100k[INTERACTS].edge_index
    expected = scatter(ml100k["user"].x[source], target, dim=0, dim_size=ml100k["item"].num_nodes, reduce="sum")
    torch.testing.assert_close(graph.nodes["item"].data.pop("user_sum"), expected)
    assert expected.abs().sum() > 0


def test_one_lightgcn_layer_in_dgl_matches_graphrecs_normalised_adjacency(ml100k, graph):
    """DGL computes the symmetric normalisation from its own degrees; graphrec from its CSR."""
    num_users, num_items = ml100k["user"].num_nodes, ml100k["item"].num_nodes
    embedding = torch.randn(num_users + num_items, 8, generator=torch.Generator().manual_seed(0))
    graph.nodes["user"].data["h"] = embedding[:num_users]
    graph.nodes["item"].data["h"] = embedding[num_users:]
    for edge_type in (INTERACTS, REVERSE):
        source, target = graph.edges(etype=edge_type)
        out_degree = graph.out_degrees(etype=edge_type).to(torch.float32)
        in_degree = graph.in_degrees(etype=edge_type).to(torch.float32)
        graph.edges[edge_type].data["norm"] = (out_degree[source] * in_degree[target]).rsqrt()
    graph.multi_update_all({edge_type: (fn.u_mul_e("h", "norm", "m"), fn.sum("m", "out"))
                            for edge_type in (INTERACTS, REVERSE)}, "sum")

    users, items = ml100k[INTERACTS].edge_index
    expected = propagate(normalized_adjacency(num_users, num_items, users, items), embedding)
    dgl_out = torch.cat([graph.nodes["user"].data.pop("out"), graph.nodes["item"].data.pop("out")])
    torch.testing.assert_close(dgl_out, expected, rtol=1e-5, atol=1e-6)
    for node_type in ("user", "item"):
        graph.nodes[node_type].data.pop("h")


def test_node_types_without_edges_and_isolated_nodes_survive():
    data = HeteroData()
    data["user"].num_nodes = 4
    data["item"].x = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    data["tag"].num_nodes = 2  # no edge touches it
    data["user", "interacts", "item"].edge_index = torch.tensor([[0, 0, 2], [2, 1, 2]])
    graph = to_dgl(data)
    assert {node_type: graph.num_nodes(node_type) for node_type in graph.ntypes} == {"user": 4, "item": 3, "tag": 2}
    back = from_dgl(graph)
    assert back["tag"].num_nodes == 2 and back["user"].num_nodes == 4
    assert torch.equal(back["user", "interacts", "item"].edge_index, torch.tensor([[0, 0, 2], [2, 1, 2]]))
    assert torch.equal(back["item"].x, data["item"].x)


def test_misaligned_tensors_and_graph_attributes_are_named_in_the_warning():
    data = HeteroData()
    data.split_seed = 7
    data["user"].num_nodes = 3
    data["user"].centroid = torch.zeros(1, 4)  # one row for 3 nodes: not a node feature
    data["user", "follows", "user"].edge_index = torch.tensor([[0, 1], [1, 2]])
    left_out = r"split_seed \(graph attribute\), user\.centroid \(tensor of shape \(1, 4\)\)"
    with pytest.warns(UserWarning, match=left_out):
        graph = to_dgl(data)
    assert list(graph.nodes["user"].data.keys()) == []


@pytest.mark.filterwarnings("ignore:Unable to accurately infer 'num_nodes'")
def test_missing_edge_index_or_node_count_is_a_clear_error():
    no_edges = HeteroData()
    no_edges["user"].num_nodes = 2
    no_edges["user", "follows", "user"].edge_weight = torch.ones(3)
    with pytest.raises(ValueError, match=r"\('user', 'follows', 'user'\) has no edge_index"):
        to_dgl(no_edges)
    no_count = HeteroData()
    no_count["user"].names = ["a", "b"]
    with pytest.raises(ValueError, match="node type 'user' has no num_nodes"):
        to_dgl(no_count)


def test_a_homogeneous_dgl_graph_comes_back_with_dgls_default_types():
    graph = dgl.graph((torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])), num_nodes=4)
    graph.ndata["x"] = torch.eye(4)
    data = from_dgl(graph)
    assert data.node_types == ["_N"] and data.edge_types == [("_N", "_E", "_N")]
    assert data["_N"].num_nodes == 4
    assert torch.equal(data["_N", "_E", "_N"].edge_index, torch.tensor([[0, 1, 2], [1, 2, 0]]))
    assert torch.equal(data["_N"].x, torch.eye(4))

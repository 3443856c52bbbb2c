from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData

from graphrec.data.dataset import SPLIT_DTYPE, Dataset, ModalityFeatures
from graphrec.errors import GraphrecError
from graphrec.graph import (
    GraphConfig,
    build_graph,
    entity_node_types,
    graph_statistics,
    item_entities,
    item_modalities,
    modality_node_types,
    to_networkx,
)


def small_dataset() -> Dataset:
    """4 users, 5 items; a repeated train pair, valid/test pairs that are not in train,
    list / array / string / missing entity cells, and two modalities with gaps."""
    rows = [  # user, item, split
        (0, 0, "train"), (0, 1, "train"), (0, 1, "train"), (1, 1, "train"), (1, 2, "train"),
        (2, 3, "train"), (0, 4, "valid"), (1, 0, "test"), (2, 2, "valid"),
    ]
    users, items, splits = zip(*rows)
    interactions = pd.DataFrame({
        "user": np.array(users, np.int32), "item": np.array(items, np.int32),
        "rating": np.full(len(rows), np.nan, np.float32),
        "timestamp": pd.array([None] * len(rows), dtype="Int64"),
        "split": pd.Categorical(splits, dtype=SPLIT_DTYPE),
    })
    item_table = pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "e"],
        "genres": [["Drama", "Comedy"], ["Comedy"], None, np.array(["War", "Drama"]), []],
        "brand": ["Acme", None, "Zeta", "Acme", ""],
    })
    user_table = pd.DataFrame({"user_id": ["u0", "u1", "u2", "u3"]})
    text = np.arange(15, dtype=np.float32).reshape(5, 3)
    image = np.arange(10, dtype=np.float32).reshape(5, 2) + 100
    features = {
        "text": ModalityFeatures("text", text, np.array([True, True, False, True, True])),
        "image": ModalityFeatures("image", image, np.array([False, True, True, False, False])),
    }
    return Dataset("small", interactions, item_table, user_table, features)


def ml100k_dataset(data: Path) -> Dataset:
    """MovieLens 100K from the original files: ratings, genres and a release-date modality
    (missing for the one movie without a date); a seeded 80/10/10 random split. ``data`` is the
    ``shared_data`` folder."""
    root = data / "ml-100k"
    ratings = pd.read_csv(root / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    genre_names = pd.read_csv(root / "u.genre", sep="|", names=["name", "index"])["name"].to_numpy()
    columns = ["id", "title", "date", "video", "url", *genre_names]
    movies = pd.read_csv(root / "u.item", sep="|", names=columns, encoding="latin-1")
    flags = movies[list(genre_names)].to_numpy(bool)
    split = np.random.default_rng(0).choice(["train", "valid", "test"], size=len(ratings), p=[0.8, 0.1, 0.1])
    interactions = pd.DataFrame({
        "user": (ratings["user"] - 1).to_numpy(np.int32), "item": (ratings["item"] - 1).to_numpy(np.int32),
        "rating": ratings["rating"].to_numpy(np.float32),
        "timestamp": pd.array(ratings["timestamp"], dtype="Int64"),
        "split": pd.Categorical(split, dtype=SPLIT_DTYPE),
    })
    items = pd.DataFrame({"item_id": movies["id"].astype(str), "title": movies["title"],
                          "genres": [list(genre_names[row]) for row in flags]})
    users = pd.DataFrame({"user_id": [str(k) for k in range(1, ratings["user"].max() + 1)]})
    year = pd.to_datetime(movies["date"], format="%d-%b-%Y", errors="coerce").dt.year.to_numpy()
    has_date = ~np.isnan(year)
    release = np.zeros((len(movies), 2), np.float32)
    release[has_date, 0] = (year[has_date] - 1990) / 20
    release[has_date, 1] = 1.0
    features = {"release": ModalityFeatures("release", release, has_date)}
    return Dataset("ml-100k", interactions, items, users, features)


def test_interaction_edges_are_the_distinct_train_pairs_only():
    data = build_graph(small_dataset())
    edges = data["user", "interacts", "item"].edge_index
    assert sorted(zip(*edges.tolist())) == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3)]
    assert data["user"].num_nodes == 4 and data["item"].num_nodes == 5
    assert edges.dtype == torch.long


def test_reverse_edges_mirror_forward_edges():
    data = build_graph(small_dataset())
    forward = [edge_type for edge_type in data.edge_types if not edge_type[1].startswith("rev_")]
    assert len(forward) == 5  # interacts, has_text, has_image, has_genre, has_brand
    for source, relation, target in forward:
        reverse = data[target, f"rev_{relation}", source].edge_index
        assert torch.equal(reverse, data[source, relation, target].edge_index.flip(0))
    assert len(data.edge_types) == 2 * len(forward)


def test_modality_nodes_exist_only_for_items_that_have_the_modality():
    dataset = small_dataset()
    data = build_graph(dataset)
    for name in ("text", "image"):
        present = np.flatnonzero(dataset.features[name].mask)
        assert data[name].item_index.tolist() == present.tolist()
        np.testing.assert_array_equal(data[name].x.numpy(), dataset.features[name].values[present])
        edges = data["item", f"has_{name}", name].edge_index
        assert edges[0].tolist() == present.tolist()
        assert edges[1].tolist() == list(range(len(present)))
    assert data["text"].num_nodes == 4 and data["image"].num_nodes == 2


def test_entity_nodes_from_lists_arrays_strings_and_missing_cells():
    data = build_graph(small_dataset())
    assert data["genre"].names == ["Comedy", "Drama", "War"]
    genre_edges = data["item", "has_genre", "genre"].edge_index
    assert sorted(zip(*genre_edges.tolist())) == [(0, 0), (0, 1), (1, 0), (3, 1), (3, 2)]
    assert data["brand"].names == ["Acme", "Zeta"]
    assert sorted(zip(*data["item", "has_brand", "brand"].edge_index.tolist())) == [(0, 0), (2, 1), (3, 0)]
    assert "category" not in data.node_types  # the dataset has no categories column


def test_an_entity_column_without_values_gives_no_node_type():
    dataset = small_dataset()
    dataset.items["categories"] = [None, [], "", np.array([], dtype=object), None]
    data = build_graph(dataset)
    assert "category" not in data.node_types
    assert not any("category" in edge_type for edge_type in data.edge_types)


def test_graph_of_a_dataset_saved_and_loaded_from_disk_is_the_same(tmp_path):
    dataset = small_dataset()
    loaded = Dataset.load(dataset.save(tmp_path / "small"))
    before, after = build_graph(dataset), build_graph(loaded)
    assert before.node_types == after.node_types and before.edge_types == after.edge_types
    for edge_type in before.edge_types:
        assert torch.equal(before[edge_type].edge_index, after[edge_type].edge_index)
    assert before["genre"].names == after["genre"].names


def test_config_selects_modalities_entities_and_reverse_edges():
    dataset = small_dataset()
    data = build_graph(dataset, GraphConfig(entities=("brand",), modalities=("image",), reverse_edges=False))
    assert set(data.node_types) == {"user", "item", "image", "brand"}
    assert not any(relation.startswith("rev_") for _, relation, _ in data.edge_types)
    assert modality_node_types(data) == ["image"]
    assert entity_node_types(data) == ["brand"]
    with pytest.raises(GraphrecError, match=r"no modality \['audio'\]"):
        build_graph(dataset, GraphConfig(modalities=("audio",)))


def test_node_type_clash_is_refused():
    dataset = small_dataset()
    clashing = dataset.with_features(ModalityFeatures("genre", np.zeros((5, 1), np.float32), np.ones(5, bool)))
    with pytest.raises(GraphrecError, match=r"\['genre'\] used twice"):
        build_graph(clashing)


def test_item_aligned_model_inputs():
    dataset = small_dataset()
    data = build_graph(dataset)
    modalities = item_modalities(data)
    for name, (values, mask) in modalities.items():
        expected = np.where(dataset.features[name].mask[:, None], dataset.features[name].values, 0.0)
        np.testing.assert_array_equal(values.numpy(), expected)
        assert mask.tolist() == dataset.features[name].mask.tolist()
    entities = item_entities(data)
    assert set(entities) == {"genre", "brand"}
    assert entities["genre"][1] == 3
    assert torch.equal(entities["genre"][0], data["item", "has_genre", "genre"].edge_index)


def test_statistics_of_the_small_graph():
    stats = graph_statistics(build_graph(small_dataset()))
    assert stats["num_nodes"] == {"user": 4, "item": 5, "text": 4, "image": 2, "genre": 3, "brand": 2}
    assert stats["num_edges"]["user__interacts__item"] == 5
    assert stats["num_edges"]["genre__rev_has_genre__item"] == 5
    assert stats["density"] == pytest.approx(5 / 20)
    assert stats["isolated"]["user"] == 1  # u3 has no training interaction
    # item degrees: interactions + text + image + genres + brand
    # item 0: 1+1+0+2+1, 1: 2+1+1+1+0, 2: 1+0+1+0+1, 3: 1+1+0+2+1, 4: 0+1+0+0+0
    assert stats["degrees"]["item"] == {"min": 1.0, "max": 5.0, "mean": pytest.approx(19 / 5), "median": 5.0}


def test_ml100k_graph_has_train_edges_and_genres(shared_data):
    dataset = ml100k_dataset(shared_data)
    data = build_graph(dataset)
    train = dataset.interactions[dataset.interactions["split"] == "train"]
    assert data["user", "interacts", "item"].num_edges == len(train)  # ml-100k has no repeated pair
    keys = set((data["user", "interacts", "item"].edge_index[0] * 1682
                + data["user", "interacts", "item"].edge_index[1]).tolist())
    held_out = dataset.interactions[dataset.interactions["split"] != "train"]
    assert keys.isdisjoint((held_out["user"].astype(np.int64) * 1682 + held_out["item"]).tolist())

    genre_names = pd.read_csv(shared_data / "ml-100k" / "u.genre", sep="|", names=["name", "index"])["name"]
    assert data["genre"].names == sorted(genre_names)
    movies = pd.read_csv(shared_data / "ml-100k" / "u.item", sep="|", header=None, encoding="latin-1")
    assert data["item", "has_genre", "genre"].num_edges == int(movies.iloc[:, 5:].to_numpy().sum())
    assert data["release"].num_nodes == 1681  # one movie has no release date

    stats = graph_statistics(data)
    assert stats["num_nodes"]["user"] == 943 and stats["num_nodes"]["item"] == 1682
    assert stats["density"] == pytest.approx(len(train) / (943 * 1682))


def test_to_networkx_keeps_types_and_forward_edges():
    data = build_graph(small_dataset())
    graph = to_networkx(data)
    assert isinstance(graph, nx.Graph)
    assert graph.number_of_nodes() == 4 + 5 + 4 + 2 + 3 + 2
    assert graph.number_of_edges() == 5 + 4 + 2 + 5 + 3
    types = nx.get_node_attributes(graph, "type")
    assert sum(1 for kind in types.values() if kind == "genre") == 3
    war = next(node for node, name in nx.get_node_attributes(graph, "name").items() if name == "War")
    (neighbour,) = graph.neighbors(war)
    assert graph.nodes[neighbour] == {"type": "item", "index": 3}
    assert graph.edges[war, neighbour]["relation"] == "has_genre"


def test_to_networkx_refuses_big_graphs():
    data = HeteroData()
    data["user"].num_nodes = 10
    data["item"].num_nodes = 5
    with pytest.raises(GraphrecError, match="15 nodes, more than max_nodes=12"):
        to_networkx(data, max_nodes=12)

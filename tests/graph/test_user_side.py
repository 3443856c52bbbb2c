"""User attribute entities and user modalities in the heterogeneous graph."""

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.data.dataset import SPLIT_DTYPE, Dataset, ModalityFeatures, load_dataset
from graphrec.errors import GraphrecError
from graphrec.graph import GraphConfig, build_graph, user_entities, user_entity_node_types, user_modalities


def users_dataset(num_users: int = 40) -> Dataset:
    """Users with an age (many values), a gender, a favourite number (few numeric values), a
    zip code (one per user) and a self-description; one user modality with gaps."""
    rng = np.random.default_rng(0)
    users = np.arange(num_users, dtype=np.int32)
    interactions = pd.DataFrame({
        "user": users, "item": (users % 3).astype(np.int32), "rating": np.full(num_users, np.nan, np.float32),
        "timestamp": pd.array([None] * num_users, dtype="Int64"),
        "split": pd.Categorical(["train"] * num_users, dtype=SPLIT_DTYPE),
    })
    user_table = pd.DataFrame({
        "user_id": [f"u{u}" for u in users],
        "age": pd.array(rng.integers(15, 70, num_users), dtype="Int64"),
        "gender": rng.choice(["F", "M"], num_users),
        "lucky": rng.integers(1, 4, num_users),
        "zip_code": [f"{10000 + u}" for u in users],
        "bio": [f"I am user number {u} and I like things" for u in users],
    })
    user_table.loc[3, "gender"] = None
    mask = np.ones(num_users, bool)
    mask[[1, 5]] = False
    values = rng.normal(size=(num_users, 4)).astype(np.float32) * mask[:, None]
    return Dataset(name="people", interactions=interactions, items=pd.DataFrame({"item_id": ["a", "b", "c"]}),
                   users=user_table, user_features={"bio": ModalityFeatures("bio", values, mask)})


def test_default_user_entities_are_the_attribute_columns_with_few_values():
    data = build_graph(users_dataset())
    assert set(user_entity_node_types(data)) == {"user_age", "user_gender", "user_lucky"}
    assert data["user_gender"].names == ["F", "M"]
    assert data["user_lucky"].names == ["1", "2", "3"]  # few numeric values stay values
    edges, count = user_entities(data)["user_gender"]
    assert count == 2 and edges.shape[1] == 39  # the user without a gender has no edge
    assert 3 not in edges[0].tolist()
    assert ("user_gender", "rev_has_user_gender", "user") in data.edge_types


def test_a_numeric_column_with_many_values_becomes_quantile_buckets_named_by_their_range():
    dataset = users_dataset()
    data = build_graph(dataset)
    names = data["user_age"].names
    assert 2 <= len(names) <= 8
    edges, _ = user_entities(data)["user_age"]
    ages = dataset.users["age"].to_numpy(np.int64)
    for user, bucket in edges.t().tolist():
        low, _, high = names[bucket].partition("-")
        assert int(low) <= ages[user] <= int(high or low)


def test_user_modalities_are_aligned_with_users_and_masked():
    dataset = users_dataset()
    data = build_graph(dataset, GraphConfig(user_entities=()))
    assert user_entity_node_types(data) == []
    features, mask = user_modalities(data)["user_bio"]
    assert features.shape == (40, 4)
    assert mask.tolist() == dataset.user_features["bio"].mask.tolist()
    assert torch.equal(features, torch.from_numpy(dataset.user_features["bio"].values))
    assert data["user", "has_user_bio", "user_bio"].edge_index.shape == (2, 38)


def test_unknown_user_columns_and_modalities_are_named():
    dataset = users_dataset()
    with pytest.raises(GraphrecError, match=r"user_entities \['shoe_size'\]"):
        build_graph(dataset, GraphConfig(user_entities=("shoe_size",)))
    with pytest.raises(GraphrecError, match=r"no user modality \['avatar'\]"):
        build_graph(dataset, GraphConfig(user_modalities=("avatar",)))


def test_ml100k_users_become_age_gender_and_occupation_nodes(shared_data, tmp_path):
    from graphrec.data.convert import convert

    dataset = convert("movielens", shared_data / "ml-100k", tmp_path / "ml").dataset
    data = build_graph(load_dataset(dataset.path))
    assert set(user_entity_node_types(data)) == {"user_age", "user_gender", "user_occupation"}
    assert len(data["user_occupation"].names) == 21 and data["user_gender"].names == ["F", "M"]
    assert data["user_age"].num_nodes == 8
    assert user_entities(data)["user_age"][0].shape[1] == 943


def test_the_synthetic_taste_cluster_is_hidden_truth_and_never_a_default_entity(tmp_path):
    from graphrec.data.convert import convert

    dataset = convert("synthetic", "-", tmp_path / "syn", reader_options={"users": 60, "items": 40, "audio": False,
                                                                            "video": False}, log=None).dataset
    assert "taste_cluster" in dataset.users.columns
    data = build_graph(load_dataset(tmp_path / "syn"))
    assert "user_taste_cluster" not in data.node_types
    assert {"user_gender", "user_occupation", "user_country"} <= set(user_entity_node_types(data))
    explicit = build_graph(load_dataset(tmp_path / "syn"), GraphConfig(user_entities=("taste_cluster",)))
    assert user_entity_node_types(explicit) == ["user_taste_cluster"]

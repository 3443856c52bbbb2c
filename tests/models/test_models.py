import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.data import HeteroData
from torch_geometric.nn import GATConv

from graphrec.data.dataset import SPLIT_DTYPE, Dataset, ModalityFeatures
from graphrec.graph import build_graph
from graphrec.models import (
    FUSION_STRATEGIES,
    MF,
    MODELS,
    VBPR,
    LightGCN,
    ModalityGAT,
    ModelConfig,
    ModelOptions,
    ModelRegistry,
    Recommender,
)
from graphrec.models.registry import check_model_class
from graphrec.serving import export_embeddings, recommend
from graphrec.training.bpr import bpr_loss as pairwise_bpr_loss
from graphrec.training.run import TrainConfig, load_run, train

NUM_USERS, NUM_ITEMS = 12, 10


def planted_dataset() -> Dataset:
    """Two taste groups: users 0-5 like items 0-4, users 6-11 like items 5-9. Item features
    and genres carry the group; item 2 has no text, items 7 and 8 no image, item 9 no genre."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(NUM_USERS):
        group_items = np.arange(5) + (0 if user < 6 else 5)
        liked = rng.permutation(group_items)
        rows += [(user, int(item), "train") for item in liked[:3]] + [(user, int(liked[3]), "valid"),
                                                                     (user, int(liked[4]), "test")]
    users, items, splits = zip(*rows)
    interactions = pd.DataFrame({
        "user": np.array(users, np.int32), "item": np.array(items, np.int32),
        "rating": np.full(len(rows), np.nan, np.float32),
        "timestamp": pd.array([None] * len(rows), dtype="Int64"),
        "split": pd.Categorical(splits, dtype=SPLIT_DTYPE),
    })
    group = (np.arange(NUM_ITEMS) >= 5).astype(np.float32)
    text = np.stack([group, 1 - group, rng.normal(size=NUM_ITEMS), rng.normal(size=NUM_ITEMS)], 1)
    image = np.stack([1 - group, rng.normal(size=NUM_ITEMS), rng.normal(size=NUM_ITEMS)], 1)
    features = {
        "text": ModalityFeatures("text", text.astype(np.float32), np.arange(NUM_ITEMS) != 2),
        "image": ModalityFeatures("image", image.astype(np.float32), ~np.isin(np.arange(NUM_ITEMS), [7, 8])),
    }
    item_table = pd.DataFrame({"item_id": [f"i{k}" for k in range(NUM_ITEMS)],
                               "genres": [["A"]] * 5 + [["B"], ["B"], ["B", "A"], ["B"], None]})
    user_table = pd.DataFrame({"user_id": [f"u{k}" for k in range(NUM_USERS)]})
    return Dataset("planted", interactions, item_table, user_table, features)


def ml100k_dataset(data: Path) -> Dataset:
    """MovieLens 100K ratings and genres, with a release-year modality (one movie has no date)."""
    root = data / "ml-100k"
    ratings = pd.read_csv(root / "u.data", sep="\t", names=["user", "item", "rating", "timestamp"])
    genre_names = pd.read_csv(root / "u.genre", sep="|", names=["name", "index"])["name"].to_numpy()
    movies = pd.read_csv(root / "u.item", sep="|", names=["id", "title", "date", "video", "url", *genre_names],
                         encoding="latin-1")
    split = np.random.default_rng(0).choice(["train", "valid", "test"], size=len(ratings), p=[0.8, 0.1, 0.1])
    interactions = pd.DataFrame({
        "user": (ratings["user"] - 1).to_numpy(np.int32), "item": (ratings["item"] - 1).to_numpy(np.int32),
        "rating": ratings["rating"].to_numpy(np.float32),
        "timestamp": pd.array(ratings["timestamp"], dtype="Int64"),
        "split": pd.Categorical(split, dtype=SPLIT_DTYPE),
    })
    flags = movies[list(genre_names)].to_numpy(bool)
    items = pd.DataFrame({"item_id": movies["id"].astype(str), "genres": [list(genre_names[row]) for row in flags]})
    users = pd.DataFrame({"user_id": [str(k) for k in range(1, 944)]})
    year = pd.to_datetime(movies["date"], format="%d-%b-%Y", errors="coerce").dt.year.to_numpy()
    has_date = ~np.isnan(year)
    release = np.where(has_date, (year - 1990) / 20, 0.0).astype(np.float32)[:, None]
    return Dataset("ml-100k", interactions, items, users,
                   {"release": ModalityFeatures("release", release, has_date)})


@pytest.fixture(scope="module")
def planted() -> tuple[Dataset, HeteroData]:
    dataset = planted_dataset()
    return dataset, build_graph(dataset)


#: Every registered model that gradient descent trains: the tests below cover a new one unedited.
GRADIENT_MODELS = [name for name, model in MODELS.items() if model.trained_by_gradient]


def make_model(name: str, data: HeteroData) -> Recommender:
    """Small versions of the models; any other registered model with its default options."""
    torch.manual_seed(0)
    if name == "mf":
        return MF(NUM_USERS, NUM_ITEMS, dim=16)
    if name == "lightgcn":
        return LightGCN.from_graph(data, dim=16, num_layers=2)
    if name == "vbpr":
        return VBPR.from_graph(data, dim=8, content_dim=8)
    if name == "gat":
        return ModalityGAT.from_graph(data, dim=16, num_layers=2, heads=2)
    return MODELS[name].from_dataset(planted_dataset(), MODELS[name].Options())


def bpr_triples(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every training pair with a fixed negative item from the other group."""
    users, items = dataset.pairs("train")
    negatives = (items + 5 + np.random.default_rng(1).integers(0, 5, len(items))) % NUM_ITEMS
    negatives = np.where((items < 5) == (negatives < 5), (negatives + 5) % NUM_ITEMS, negatives)
    return torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(negatives)


def bpr_loss(model: Recommender, users, positives, negatives) -> torch.Tensor:
    user_emb, item_emb = model.embed()
    return pairwise_bpr_loss(model.score(user_emb, item_emb, users, positives),
                             model.score(user_emb, item_emb, users, negatives))


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_scores_are_finite_and_shaped(name, planted):
    _, data = planted
    model = make_model(name, data)
    user_emb, item_emb = model.embed()
    assert user_emb.shape[0] == NUM_USERS and item_emb.shape[0] == NUM_ITEMS
    assert user_emb.shape[1] == item_emb.shape[1]
    users, items = torch.tensor([0, 3, 11]), torch.tensor([9, 0, 4])
    scores = model.score(user_emb, item_emb, users, items)
    full = model.full_scores(user_emb, item_emb, users)
    assert scores.shape == (3,) and full.shape == (3, NUM_ITEMS)
    assert torch.isfinite(full).all()
    torch.testing.assert_close(full[torch.arange(3), items], scores)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_gradients_reach_every_parameter(name, planted):
    dataset, data = planted
    model = make_model(name, data)
    users, positives, negatives = bpr_triples(dataset)
    user_emb, item_emb = model.embed()
    loss = (model.full_scores(user_emb, item_emb, torch.arange(NUM_USERS)).pow(2).mean()
            + model.regularization(users, positives, negatives))
    auxiliary = model.auxiliary_loss(user_emb, item_emb, users, positives, negatives)  # as bpr_step adds it
    if auxiliary is not None:
        loss = loss + auxiliary
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_a_few_bpr_steps_reduce_the_loss(name, planted):
    dataset, data = planted
    model = make_model(name, data)
    triples = bpr_triples(dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    with torch.no_grad():
        initial = float(bpr_loss(model, *triples))
    for _ in range(30):
        optimizer.zero_grad()
        loss = bpr_loss(model, *triples) + 1e-4 * model.regularization(*triples)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        final = float(bpr_loss(model, *triples))
    assert final < 0.5 * initial, (initial, final)


@pytest.mark.parametrize("name", GRADIENT_MODELS)
def test_rebuilt_model_loads_a_state_dict(name, planted):
    _, data = planted
    trained, fresh = make_model(name, data), make_model(name, data)
    for parameter in trained.parameters():
        parameter.data.add_(0.5)
    fresh.load_state_dict(trained.state_dict())
    for left, right in zip(trained.embed(), fresh.embed()):
        torch.testing.assert_close(left, right)


def test_regularization_is_the_batch_l2_of_layer_zero_embeddings(planted):
    _, data = planted
    model = make_model("lightgcn", data)
    users, positives, negatives = torch.tensor([0, 1, 1]), torch.tensor([2, 3, 4]), torch.tensor([5, 5, 9])
    user_weight, item_weight = model.user_embedding.weight, model.item_embedding.weight
    expected = 0.5 * (user_weight[users].pow(2).sum() + item_weight[positives].pow(2).sum()
                      + item_weight[negatives].pow(2).sum()) / 3
    torch.testing.assert_close(model.regularization(users, positives, negatives), expected)


def test_lightgcn_embed_equals_dense_layer_combination(planted):
    _, data = planted
    model = make_model("lightgcn", data)
    adjacency = model.adjacency.to_dense().double()
    layer = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double()
    total = layer.clone()
    for _ in range(model.num_layers):
        layer = adjacency @ layer
        total += layer
    expected = (total / (model.num_layers + 1)).float()
    user_emb, item_emb = model.embed()
    torch.testing.assert_close(torch.cat([user_emb, item_emb]), expected)


def test_lightgcn_rejects_a_wrong_adjacency_and_zero_layers_is_mf():
    with pytest.raises(ValueError, match=r"adjacency must have shape \(5, 5\)"):
        LightGCN(2, 3, torch.eye(4).to_sparse_csr())
    model = LightGCN(2, 3, torch.eye(5).to_sparse_csr(), dim=4, num_layers=0)
    user_emb, item_emb = model.embed()
    assert torch.equal(user_emb, model.user_embedding.weight) and torch.equal(item_emb, model.item_embedding.weight)


def test_vbpr_score_is_id_term_plus_content_term_with_placeholders(planted):
    dataset, data = planted
    model = make_model("vbpr", data)
    user_emb, item_emb = model.embed()
    text, image = (torch.from_numpy(dataset.features[name].values) for name in ("text", "image"))
    text_projection, image_projection = model.projections
    for item in range(NUM_ITEMS):
        text_part = text_projection(text[item]) if item != 2 else model.placeholders[0]
        image_part = image_projection(image[item]) if item not in (7, 8) else model.placeholders[1]
        for user in (0, 7):
            expected = (model.user_embedding.weight[user] @ model.item_embedding.weight[item]
                        + model.user_content_embedding.weight[user] @ (text_part + image_part))
            score = model.score(user_emb, item_emb, torch.tensor([user]), torch.tensor([item]))
            torch.testing.assert_close(score, expected.reshape(1))


def test_vbpr_argument_errors(planted):
    features = torch.randn(NUM_ITEMS, 5)
    with pytest.raises(ValueError, match="pass modality_dims"):
        VBPR(NUM_USERS, NUM_ITEMS, features, torch.ones(NUM_ITEMS, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="sum to the feature width"):
        VBPR(NUM_USERS, NUM_ITEMS, features, torch.ones(NUM_ITEMS, 2, dtype=torch.bool), modality_dims=[2, 2])
    no_features = HeteroData()
    no_features["user"].num_nodes, no_features["item"].num_nodes = NUM_USERS, NUM_ITEMS
    with pytest.raises(ValueError, match="VBPR needs item features"):
        VBPR.from_graph(no_features)
    single = VBPR(NUM_USERS, NUM_ITEMS, features, dim=3, content_dim=2)  # one modality, all present
    assert single.embed()[1].shape == (NUM_ITEMS, 5)


def test_modality_attention_sums_to_one_over_available_sources(planted):
    _, data = planted
    model = make_model("gat", data)
    model.embed()
    names, weights = model.modality_attention()
    assert names == ["text", "image", "genre"]
    available = torch.ones(NUM_ITEMS, 3, dtype=torch.bool)
    available[2, 0] = available[7, 1] = available[8, 1] = available[9, 2] = False
    assert torch.equal(model.source_mask(), available)
    assert weights.shape == (NUM_ITEMS, 3) and not weights.requires_grad
    assert torch.equal(weights[~available], torch.zeros(4))
    torch.testing.assert_close(weights.sum(1), torch.ones(NUM_ITEMS))


def test_a_cold_item_is_placed_by_its_content_alone():
    """An item without training interactions never had its id embedding trained: it is left out."""
    torch.manual_seed(0)
    features = torch.randn(4, 3)
    mask = torch.tensor([True, True, True, False])
    model = ModalityGAT(2, 4, torch.tensor([[0, 1], [0, 1]]), {"text": features}, {"text": mask},
                        dim=8, num_layers=0)
    _, item_emb = model.embed()
    torch.testing.assert_close(item_emb[2], model.item_sources()[2])  # cold, with text: content only
    torch.testing.assert_close(item_emb[3], torch.zeros(8))            # cold, nothing known: neutral
    torch.testing.assert_close(item_emb[0], model.item_embedding.weight[0] + model.item_sources()[0])


def test_an_item_without_sources_is_its_id_embedding():
    torch.manual_seed(0)
    features = torch.randn(4, 3)
    mask = torch.tensor([True, True, False, True])
    model = ModalityGAT(2, 4, torch.tensor([[0, 0, 1, 1], [0, 1, 3, 2]]), {"text": features}, {"text": mask},
                        {"genre": torch.tensor([[0, 1], [0, 0]])}, {"genre": 1}, dim=8, num_layers=0)
    user_emb, item_emb = model.embed()
    torch.testing.assert_close(item_emb[2], model.item_embedding.weight[2])
    assert not torch.allclose(item_emb[0], model.item_embedding.weight[0])
    _, weights = model.modality_attention()
    assert torch.equal(weights[2], torch.zeros(2))
    torch.testing.assert_close(weights[3], torch.tensor([1.0, 0.0]))  # text only
    torch.testing.assert_close(user_emb, model.user_embedding.weight)


def test_graph_attention_layer_equals_pyg_gatconv_on_ml100k(shared_data):
    data = build_graph(ml100k_dataset(shared_data))
    torch.manual_seed(0)
    model = ModalityGAT.from_graph(data, dim=16, num_layers=2, heads=2)
    assert model.source_names == ["release", "genre"]
    layer = model.convs[0]
    reference = GATConv(16, 16, heads=2, concat=False, add_self_loops=False, bias=False)
    with torch.no_grad():
        reference.lin.weight.copy_(layer.lin.weight)
        reference.att_src.copy_(layer.att_src)
        reference.att_dst.copy_(layer.att_dst)
    x = torch.randn(943 + 1682, 16)
    edge_index = torch.stack([model.col_indices, model.row_indices])
    assert edge_index.size(1) == 2 * data["user", "interacts", "item"].num_edges
    ours = layer(x, model.crow_indices, model.col_indices, model.row_indices, model.transpose)
    torch.testing.assert_close(ours, reference(x, edge_index), rtol=1e-5, atol=1e-6)

    user_emb, item_emb = model.embed()
    loss = model.full_scores(user_emb, item_emb, torch.arange(0, 943, 7)).sigmoid().mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    _names, weights = model.modality_attention()
    assert weights[266, 0] == 0 and weights[266, 1] == 1  # the movie without a release date


@pytest.mark.parametrize("fusion", [s for s in FUSION_STRATEGIES if s != "late"])
def test_modality_gat_accepts_every_fusion_but_late(fusion, planted):
    """Every fusion but ``late``; the content channels (one ``dim``-wide block per source beside the
    propagated embedding) need each source's own projection, which ``concat`` does not have."""
    _, data = planted
    channels = fusion != "concat"
    model = ModalityGAT.from_graph(data, dim=8, num_layers=1, fusion=fusion, channels=channels)
    _user_emb, item_emb = model.embed()
    width = 8 * (1 + len(model.source_names)) if channels else 8
    assert item_emb.shape == (NUM_ITEMS, width) and torch.isfinite(item_emb).all()
    if fusion != "attention":
        with pytest.raises(ValueError, match="only with fusion='attention'"):
            model.modality_attention()


def test_modality_gat_argument_errors(planted):
    _, data = planted
    with pytest.raises(ValueError, match="fusion must be one of"):
        ModalityGAT.from_graph(data, fusion="late")
    with pytest.raises(ValueError, match="content channels need a fusion that projects each source"):
        ModalityGAT.from_graph(data, fusion="concat", channels=True)
    with pytest.raises(ValueError, match="alignment must be one of"):
        ModalityGAT.from_graph(data, alignment="cosine")
    with pytest.raises(ValueError, match="edge_index has a user outside"):
        ModalityGAT(2, 2, torch.tensor([[0, 2], [0, 1]]))
    with pytest.raises(ValueError, match="modality_masks"):
        ModalityGAT(2, 2, torch.tensor([[0], [0]]), {"text": torch.zeros(2, 3)}, {})
    with pytest.raises(ValueError, match="entity index outside"):
        ModalityGAT(2, 2, torch.tensor([[0], [0]]), entity_index={"genre": torch.tensor([[0], [3]])},
                    num_entities={"genre": 2})


def test_modality_gat_with_equal_attention_is_lightgcn(planted):
    """With every score equal, the symmetric normalisation gives LightGCN's propagation exactly: a bound
    of 0 forces that, and so do zero attention vectors with the default bound."""
    _, data = planted
    edge_index = data["user", "interacts", "item"].edge_index
    lightgcn = LightGCN.from_graph(data, dim=8, num_layers=3)
    for options in ({"attention_bound": 0.0}, {}):
        model = ModalityGAT(NUM_USERS, NUM_ITEMS, edge_index, dim=8, num_layers=3, **options)
        assert bool(model.warm_items.all())
        with torch.no_grad():
            model.user_embedding.weight.copy_(lightgcn.user_embedding.weight)
            model.item_embedding.weight.copy_(lightgcn.item_embedding.weight)
            for conv in model.convs:
                conv.att_src.zero_()
                conv.att_dst.zero_()
        for ours, reference in zip(model.embed(), lightgcn.embed()):
            torch.testing.assert_close(ours, reference)


def test_bounded_attention_keeps_each_neighbour_within_a_factor_of_the_others(planted):
    """Propagating the identity matrix reads the coefficients off: row v holds beta_vw. Without the
    degree factor every row is a softmax, and the bound b keeps its entries within e^(2b) of each other."""
    _, data = planted
    torch.manual_seed(0)
    model = ModalityGAT.from_graph(data, dim=NUM_USERS + NUM_ITEMS, num_layers=1, normalization="softmax",
                                   attention_bound=0.5)
    layer = model.convs[0]
    with torch.no_grad():  # large attention vectors: unbounded, the softmax would pick one neighbour
        layer.att_src.mul_(50.0)
        layer.att_dst.mul_(50.0)
    identity = torch.eye(NUM_USERS + NUM_ITEMS)
    pattern = (model.crow_indices, model.col_indices, model.row_indices, model.transpose)
    weights = layer(identity, *pattern, bound=0.5, transform_messages=False)
    neighbours = torch.zeros_like(weights, dtype=torch.bool)
    neighbours[model.row_indices, model.col_indices] = True
    assert torch.equal(weights != 0, neighbours)
    torch.testing.assert_close(weights.sum(1), torch.ones(NUM_USERS + NUM_ITEMS))
    largest = weights.max(1).values
    smallest = torch.where(neighbours, weights, torch.inf).min(1).values
    assert (largest / smallest).max() <= np.exp(2 * 0.5) + 1e-4
    unbounded = layer(identity, *pattern, bound=None, transform_messages=False)
    assert (unbounded.max(1).values / torch.where(neighbours, unbounded, torch.inf).min(1).values).max() > 100


def test_bounded_softmax_equals_pyg_softmax_when_the_bound_is_far(shared_data):
    """The bounded path computes the softmax without PyG's running maximum; far from the bound, it is the same."""
    data = build_graph(ml100k_dataset(shared_data))
    torch.manual_seed(0)
    model = ModalityGAT.from_graph(data, dim=16, num_layers=1, heads=2, transform_messages=True)
    layer, x = model.convs[0], torch.randn(943 + 1682, 16)
    pattern = (model.crow_indices, model.col_indices, model.row_indices, model.transpose)
    for edge_scale in (None, model.edge_scale):
        torch.testing.assert_close(layer(x, *pattern, edge_scale=edge_scale, bound=1e4),
                                   layer(x, *pattern, edge_scale=edge_scale, bound=None), rtol=1e-4, atol=1e-6)


def test_lightgcn_layerwise_inference_equals_embed(shared_data):
    """Chunked layer-wise inference (CSR row blocks) gives embed()'s output."""
    data = build_graph(ml100k_dataset(shared_data))
    torch.manual_seed(0)
    model = LightGCN.from_graph(data, dim=16, num_layers=3)
    with torch.no_grad():
        expected = model.embed()
    for ours, reference in zip(model.embed_layerwise(chunk_size=500), expected):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", [{}, {"normalization": "softmax", "attention_bound": None,
                                         "transform_messages": True, "heads": 2}, {"attention_bound": 0.0}],
                         ids=["default", "gatconv-maths", "lightgcn-weights"])
def test_modality_gat_layerwise_inference_equals_embed(options, shared_data):
    """Chunked layer-wise inference (edge lists per chunk of target rows) gives embed()'s output."""
    dataset = ml100k_dataset(shared_data)
    data = build_graph(dataset)
    torch.manual_seed(0)
    model = ModalityGAT.from_graph(data, dim=16, num_layers=2, **options).eval()
    with torch.no_grad():
        for conv in model.convs:  # make the attention matter
            conv.att_src.mul_(20.0)
            conv.att_dst.mul_(20.0)
        expected = model.embed()
    for ours, reference in zip(model.embed_layerwise(chunk_size=500), expected):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


def test_modality_gat_rejects_unknown_normalization_and_negative_bound(planted):
    _, data = planted
    with pytest.raises(ValueError, match="normalization must be"):
        ModalityGAT.from_graph(data, normalization="mean")
    with pytest.raises(ValueError, match="attention_bound must be"):
        ModalityGAT.from_graph(data, attention_bound=-1.0)


def test_modality_gat_without_sources_or_layers_is_mf():
    torch.manual_seed(0)
    model = ModalityGAT(3, 2, torch.tensor([[0, 1, 2], [0, 1, 1]]), dim=4, num_layers=0)
    _user_emb, item_emb = model.embed()
    assert torch.equal(item_emb, model.item_embedding.weight) and model.source_names == []
    assert model.modality_attention()[1].shape == (2, 0)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_trains_saves_reloads_and_scores(name, tmp_path):
    """The whole life of every model in the registry, on a tiny dataset: build, train two epochs
    (or, for a model not trained by gradient descent, none), save, reload, score, recommend."""
    dataset = planted_dataset()
    config = TrainConfig(epochs=2, batch_size=8, lr=0.01, eval_ks=(3, 5), select_metric="recall@5",
                         progress=False, seed=1)
    run = train(dataset, ModelConfig(name), config, out=tmp_path / "run", log=lambda _: None)
    model_class = MODELS[name]
    assert type(run.model) is model_class
    assert len(run.metrics["epochs"]) == (2 if model_class.trained_by_gradient else 0)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["model"]["name"] == name
    assert 0.0 <= run.metrics["test"]["recall@5"] <= 1.0

    loaded = load_run(tmp_path / "run", dataset=dataset)
    assert type(loaded.model) is model_class
    users = torch.arange(NUM_USERS)
    torch.testing.assert_close(loaded.model.scorer()(users), run.model.scorer()(users))
    assert loaded.evaluate("test") == pytest.approx(run.metrics["test"])
    recommended = recommend(loaded, ["u0", "u7"], k=3, explain=False)
    assert [len(r.items) for r in recommended] == [3, 3]
    if model_class.has_embeddings:
        export_embeddings(loaded, tmp_path / "emb", format="npy")
        assert (tmp_path / "emb").is_dir()


def test_the_registry_refuses_a_model_that_misses_a_declaration():
    """Registration checks what the trainer, evaluator and serving rely on."""

    @dataclasses.dataclass(frozen=True)
    class ToyOptions(ModelOptions):
        dim: int = 4

    class Toy(MF):
        name = "toy"
        Options = ToyOptions

        @classmethod
        def from_dataset(cls, dataset, options, seed=0):
            return cls(dataset.num_users, dataset.num_items, dim=options.dim)

    registry = ModelRegistry([Toy])
    assert list(registry) == ["toy"] and registry.option_names("toy") == ("dim",)
    with pytest.raises(TypeError, match="registered twice"):
        registry.register(Toy)
    for change, needle in (({"name": ""}, "`name`"), ({"Options": dict}, "frozen dataclass"),
                           ({"supports_subgraphs": True}, "`embed_subgraph`"),
                           ({"reads_features": True}, "`reads_features`"),
                           ({"has_embeddings": False}, "`scorer`")):
        broken = type("Broken", (Toy,), change)
        with pytest.raises(TypeError, match=needle):
            check_model_class(broken)
    for name, model in MODELS.items():
        check_model_class(model)
        assert model.name == name


def test_popularity_orders_by_count_and_breaks_ties_at_random():
    """Different counts keep their order (even at large counts, in float32); equal counts are not
    ranked by item index, and the seed fixes the tie-break."""
    from graphrec.models.baselines import Popularity

    counts = torch.tensor([0] * 500 + [1000, 1001, 1, 2, 5])
    train_items = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    model = Popularity(3, counts.numel(), train_items, seed=0)
    score = model.embed()[1].squeeze(1)
    assert score[501] > score[500] > score[504] > score[503] > score[502] > score[:500].max()
    cold_order = score[:500].argsort(descending=True)
    assert not torch.equal(cold_order, torch.arange(500))
    assert torch.equal(Popularity(3, counts.numel(), train_items, seed=0).embed()[1], model.embed()[1])
    assert not torch.equal(Popularity(3, counts.numel(), train_items, seed=1).embed()[1], model.embed()[1])
    # a million interactions per item: float32 log-counts (the previous scores) tied these
    counts = torch.tensor([1_000_000, 1_000_001, 1_000_000, 999_999])
    for seed in range(5):
        score = Popularity(3, 4, torch.repeat_interleave(torch.arange(4), counts), seed=seed).embed()[1].squeeze(1)
        assert score[1] > max(score[0], score[2]) and min(score[0], score[2]) > score[3]
        assert score[0] != score[2]


@pytest.mark.parametrize("name", ["mf", "lightgcn", "vbpr", "gat"])
def test_regularization_takes_several_negatives_per_row(name, planted):
    dataset, data = planted
    model = make_model(name, data)
    users, positives, negatives = (t[:6] for t in bpr_triples(dataset))
    several = torch.stack([negatives, negatives.roll(1)], dim=1)  # (B, 2), as BPRBatch.neg
    squares = model.regularization(users, positives, several)
    assert torch.isfinite(squares) and squares > 0
    assert model.item_ego(several).shape[:2] == (6, 2)
    torch.testing.assert_close(model.item_ego(several).reshape(12, -1), model.item_ego(several.reshape(-1)))

"""ModalityGAT's content channels, user-side attention, item-item content graph, bootstrapped alignment,
and the attention-spread report, each checked against the formula written out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_models import NUM_ITEMS, NUM_USERS, planted_dataset

from graphrec.errors import ConfigError
from graphrec.graph import build_graph
from graphrec.graph.content import knn_cosine_graph, symmetric_normalize
from graphrec.graph.hetero import item_modalities
from graphrec.models import ModalityGAT, ModalityGATOptions, ModelConfig
from graphrec.serving.explain import attention_spread, modality_weights
from graphrec.training.run import TrainConfig, load_run, train

DIM = 8


@pytest.fixture(scope="module")
def planted():
    dataset = planted_dataset()
    return dataset, build_graph(dataset)


def gat(data, **options) -> ModalityGAT:
    """The model with content channels unless told otherwise (they are what these tests are about)."""
    torch.manual_seed(0)
    options.setdefault("channels", True)
    return ModalityGAT.from_graph(data, dim=DIM, num_layers=2, **options)


def test_channels_score_each_source_beside_the_propagated_embedding(planted):
    """score(u, i) = <x_u, x_i> + sum_s alpha_is <theta_us + mean_{j in N(u)} alpha_js z_js, z_is>."""
    dataset, data = planted
    model = gat(data).eval()
    plain = gat(data, channels=False).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    users, items = model.embed()
    base_users, base_items = plain.embed()
    sources = len(model.source_names)
    assert sources == 3 and users.shape == (NUM_USERS, DIM * (1 + sources)) and items.shape[1] == users.shape[1]
    # the first block is the propagation of the design without channels, unchanged
    torch.testing.assert_close(users[:, :DIM], base_users)
    torch.testing.assert_close(items[:, :DIM], base_items)

    _names, alpha = model.modality_attention()
    inputs = {name: getattr(model, f"features_{name}") for name in model.modality_names}
    item_index, genres = model.entity_index_genre
    inputs["genre"] = torch.zeros(NUM_ITEMS, DIM).index_add(0, item_index, model.entity_embeddings["genre"](genres))
    inputs["genre"] = inputs["genre"] / torch.bincount(item_index, minlength=NUM_ITEMS).clamp(min=1).unsqueeze(1)
    mask = model.source_mask()
    z = torch.stack([model.fusion.projections[name](inputs[name]) for name in model.source_names], 1)
    z = z * mask.unsqueeze(-1)
    channels = alpha.unsqueeze(-1) * z
    train_users, train_items = dataset.pairs("train")
    theta = model.user_preference.weight.view(NUM_USERS, sources, DIM)
    for user in range(NUM_USERS):
        history = torch.as_tensor(train_items[train_users == user], dtype=torch.long)
        preference = theta[user] + channels[history].mean(0)
        for item in range(NUM_ITEMS):
            expected = users[user, :DIM] @ items[item, :DIM] + (preference * channels[item]).sum()
            torch.testing.assert_close(users[user] @ items[item], expected, rtol=1e-4, atol=1e-5)


def test_without_propagation_a_users_preference_is_its_own(planted):
    _, data = planted
    model = gat(data, channel_propagation=False).eval()
    users, _ = model.embed()
    torch.testing.assert_close(users[:, DIM:], model.user_preference.weight)


def test_user_attention_weights_the_users_channels(planted):
    _, data = planted
    model = gat(data, user_attention=True, channel_propagation=False).eval()
    users, _ = model.embed()
    theta = model.user_preference.weight.view(NUM_USERS, 3, DIM)
    scores = model.user_attention_vector(torch.tanh(model.user_attention_hidden(theta))).squeeze(-1)
    beta = torch.softmax(scores, 1)
    torch.testing.assert_close(users[:, DIM:], (beta.unsqueeze(-1) * theta).flatten(1))
    assert not torch.allclose(beta, torch.full_like(beta, 1 / 3))  # the weights do differ per user


def test_item_graph_adds_the_content_neighbours_of_each_item(planted):
    """x_i + sum_j A~_ij h_j, A~ the mean over modalities of the normalised k-NN cosine graphs."""
    _, data = planted
    model = gat(data, item_graph_neighbours=2).eval()
    plain = gat(data).eval()
    plain.load_state_dict(model.state_dict())
    _, items = model.embed()
    _, base_items = plain.embed()
    graphs = [symmetric_normalize(knn_cosine_graph(values.numpy(), 2, mask.numpy())).toarray()
              for values, mask in item_modalities(data).values()]
    adjacency = torch.as_tensor(sum(graphs) / len(graphs), dtype=torch.float32)
    x, _, _ = plain._layer0()
    expected = base_items[:, :DIM] + adjacency @ x[NUM_USERS:]
    torch.testing.assert_close(items[:, :DIM], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(items[:, DIM:], base_items[:, DIM:])
    # the subgraph path gathers the neighbours of a subset of items itself
    subset = torch.tensor([7, 2, 9])
    term = model._item_graph_term(subset, x[NUM_USERS:][subset])
    torch.testing.assert_close(term, (adjacency @ x[NUM_USERS:])[subset], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [{}, {"user_attention": True, "item_graph_neighbours": 3}],
                         ids=["default", "every-component"])
def test_layerwise_inference_equals_embed_with_channels(planted, options):
    _, data = planted
    model = gat(data, **options).eval()
    with torch.no_grad():
        users, items = model.embed()
    layer_users, layer_items = model.embed_layerwise(chunk_size=5)
    torch.testing.assert_close(layer_users, users, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer_items, items, rtol=1e-5, atol=1e-6)


def test_bootstrap_alignment_is_bm3s_loss_with_stop_gradient_targets(planted):
    _, data = planted
    model = gat(data, alignment="bootstrap").eval()  # eval: no dropout on the targets
    model.embed()
    items = torch.tensor([0, 3, 5, 9])
    loss = model.alignment_loss(items)
    content, ids = model.item_sources()[items], model.item_embedding(items)
    predict = model.alignment_predictor
    cosine = torch.nn.functional.cosine_similarity
    expected = (2 - cosine(predict(ids), content, dim=-1) - cosine(predict(content), ids, dim=-1)).mean()
    torch.testing.assert_close(loss, expected)
    # each branch learns only through its prediction: the target side gets no gradient from its own term
    model.zero_grad()
    (1 - cosine(predict(ids), content.detach(), dim=-1)).mean().backward()
    assert model.fusion.projections["text"].weight.grad is None
    assert model.item_embedding.weight.grad is not None


def test_options_are_checked_with_the_option_named():
    with pytest.raises(ConfigError, match="alignment") as error:
        ModelConfig("gat", alignment="cosine")
    assert error.value.field == "alignment"
    with pytest.raises(ConfigError, match="concat does not") as error:
        ModelConfig("gat", fusion="concat", channels=True)
    assert error.value.field == "fusion"
    assert ModelConfig("gat", fusion="concat").options.fusion == "concat"  # the default has no channels
    with pytest.raises(ConfigError) as error:
        ModelConfig("gat", item_graph_neighbours=-1)
    assert error.value.field == "item_graph_neighbours"


def test_attention_spread_reads_entropy_and_the_items_that_prefer_another_source():
    weights = np.array([[1.0, 0.0, 0.0],     # one source only: left out
                        [0.5, 0.5, 0.0],
                        [0.9, 0.1, 0.0],
                        [0.2, 0.0, 0.8],
                        [0.6, 0.4, 0.0]])
    spread = attention_spread(["text", "image", "genres"], weights)
    assert spread is not None and spread.items == 4 and spread.favourite == "text"
    entropies = [np.log(2), -(0.9 * np.log(0.9) + 0.1 * np.log(0.1)), -(0.2 * np.log(0.2) + 0.8 * np.log(0.8)),
                 -(0.6 * np.log(0.6) + 0.4 * np.log(0.4))]
    assert spread.mean_entropy == pytest.approx(np.mean(entropies))
    assert spread.mean_max_entropy == pytest.approx(np.log(2))
    assert spread.share_not_favourite == pytest.approx(0.25)  # item 3's top source is genres
    assert spread.mean_weights == pytest.approx({"text": 0.55, "image": 0.25, "genres": 0.2})
    assert attention_spread(["text"], np.ones((3, 1))) is None


def test_attention_spread_of_a_trained_model(planted):
    _, data = planted
    model = gat(data).eval()
    model.embed()
    names, weights = modality_weights(model)
    spread = attention_spread(names, weights)
    assert spread is not None and spread.items == NUM_ITEMS  # every planted item has two or three sources
    assert 0 < spread.mean_entropy <= spread.mean_max_entropy


def test_a_run_saved_before_the_channels_reloads_as_it_was_trained(tmp_path):
    """run.json of an earlier graphrec has none of the new options: the run was trained without
    content channels, and it reloads so (its weights have no user preferences to load)."""
    dataset = planted_dataset()
    config = TrainConfig(epochs=1, batch_size=8, lr=0.01, eval_ks=(5,), select_metric="recall@5", progress=False)
    run = train(dataset, ModelConfig("gat", dim=8, layers=1, channels=False, channel_propagation=False), config,
                out=tmp_path / "run", log=lambda _: None)
    spec_path = tmp_path / "run" / "run.json"
    spec = json.loads(spec_path.read_text())
    for option in ModalityGATOptions.added_later:
        del spec["model"]["options"][option]
    spec_path.write_text(json.dumps(spec))
    loaded = load_run(tmp_path / "run", dataset=dataset)
    assert not loaded.model.channels and loaded.model.user_preference is None
    users = torch.arange(NUM_USERS)
    torch.testing.assert_close(loaded.model.scorer()(users), run.model.scorer()(users))
    assert ModelConfig("gat", channels=True).options.channels


def test_without_own_vectors_a_users_preference_is_its_mean_content(planted):
    dataset, data = planted
    model = gat(data, own_preferences=False).eval()
    assert model.user_preference is None
    users, _ = model.embed()
    _, channels = model._content()
    train_users, train_items = dataset.pairs("train")
    for user in (0, 7):
        history = torch.as_tensor(train_items[train_users == user], dtype=torch.long)
        torch.testing.assert_close(users[user, DIM:], channels[history].mean(0).flatten())
    torch.testing.assert_close(model.user_ego(torch.tensor([1])), model.user_embedding(torch.tensor([1])))
    with pytest.raises(ConfigError) as error:
        ModelConfig("gat", channels=True, own_preferences=False, channel_propagation=False)
    assert error.value.field == "own_preferences"


def test_content_in_the_l2_term_penalises_the_batch_items_channels(planted):
    _, data = planted
    model = gat(data, regularize_content=True)
    items = torch.tensor([[1, 4], [6, 6]])  # several negatives per row, as BPR batches give them
    _, channels = model._content()
    expected = torch.cat([model.item_embedding(items.reshape(-1)), channels[items.reshape(-1)].flatten(1)], 1)
    torch.testing.assert_close(model.item_ego(items), expected)
    assert gat(data).item_ego(items).shape == (2, 2, DIM)  # by default the id embeddings only

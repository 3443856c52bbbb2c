"""FREEDOM: its frozen item–item graph, degree-sensitive pruning, propagation against a dense
reference, the modality BPR terms, option errors, and its whole life through the real trainer and CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from _multimodal import dense_normalized, graphrec
from test_models import NUM_ITEMS, NUM_USERS, planted_dataset

from graphrec.data.convert import convert
from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.errors import ConfigError, GraphrecError
from graphrec.models import MODELS, ModelConfig
from graphrec.models.freedom import FREEDOM, FREEDOMOptions, frozen_item_graph, modality_weights
from graphrec.training.bpr import bpr_loss
from graphrec.training.run import TrainConfig, load_run, train


def dense_knn(values: np.ndarray, mask: np.ndarray, k: int) -> np.ndarray:
    """Each item with the modality keeps its k most cosine-similar items with it, itself included; row-normalised
    (rows all have k entries, so D^-1/2 S D^-1/2 = S / k)."""
    unit = values / np.linalg.norm(values, axis=1, keepdims=True)
    sims = unit @ unit.T
    sims[:, ~mask] = -np.inf
    graph = np.zeros_like(sims)
    for row in np.flatnonzero(mask):
        others = [j for j in np.argsort(-sims[row], kind="stable") if j != row and mask[j]][:k - 1]
        graph[row, [row, *others]] = 1.0
    degree = graph.sum(1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    return scale[:, None] * graph * scale[None, :]


def test_item_graph_equals_a_dense_knn_reference_with_self_loops_and_weights():
    dataset = planted_dataset()
    text, image = dataset.features["text"], dataset.features["image"]
    graph = frozen_item_graph([text.values, image.values], [text.mask, image.mask], [0.7, 0.3], knn_k=3).toarray()
    expected = 0.7 * dense_knn(text.values, text.mask, 3) + 0.3 * dense_knn(image.values, image.mask, 3)
    np.testing.assert_allclose(graph, expected, rtol=1e-5, atol=1e-6)
    # item 2 has no text: its text row is empty and no item picks it as a text neighbour
    assert np.count_nonzero(dense_knn(text.values, text.mask, 3)[2]) == 0
    assert (np.count_nonzero(graph, axis=1) >= 3).all()
    only_self = frozen_item_graph([text.values], [text.mask], [1.0], knn_k=1).toarray()
    np.testing.assert_array_equal(only_self, np.diag(text.mask.astype(np.float32)))


def test_modality_weights_give_the_image_its_weight_and_share_the_rest():
    assert modality_weights(["text", "image"], 0.1) == pytest.approx({"text": 0.9, "image": 0.1})
    assert modality_weights(["text", "genre", "image"], 0.2) == pytest.approx(
        {"text": 0.4, "genre": 0.4, "image": 0.2})
    assert modality_weights(["image"], 0.1) == {"image": 1.0}
    assert modality_weights(["text", "genre"], 0.1) == {"text": 0.5, "genre": 0.5}


def test_propagation_equals_a_dense_reference_on_the_full_and_on_the_pruned_graph():
    dataset = planted_dataset()
    model = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=8, layers=2, item_layers=2, knn_k=3, pruning=0.5))
    users, items = dataset.pairs("train")
    item_graph = model.item_graph.to_dense().double().numpy()
    ego = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach().double().numpy()

    def reference(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        layers = [ego]
        for _ in range(2):
            layers.append(adjacency @ layers[-1])
        mean = np.mean(layers, axis=0)
        content = item_graph @ item_graph @ ego[NUM_USERS:]
        return mean[:NUM_USERS], mean[NUM_USERS:] + content

    model.eval()
    for got, want in zip(model.embed(), reference(dense_normalized(users, items, NUM_USERS, NUM_ITEMS)), strict=True):
        np.testing.assert_allclose(got.detach().double().numpy(), want, rtol=1e-5, atol=1e-6)
    model.train()
    pruned = model.pruned.to_dense().numpy()
    kept_users, kept_items = np.nonzero(pruned[:NUM_USERS, NUM_USERS:])
    assert len(kept_users) == int(len(users) * 0.5)
    assert set(zip(kept_users, kept_items)) <= set(zip(users, items))
    for got, want in zip(model.embed(), reference(dense_normalized(kept_users, kept_items, NUM_USERS, NUM_ITEMS)),
                         strict=True):
        np.testing.assert_allclose(got.detach().double().numpy(), want, rtol=1e-5, atol=1e-6)
    for got, want in zip(model.embed_layerwise(), model.eval().embed(), strict=True):
        torch.testing.assert_close(got, want)


def test_the_gradient_through_the_item_graph_is_its_transpose():
    model = FREEDOM.from_dataset(planted_dataset(), FREEDOMOptions(dim=4, layers=0, item_layers=1, knn_k=3))
    model.eval()
    _, item_emb = model.embed()
    weights = torch.randn_like(item_emb)
    (item_emb * weights).sum().backward()
    item_graph = model.item_graph.to_dense()
    assert not torch.allclose(item_graph, item_graph.t())
    torch.testing.assert_close(model.item_embedding.weight.grad, weights + item_graph.t() @ weights)


def degree_sensitive_dataset() -> Dataset:
    """A hub user (all 20 items) and a hub item (all 30 users), plus 20 users with one item each:
    edges between the hubs' neighbourhoods differ in 1/sqrt(d_u d_i) by up to ~25x."""
    rows = [(0, item) for item in range(20)] + [(user, 0) for user in range(1, 30)]
    rows += [(30 + k, 1 + k % 19) for k in range(20)]
    users, items = (np.array(column, dtype=np.int32) for column in zip(*rows))
    import pandas as pd

    from graphrec.data.dataset import SPLIT_DTYPE
    interactions = pd.DataFrame({"user": users, "item": items, "rating": np.full(len(rows), np.nan, np.float32),
                                 "timestamp": pd.array([None] * len(rows), dtype="Int64"),
                                 "split": pd.Categorical(["train"] * len(rows), dtype=SPLIT_DTYPE)})
    features = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
    return Dataset("hubs", interactions, pd.DataFrame({"item_id": [f"i{k}" for k in range(20)]}),
                   pd.DataFrame({"user_id": [f"u{k}" for k in range(50)]}),
                   {"text": ModalityFeatures("text", features, np.ones(20, bool))})


def test_pruning_keeps_the_documented_share_biased_towards_low_degree_edges():
    dataset = degree_sensitive_dataset()
    model = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=4, knn_k=2, pruning=0.8))
    users, items = (torch.from_numpy(column).long() for column in dataset.pairs("train"))
    num_edges = len(users)
    user_degree = torch.bincount(users).double()
    item_degree = torch.bincount(items).double()
    weight = (user_degree[users] * item_degree[items]).rsqrt()
    kept_count = torch.zeros(num_edges)
    draws = 600
    for _ in range(draws):
        model.train()
        block = model.pruned.to_dense()[:50, 50:]
        kept = block[users, items] > 0
        assert int(kept.sum()) == int(num_edges * 0.2) == int((block > 0).sum())
        kept_count += kept
    frequency = kept_count / draws
    hub_edges = (users == 0) | (items == 0)
    # the hubs' edges have the smallest weights and are kept far less often than the rest
    assert frequency[hub_edges].mean() < 0.5 * frequency[~hub_edges].mean()
    assert torch.corrcoef(torch.stack([frequency.double(), weight]))[0, 1] > 0.9
    # keeping one edge draws it with probability proportional to 1/sqrt(d_u d_i)
    single = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=4, knn_k=2, pruning=1 - 1.5 / num_edges))
    counts = torch.zeros(num_edges)
    for _ in range(3000):
        single.train()
        block = single.pruned.to_dense()[:50, 50:]
        counts += (block[users, items] > 0).float()
    assert counts.sum() == 3000
    expected = weight / weight.sum()
    assert torch.allclose(counts.double() / 3000, expected, atol=0.02)


def test_pruning_is_redrawn_each_epoch_reproducibly_and_evaluation_uses_the_full_graph():
    dataset = planted_dataset()
    options = FREEDOMOptions(dim=4, knn_k=3, pruning=0.5)
    first, second = FREEDOM.from_dataset(dataset, options, seed=3), FREEDOM.from_dataset(dataset, options, seed=3)
    graphs = []
    for _ in range(3):
        first.train()
        second.train()
        torch.testing.assert_close(first.pruned.to_dense(), second.pruned.to_dense())
        graphs.append(first.pruned.to_dense())
    assert not torch.equal(graphs[0], graphs[1]) and not torch.equal(graphs[1], graphs[2])
    assert int(first.state_dict()["epochs_pruned"]) == 3
    first.eval()
    torch.testing.assert_close(first.embed()[0], first.embed_layerwise()[0])
    unpruned = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=4, knn_k=3, pruning=0.0))
    unpruned.train()
    torch.testing.assert_close(unpruned.pruned.to_dense(), unpruned.adjacency.to_dense())


def test_auxiliary_loss_is_lambda_times_the_modality_bpr_terms():
    dataset = planted_dataset()
    model = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=4, knn_k=3, modality_weight=0.01))
    user_emb, item_emb = model.embed()
    users, positives, negatives = torch.tensor([0, 1, 7]), torch.tensor([0, 2, 6]), torch.tensor([6, 7, 1])
    expected = 0.0
    for projection, values in zip(model.projections, (dataset.features["text"].values,
                                                      dataset.features["image"].values), strict=True):
        content = projection(torch.from_numpy(values))
        expected = expected + bpr_loss((user_emb[users] * content[positives]).sum(1),
                                       (user_emb[users] * content[negatives]).sum(1))
    torch.testing.assert_close(model.auxiliary_loss(user_emb, item_emb, users, positives, negatives),
                               0.01 * expected)
    silent = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=4, knn_k=3, modality_weight=0.0))
    assert silent.auxiliary_loss(*silent.embed(), users, positives, negatives) is None


@pytest.mark.parametrize(("values", "field"), [
    ({"dim": 0}, "dim"), ({"knn_k": 0}, "knn_k"), ({"layers": -1}, "layers"), ({"item_layers": -1}, "item_layers"),
    ({"image_weight": 1.5}, "image_weight"), ({"pruning": 1.0}, "pruning"), ({"pruning": -0.1}, "pruning"),
    ({"modality_weight": -1e-4}, "modality_weight")])
def test_bad_options_are_config_errors_naming_the_option(values, field):
    with pytest.raises(ConfigError) as error:
        FREEDOMOptions(**values)
    assert error.value.field == field


def test_a_dataset_without_features_is_refused_and_neighbour_sampling_too(tmp_path):
    bare = planted_dataset()
    bare = Dataset(bare.name, bare.interactions, bare.items, bare.users, {})
    with pytest.raises(GraphrecError, match="needs item features"):
        ModelConfig("freedom").model.from_dataset(bare, FREEDOMOptions())
    assert not MODELS["freedom"].supports_subgraphs
    with pytest.raises(GraphrecError, match="sampl"):
        train(planted_dataset(), ModelConfig("freedom", knn_k=3),
              TrainConfig(epochs=1, batch_size=8, eval_ks=(5,), select_metric="recall@5", progress=False,
                          sampling="neighbor"), out=tmp_path / "run", log=lambda _: None)


def test_trains_through_the_real_trainer_and_beats_its_untrained_self(synthetic_with_features, tmp_path):
    dataset = synthetic_with_features
    config = TrainConfig(epochs=15, batch_size=256, lr=0.01, reg=0.0, progress=False, seed=0, patience=15)
    run = train(dataset, ModelConfig("freedom", pruning=0.8), config, out=tmp_path / "run", log=lambda _: None)
    losses = [record["loss"] for record in run.metrics["epochs"]]
    assert losses[-1] < 0.8 * losses[0]
    untrained = train(dataset, ModelConfig("freedom", pruning=0.8),
                      TrainConfig(epochs=1, batch_size=256, lr=1e-9, reg=0.0, progress=False, seed=0),
                      out=tmp_path / "untrained", log=lambda _: None)
    assert run.metrics["valid"]["recall@20"] > 1.5 * untrained.metrics["valid"]["recall@20"]
    loaded = load_run(tmp_path / "run", dataset=dataset)
    users = torch.arange(dataset.num_users)
    torch.testing.assert_close(loaded.model.scorer()(users), run.model.scorer()(users))


@pytest.mark.slow  # seven real subprocesses, each importing torch
def test_the_cli_trains_evaluates_recommends_exports_and_indexes_it(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    assert graphrec("convert", "synthetic", "-", data, "--users", "60", "--items", "30",
                    "-o", "mean_interactions=8", "-o", "image_size=16").returncode == 0
    from graphrec.encoders.bundled import bundled_minilm
    encoded = graphrec("encode", data, "--modality", "text", "--model", bundled_minilm(), "--device", "cpu")
    assert encoded.returncode == 0, encoded.stderr
    bad = graphrec("train", data, "--model", "freedom", "--pruning", "1.5", "--out", run)
    assert bad.returncode == 2 and "--pruning" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    trained = graphrec("train", data, "--model", "freedom", "--epochs", "2", "--knn-k", "5", "--reg", "0",
                       "--no-progress", "--out", run)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((run / "run.json").read_text())["model"]["options"]["knn_k"] == 5
    evaluated = graphrec("evaluate", run, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert 0.0 <= json.loads(evaluated.stdout)["metrics"]["recall@20"] <= 1.0
    recommended = graphrec("recommend", run, "--user", "user_00000", "-k", "3", "--json")
    assert recommended.returncode == 0, recommended.stderr
    [result] = json.loads(recommended.stdout)
    assert len(result["items"]) == 3 and len(result["explanations"]) == 3
    exported = graphrec("export-embeddings", run, tmp_path / "emb", "--format", "npy")
    assert exported.returncode == 0, exported.stderr
    indexed = graphrec("index", run, "--backend", "exact")
    assert indexed.returncode == 0, indexed.stderr


@pytest.mark.slow  # two real torchrun processes and one single one
def test_two_processes_prune_alike_and_match_one(tmp_path):
    data = tmp_path / "data"
    convert("synthetic", "-", data, reader_options={"users": 200, "items": 80, "seed": 1, "mean_interactions": 10,
                                                    "image_size": 16})
    from graphrec.encoders import TextEncoderConfig, encode
    from graphrec.encoders.bundled import bundled_minilm
    encode(data, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"), log=None)
    args = ["--model", "freedom", "--dim", "16", "--knn-k", "5", "--pruning", "0.5", "--epochs", "3", "--batch-size",
            "512", "--lr", "0.005", "--reg", "0", "--seed", "7", "--no-progress", "--device", "cpu", "--deterministic"]
    for command, out in (([sys.executable, "-m", "graphrec"], "single"),
                         ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "graphrec"], "double")):
        completed = subprocess.run([*command, "train", str(data), "--out", str(tmp_path / out), *args],
                                   capture_output=True, text=True, cwd=tmp_path, timeout=600)
        assert completed.returncode == 0, completed.stderr[-4000:]
    one = json.loads((tmp_path / "single" / "metrics.json").read_text())
    two = json.loads((tmp_path / "double" / "metrics.json").read_text())
    assert two["distributed"]["world_size"] == 2 and two["distributed"]["identical_across_ranks"]
    assert [e["loss"] for e in two["epochs"]] == pytest.approx([e["loss"] for e in one["epochs"]], rel=1e-4)
    assert two["test"]["recall@20"] == pytest.approx(one["test"]["recall@20"], abs=1e-3)


def test_the_training_step_adds_the_modality_terms_to_the_bpr_loss():
    from graphrec.training.batches import TrainBatch
    from graphrec.training.step import bpr_step

    dataset = planted_dataset()
    users, positives, negatives = torch.tensor([0, 1, 7]), torch.tensor([0, 2, 6]), torch.tensor([6, 7, 1])
    losses = []
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        model = FREEDOM.from_dataset(dataset, FREEDOMOptions(dim=4, knn_k=3, pruning=0.0, modality_weight=weight))
        user_emb, item_emb = model.embed()
        expected = bpr_loss(model.score(user_emb, item_emb, users, positives),
                            model.score(user_emb, item_emb, users, negatives))
        auxiliary = model.auxiliary_loss(user_emb, item_emb, users, positives, negatives)
        expected = expected if auxiliary is None else expected + auxiliary
        step = bpr_step(model, TrainBatch(users, positives, negatives), torch.optim.SGD(model.parameters(), lr=0.0))
        torch.testing.assert_close(step, expected.detach())
        losses.append(float(step))
    assert losses[1] > losses[0]

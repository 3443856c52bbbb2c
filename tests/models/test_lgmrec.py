"""LGMRec: its local and global embeddings against a dense reference, items missing a modality, one
and three modalities, the hypergraph contrastive term, the seeded training noise, option errors,
gradients into the hyperedges, and its whole life through the real trainer and CLI."""

from __future__ import annotations

import itertools
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
from graphrec.models import MODELS, ModelConfig, build_model
from graphrec.models.lgmrec import LGMRec, LGMRecOptions, hypergraph_contrast
from graphrec.training.batches import TrainBatch
from graphrec.training.bpr import bpr_loss
from graphrec.training.run import TrainConfig, load_run, train
from graphrec.training.step import bpr_step

SMALL = {"dim": 8, "hyperedges": 3}


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def softmax_rows(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def dense_reference(model: LGMRec, dataset: Dataset, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The module docstring's evaluation-time representations, densely in float64, from the model's
    parameters and the dataset's raw features and masks."""
    users, items = dataset.pairs("train")
    adjacency = dense_normalized(users, items, NUM_USERS, NUM_ITEMS)
    interactions = np.zeros((NUM_USERS, NUM_ITEMS))
    interactions[users, items] = 1.0

    def weights(parameter: torch.Tensor) -> np.ndarray:
        return parameter.detach().double().numpy()

    layer = np.concatenate([weights(model.user_embedding.weight), weights(model.item_embedding.weight)])
    layers = [layer]
    for _ in range(model.num_layers):
        layers.append(adjacency @ layers[-1])
    collaborative = np.mean(layers, axis=0)
    local, global_sum = collaborative.copy(), 0.0
    for index, name in enumerate(names):
        feature = dataset.features[name]
        values = np.where(feature.mask[:, None], feature.values, 0.0)
        projected = values @ weights(model.projections[index].weight).T
        user_side = interactions @ projected / interactions.sum(1, keepdims=True)
        z = np.concatenate([user_side, projected])
        for _ in range(model.modality_layers):
            z = adjacency @ z
        local += unit_rows(z)
        item_logits = values @ weights(model.hyperedges[index]).T
        item_hyper = softmax_rows(item_logits / model.gumbel_temperature) * feature.mask[:, None]
        user_has = (interactions @ feature.mask.astype(float)) > 0
        user_hyper = softmax_rows(interactions @ item_logits / model.gumbel_temperature) * user_has[:, None]
        x = collaborative[NUM_USERS:]
        for _ in range(model.hyper_layers):
            hyperedges = item_hyper.T @ x
            x = item_hyper @ hyperedges
        global_sum = global_sum + np.concatenate([user_hyper @ hyperedges, x])
    fused = local + model.global_weight * unit_rows(global_sum)
    return fused[:NUM_USERS], fused[NUM_USERS:]


@pytest.mark.parametrize("options", [{}, {"layers": 0, "modality_layers": 1, "hyper_layers": 2, "global_weight": 1.0}])
def test_evaluation_embeddings_equal_a_dense_reference(options):
    dataset = planted_dataset()
    model = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL, **options)).eval()
    user_emb, item_emb = model.embed()
    assert user_emb.shape == (NUM_USERS, 8) and item_emb.shape == (NUM_ITEMS, 8)
    want_users, want_items = dense_reference(model, dataset, ["text", "image"])
    np.testing.assert_allclose(user_emb.detach().double().numpy(), want_users, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(item_emb.detach().double().numpy(), want_items, rtol=1e-4, atol=1e-5)
    for got, want in zip(model.embed_layerwise(), (user_emb, item_emb), strict=True):
        torch.testing.assert_close(got, want)


def with_features(dataset: Dataset, features: dict[str, ModalityFeatures]) -> Dataset:
    return Dataset(dataset.name, dataset.interactions, dataset.items, dataset.users, features)


def test_an_item_missing_a_modality_reads_nothing_of_it():
    dataset = planted_dataset()
    text = dataset.features["text"]
    assert not text.mask[2]
    garbage = text.values.copy()
    garbage[2] = [50.0, -50.0, np.nan, np.inf]
    noisy = with_features(dataset, {"text": ModalityFeatures("text", garbage, text.mask),
                                    "image": dataset.features["image"]})
    for stochastic in (False, True):
        torch.manual_seed(0)
        clean_model = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL)).train(stochastic)
        torch.manual_seed(0)
        noisy_model = LGMRec.from_dataset(noisy, LGMRecOptions(**SMALL)).train(stochastic)
        for left, right in zip(clean_model.embed(), noisy_model.embed(), strict=True):
            torch.testing.assert_close(left, right)
    model = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL)).eval()
    _, _, parts = model._embed(stochastic=False)
    text_part, image_part = parts
    # no hyperedge of a modality holds an item without it: its global embedding there is zero
    assert torch.count_nonzero(text_part[NUM_USERS + 2]) == 0
    assert torch.count_nonzero(image_part[NUM_USERS + 7]) == 0 and torch.count_nonzero(image_part[NUM_USERS + 8]) == 0
    assert torch.count_nonzero(image_part[NUM_USERS + 2]) > 0 and torch.count_nonzero(text_part[NUM_USERS + 7]) > 0


def test_one_modality_has_no_contrastive_term_and_trains(tmp_path):
    dataset = planted_dataset()
    text_only = with_features(dataset, {"text": dataset.features["text"]})
    model = LGMRec.from_dataset(text_only, LGMRecOptions(**SMALL))
    assert model.num_modalities == 1 and len(model.hyperedges) == 1
    user_emb, item_emb = model.embed()
    assert model.auxiliary_loss(user_emb, item_emb, torch.tensor([0]), torch.tensor([1]), torch.tensor([6])) is None
    chosen = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL, modalities=("text",)))
    assert chosen.num_modalities == 1
    torch.testing.assert_close(chosen.features[0], model.features[0])
    config = TrainConfig(epochs=3, batch_size=8, lr=0.01, eval_ks=(5,), select_metric="recall@5", progress=False)
    run = train(text_only, ModelConfig("lgmrec", **SMALL), config, out=tmp_path / "run", log=lambda _: None)
    assert len(run.metrics["epochs"]) == 3 and np.isfinite([e["loss"] for e in run.metrics["epochs"]]).all()
    assert 0.0 <= run.metrics["test"]["recall@5"] <= 1.0


def test_hypergraph_contrast_equals_its_formula():
    generator = torch.Generator().manual_seed(0)
    anchors, candidates = torch.randn(4, 5, generator=generator), torch.randn(9, 5, generator=generator)
    rows = torch.tensor([3, 0, 7, 3])
    got = hypergraph_contrast(anchors, candidates[rows], candidates, 0.5)
    expected = 0.0
    for b in range(4):
        similarity = torch.nn.functional.cosine_similarity(anchors[b:b + 1], candidates) / 0.5
        expected += -(similarity[rows[b]].exp() / similarity.exp().sum()).log() / 4
    torch.testing.assert_close(got, expected)
    # anchors that point at their own positives, far from the others, have a small loss
    assert hypergraph_contrast(candidates[rows] * 2, candidates[rows], candidates, 0.05) < 0.5 * got


def test_three_modalities_contrast_every_pair():
    dataset = planted_dataset()
    genre = np.random.default_rng(3).normal(size=(NUM_ITEMS, 2)).astype(np.float32)
    three = with_features(dataset, {**dataset.features,
                                    "genre": ModalityFeatures("genre", genre, np.arange(NUM_ITEMS) != 9)})
    model = LGMRec.from_dataset(three, LGMRecOptions(**SMALL, cl_weight=0.5))
    assert model.num_modalities == 3
    users, positives, negatives = torch.tensor([0, 1, 7, 7]), torch.tensor([0, 2, 6, 8]), torch.tensor([6, 7, 1, 2])
    user_emb, item_emb = model.embed()
    parts = model._last_global
    assert parts is not None and len(parts) == 3
    expected = 0.0
    for first, second in itertools.combinations(parts, 2):
        expected += hypergraph_contrast(first[users], second[users], second[:NUM_USERS], 0.2)
        expected += hypergraph_contrast(first[NUM_USERS + positives], second[NUM_USERS + positives],
                                        second[NUM_USERS:], 0.2)
    torch.testing.assert_close(model.auxiliary_loss(user_emb, item_emb, users, positives, negatives), 0.5 * expected)
    silent = LGMRec.from_dataset(three, LGMRecOptions(**SMALL, cl_weight=0.0))
    assert silent.auxiliary_loss(*silent.embed(), users, positives, negatives) is None


def test_training_noise_is_seeded_drawn_anew_each_forward_and_absent_in_evaluation():
    dataset = planted_dataset()
    first = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL), seed=4)
    second = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL), seed=4)
    second.load_state_dict(first.state_dict())
    draws = [first.embed()[0] for _ in range(2)]
    torch.testing.assert_close(second.embed()[0], draws[0])
    assert not torch.allclose(draws[0], draws[1])
    assert int(first.state_dict()["draws"]) == 2
    resumed = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL), seed=4)
    resumed.load_state_dict(first.state_dict())
    torch.testing.assert_close(resumed.embed()[0], first.embed()[0])
    other_seed = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL), seed=5)
    other_seed.load_state_dict(second.state_dict())
    assert not torch.allclose(other_seed.embed()[0], second.embed()[0])
    first.eval()
    evaluated = first.embed()[0]
    torch.testing.assert_close(first.embed()[0], evaluated)
    torch.testing.assert_close(first.embed_layerwise()[0], evaluated)
    assert int(first.draws) == 3


def test_reset_parameters_is_reproducible_from_the_seed():
    dataset = planted_dataset()
    model = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL))
    model.embed()

    def state_after_reset(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(seed)
        model.reset_parameters()
        return {name: value.clone() for name, value in model.state_dict().items()}

    once, again, other = state_after_reset(1), state_after_reset(1), state_after_reset(2)
    assert once.keys() == {"draws", "user_embedding.weight", "item_embedding.weight", "projections.0.weight",
                           "projections.1.weight", "hyperedges.0", "hyperedges.1"}
    for name in once:
        torch.testing.assert_close(once[name], again[name])
    assert int(once["draws"]) == 0
    assert all(not torch.equal(once[name], other[name]) for name in once if name != "draws")
    built, rebuilt = (build_model(ModelConfig("lgmrec", **SMALL), dataset, seed=1) for _ in range(2))
    for (name, value), other_value in zip(built.state_dict().items(), rebuilt.state_dict().values(), strict=True):
        torch.testing.assert_close(value, other_value, msg=name)


@pytest.mark.parametrize(("values", "field"), [
    ({"dim": 0}, "dim"), ({"hyperedges": -4}, "hyperedges"), ({"hyperedges": 0}, "hyperedges"),
    ({"hyper_layers": 0}, "hyper_layers"), ({"layers": -1}, "layers"), ({"modality_layers": -1}, "modality_layers"),
    ({"hyperedge_dropout": 1.0}, "hyperedge_dropout"),
    ({"hyperedge_dropout": -0.1}, "hyperedge_dropout"), ({"global_weight": -0.3}, "global_weight"),
    ({"cl_weight": -1e-4}, "cl_weight"), ({"gumbel_temperature": 0.0}, "gumbel_temperature"),
    ({"cl_temperature": -0.2}, "cl_temperature")])
def test_bad_options_are_config_errors_naming_the_option(values, field):
    with pytest.raises(ConfigError) as error:
        LGMRecOptions(**values)
    assert error.value.field == field
    with pytest.raises(ConfigError, match=field):
        ModelConfig("lgmrec", **values)


def test_gradients_reach_the_hyperedges_through_the_score_and_the_contrast():
    dataset = planted_dataset()
    users, positives, negatives = torch.tensor([0, 1, 7]), torch.tensor([0, 2, 6]), torch.tensor([6, 7, 1])
    for global_weight, cl_weight, reaches in ((0.3, 0.0, True), (0.0, 0.2, True), (0.0, 0.0, False)):
        model = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL, global_weight=global_weight, cl_weight=cl_weight))
        user_emb, item_emb = model.embed()
        loss = bpr_loss(model.score(user_emb, item_emb, users, positives),
                        model.score(user_emb, item_emb, users, negatives))
        auxiliary = model.auxiliary_loss(user_emb, item_emb, users, positives, negatives)
        (loss if auxiliary is None else loss + auxiliary).backward()
        for hyperedges in model.hyperedges:
            gradient = hyperedges.grad
            assert (gradient is not None and bool(gradient.abs().sum() > 0)) == reaches, (global_weight, cl_weight)
            if gradient is not None:
                assert torch.isfinite(gradient).all()


def test_the_training_step_adds_the_contrastive_term_to_the_bpr_loss():
    dataset = planted_dataset()
    users, positives, negatives = torch.tensor([0, 1, 7]), torch.tensor([0, 2, 6]), torch.tensor([6, 7, 1])
    losses = []
    for weight in (0.0, 0.5):
        torch.manual_seed(0)
        reference = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL, cl_weight=weight))
        torch.manual_seed(0)
        model = LGMRec.from_dataset(dataset, LGMRecOptions(**SMALL, cl_weight=weight))
        user_emb, item_emb = reference.embed()  # the same noise as the step's forward draws
        expected = bpr_loss(reference.score(user_emb, item_emb, users, positives),
                            reference.score(user_emb, item_emb, users, negatives))
        auxiliary = reference.auxiliary_loss(user_emb, item_emb, users, positives, negatives)
        expected = expected if auxiliary is None else expected + auxiliary
        step = bpr_step(model, TrainBatch(users, positives, negatives), torch.optim.SGD(model.parameters(), lr=0.0))
        torch.testing.assert_close(step, expected.detach())
        losses.append(float(step))
    assert losses[1] > losses[0]


def test_a_dataset_without_features_is_refused_and_neighbour_sampling_too(tmp_path):
    bare = with_features(planted_dataset(), {})
    with pytest.raises(GraphrecError, match="needs item features"):
        LGMRec.from_dataset(bare, LGMRecOptions())
    with pytest.raises(GraphrecError, match="no modality"):
        LGMRec.from_dataset(planted_dataset(), LGMRecOptions(modalities=("audio",)))
    assert not MODELS["lgmrec"].supports_subgraphs
    with pytest.raises(GraphrecError, match="sampl"):
        train(planted_dataset(), ModelConfig("lgmrec", **SMALL),
              TrainConfig(epochs=1, batch_size=8, eval_ks=(5,), select_metric="recall@5", progress=False,
                          sampling="neighbor"), out=tmp_path / "run", log=lambda _: None)


def test_trains_through_the_real_trainer_and_beats_its_untrained_self_and_random(synthetic_with_features, tmp_path):
    dataset = synthetic_with_features
    config = TrainConfig(epochs=15, batch_size=256, lr=0.01, reg=1e-4, progress=False, seed=0, patience=15)
    run = train(dataset, ModelConfig("lgmrec", dim=32), config, out=tmp_path / "run", log=lambda _: None)
    losses = [record["loss"] for record in run.metrics["epochs"]]
    # the contrastive term (about 2 of the first epoch's 2.6) has a floor well above 0, unlike BPR
    assert losses[-1] < 0.93 * losses[0]
    untrained = train(dataset, ModelConfig("lgmrec", dim=32),
                      TrainConfig(epochs=1, batch_size=256, lr=1e-9, reg=1e-4, progress=False, seed=0),
                      out=tmp_path / "untrained", log=lambda _: None)
    random = train(dataset, ModelConfig("random"), TrainConfig(epochs=1, progress=False, seed=0),
                   out=tmp_path / "random", log=lambda _: None)
    # untrained, the modality embeddings of the planted features already rank well (about 0.51)
    assert run.metrics["valid"]["recall@20"] > 1.2 * untrained.metrics["valid"]["recall@20"]
    assert run.metrics["valid"]["recall@20"] > 2.0 * random.metrics["valid"]["recall@20"]
    loaded = load_run(tmp_path / "run", dataset=dataset)
    users = torch.arange(dataset.num_users)
    torch.testing.assert_close(loaded.model.scorer()(users), run.model.scorer()(users))


@pytest.mark.slow  # seven real subprocesses, each importing torch
def test_the_cli_trains_a_text_only_dataset_evaluates_recommends_exports_and_indexes_it(tmp_path):
    """Text alone is the case MMRec's LGMRec fails on."""
    data, run = tmp_path / "data", tmp_path / "run"
    assert graphrec("convert", "synthetic", "-", data, "--users", "60", "--items", "30",
                    "-o", "mean_interactions=8", "-o", "image_size=16").returncode == 0
    from graphrec.encoders.bundled import bundled_minilm
    encoded = graphrec("encode", data, "--modality", "text", "--model", bundled_minilm(), "--device", "cpu")
    assert encoded.returncode == 0, encoded.stderr
    bad = graphrec("train", data, "--model", "lgmrec", "--hyperedges", "-4", "--out", run)
    assert bad.returncode == 2 and "--hyperedges" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    trained = graphrec("train", data, "--model", "lgmrec", "--epochs", "2", "--hyperedges", "8", "--no-progress",
                       "--out", run)
    assert trained.returncode == 0, trained.stderr
    options = json.loads((run / "run.json").read_text())["model"]["options"]
    assert options["hyperedges"] == 8 and options["cl_weight"] == 0.2
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
def test_two_processes_draw_the_same_noise_and_match_one(tmp_path):
    data = tmp_path / "data"
    convert("synthetic", "-", data, reader_options={"users": 200, "items": 80, "seed": 1, "mean_interactions": 10,
                                                    "image_size": 16})
    from graphrec.encoders import TextEncoderConfig, encode
    from graphrec.encoders.bundled import bundled_minilm
    encode(data, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"), log=None)
    args = ["--model", "lgmrec", "--dim", "16", "--epochs", "3", "--batch-size", "512", "--lr", "0.005",
            "--seed", "7", "--no-progress", "--device", "cpu", "--deterministic"]
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

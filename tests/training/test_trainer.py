"""Training: validation-only selection, identical resume, time budget, carved validation, run files."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import SPLIT_DTYPE, ModalityFeatures
from graphrec.errors import ConfigError, GraphrecError
from graphrec.models import build_model
from graphrec.training.run import (
    ModelConfig,
    TrainConfig,
    evaluate_run,
    load_run,
    train,
)
from graphrec.training.trainer import fit

FAST = dict(batch_size=4096, lr=5e-3, progress=False, eval_ks=(10, 20))


@pytest.fixture(scope="module")
def movielens(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return convert("movielens", shared_data / "ml-100k", root / "ml100k",
                   ConvertConfig(min_rating=3, split="random", seed=5)).dataset


def test_run_directory_and_metrics_schema(movielens, tmp_path):
    run = train(movielens, ModelConfig("mf", dim=32), TrainConfig(epochs=3, plot=True, **FAST), out=tmp_path / "r",
                log=lambda _: None)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    for split in ("valid", "test"):
        assert {"recall@20", "ndcg@20", "precision@20", "hit@20", "mrr@20", "map@20"} <= set(metrics[split])
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert all(e["seconds"] > 0 and np.isfinite(e["loss"]) and "recall@20" in e["valid"] for e in metrics["epochs"])
    assert (tmp_path / "r" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    torch.load(tmp_path / "r" / "model.pt", weights_only=True)
    torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    # reloading the run reproduces its test metrics
    again = evaluate_run(tmp_path / "r", split="test", ks=(10, 20))
    assert again["recall@20"] == pytest.approx(run.metrics["test"]["recall@20"], abs=1e-6)


def test_resume_gives_the_identical_result(movielens, tmp_path):
    config = TrainConfig(epochs=4, deterministic=True, **FAST)
    straight = train(movielens, ModelConfig("lightgcn", dim=16, layers=2), config, out=tmp_path / "a",
                     log=lambda _: None)
    train(movielens, ModelConfig("lightgcn", dim=16, layers=2), dataclasses.replace(config, epochs=2),
          out=tmp_path / "b", log=lambda _: None)
    resumed = train(movielens, ModelConfig("lightgcn", dim=16, layers=2), config, out=tmp_path / "b", resume=True,
                    log=lambda _: None)
    # Exact on the machines CI runs on; float32 rounding is allowed because on a loaded 16-core
    # machine an epoch's loss was seen one rounding step off (see the trainer's docstring). A
    # resume that restores something wrongly is off by far more (1e-4 and up, as seen).
    assert [e["loss"] for e in resumed.metrics["epochs"]] == pytest.approx(
        [e["loss"] for e in straight.metrics["epochs"]], rel=1e-6)
    assert resumed.metrics["test"] == pytest.approx(straight.metrics["test"], abs=1e-6)
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


def test_model_selection_never_looks_at_the_test_split(movielens, tmp_path):
    """Scrambling the test split must not change anything about training or selection."""
    inter = movielens.interactions.copy()
    test_rows = np.flatnonzero((inter["split"] == "test").to_numpy())
    rng = np.random.default_rng(0)
    inter.loc[test_rows, "item"] = rng.integers(0, movielens.num_items, len(test_rows)).astype(np.int32)
    scrambled = dataclasses.replace(movielens, interactions=inter)
    config = TrainConfig(epochs=4, patience=2, deterministic=True, **FAST)
    a = train(movielens, ModelConfig("mf", dim=16), config, log=lambda _: None)
    b = train(scrambled, ModelConfig("mf", dim=16), config, log=lambda _: None)
    assert a.metrics["epochs"] == [dict(e, seconds=e2["seconds"]) for e, e2 in
                                   zip(b.metrics["epochs"], a.metrics["epochs"])]
    assert a.metrics["best_epoch"] == b.metrics["best_epoch"]
    assert a.metrics["valid"] == b.metrics["valid"]
    assert a.metrics["test"] != b.metrics["test"]


def test_time_budget_stops_and_still_tests(movielens, tmp_path):
    run = train(movielens, ModelConfig("lightgcn", dim=16), TrainConfig(epochs=1000, max_minutes=0.02, **FAST),
                log=lambda _: None)
    assert "time budget" in run.metrics["stopped_reason"]
    assert len(run.metrics["epochs"]) < 1000
    assert run.metrics["test"]["recall@20"] > 0


def _without_split(dataset, split):
    inter = dataset.interactions.copy()
    inter["split"] = pd.Categorical(np.where(inter["split"] == split, "train", inter["split"].astype(str)),
                                    dtype=SPLIT_DTYPE)
    return dataclasses.replace(dataset, interactions=inter)


def test_validation_is_carved_from_training_before_the_graph_is_built(movielens, tmp_path):
    no_valid = _without_split(movielens, "valid")
    no_valid.save(tmp_path / "no_valid")  # a run reloads its dataset from disk
    run = train(no_valid, ModelConfig("lightgcn", dim=8, layers=2), TrainConfig(epochs=2, **FAST),
                out=tmp_path / "r", log=lambda _: None)
    counts = run.dataset.split_counts()
    assert counts["valid"] > 0 and counts["test"] == no_valid.split_counts()["test"]
    assert counts["train"] + counts["valid"] == no_valid.split_counts()["train"]
    assert any("carved" in note for note in run.metrics["notes"])
    # the propagation graph holds the training edges only, not the carved validation ones
    assert run.model.adjacency._nnz() == 2 * counts["train"]
    # and the run reloads to the model that was selected and tested
    for split in ("valid", "test"):
        again = evaluate_run(tmp_path / "r", split=split, ks=(10, 20))
        assert again["recall@20"] == pytest.approx(run.metrics[split]["recall@20"], abs=1e-6)
    pop = train(no_valid, ModelConfig("pop"), TrainConfig(epochs=1, **FAST), log=lambda _: None)
    assert pop.metrics["valid"]["recall@20"] > 0


def test_fit_refuses_a_dataset_without_validation(movielens):
    no_valid = _without_split(movielens, "valid")
    model = build_model(ModelConfig("mf", dim=8), no_valid)
    with pytest.raises(GraphrecError, match="has no validation split"):
        fit(model, no_valid, TrainConfig(epochs=1, **FAST), lambda *_: {"recall@20": 0.0}, log=lambda _: None)


def test_a_dataset_without_a_test_split_still_saves_the_model(movielens, tmp_path):
    run = train(_without_split(movielens, "test"), ModelConfig("mf", dim=8), TrainConfig(epochs=1, **FAST),
                out=tmp_path / "r", log=lambda _: None)
    assert "test" not in run.metrics and run.metrics["valid"]["recall@20"] > 0
    assert any("no test split" in note for note in run.metrics["notes"])
    assert (tmp_path / "r" / "model.pt").is_file() and (tmp_path / "r" / "metrics.json").is_file()


def test_a_new_run_replaces_the_previous_one_only_when_asked_and_once_it_can_start(movielens, tmp_path):
    train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=1, **FAST), out=tmp_path / "r", log=lambda _: None)
    names = ("run.json", "model.pt", "last.pt", "metrics.json")
    before = {name: (tmp_path / "r" / name).read_bytes() for name in names}
    lightgcn = ModelConfig("lightgcn", dim=8, layers=2)
    with pytest.raises(GraphrecError, match="already holds a run"):
        train(movielens, lightgcn, TrainConfig(epochs=1, **FAST), out=tmp_path / "r", log=lambda _: None)
    with pytest.raises(GraphrecError, match="samples 1 hop"):  # refused before the previous run is touched
        train(movielens, lightgcn, TrainConfig(epochs=1, fanout=(5,), sampling="neighbor", **FAST),
              out=tmp_path / "r", overwrite=True, log=lambda _: None)
    assert {name: (tmp_path / "r" / name).read_bytes() for name in names} == before
    lines: list[str] = []
    train(movielens, lightgcn, TrainConfig(epochs=1, **FAST), out=tmp_path / "r", overwrite=True, log=lines.append)
    assert any("replacing the previous run" in line for line in lines)
    assert load_run(tmp_path / "r").model_config.name == "lightgcn"


def test_training_options_are_checked_before_training():
    for bad, needle in (({"select_metric": "foo@20"}, "METRIC one of"), ({"max_minutes": 0}, "max_minutes"),
                        ({"device": "bogus"}, "not a device name"), ({"contrastive_temperature": 0}, "temperature"),
                        ({"contrastive_weight": -1}, "contrastive_weight")):
        with pytest.raises(ValueError, match=needle):
            TrainConfig(**bad)
    for bad, field in (({"heads": 0}, "heads"), ({"dropout": 1.0}, "dropout"), ({"fusion": "max"}, "fusion")):
        with pytest.raises(ConfigError, match=f"^{field}: ") as raised:
            ModelConfig("gat", **bad)
        assert raised.value.field == field and "--" not in str(raised.value)  # library messages name fields


def test_config_errors_name_the_field_and_never_a_flag():
    """One error type for every configuration value (a ValueError too); the CLI adds its flag names."""
    for make, field in ((lambda: TrainConfig(epochs=0), "epochs"),
                        (lambda: TrainConfig(lr_decay_factor=2), "lr_decay_factor"),
                        (lambda: ModelConfig("lightgcn", layers=-1), "layers"), (lambda: ModelConfig("nope"), "model")):
        with pytest.raises(ConfigError) as raised:
            make()
        assert isinstance(raised.value, ValueError) and isinstance(raised.value, GraphrecError)
        assert raised.value.field == field and "--" not in str(raised.value)


def test_options_a_model_does_not_have_are_refused(tmp_path):
    """--heads with mf, --layers with vbpr, ...: refused when the configuration is made, before
    anything is trained or written, naming the models that do have the option."""
    for model, options, needle in (("mf", {"layers": 2}, "has no option 'layers' (an option of lightgcn, gat"),
                                   ("lightgcn", {"heads": 4}, "has no option 'heads' (an option of gat)"),
                                   ("vbpr", {"entities": ()}, "has no option 'entities' (an option of gat)"),
                                   ("pop", {"dim": 8}, "has no option 'dim' (an option of mf, lightgcn"),
                                   ("gat", {"head": 2}, "has no option 'head' (did you mean 'heads'?)")):
        with pytest.raises(ConfigError, match=re.escape(f"model {model!r} {needle}")):
            ModelConfig(model, **options)


def test_lightgcn_learns_beyond_popularity(movielens):
    pop = train(movielens, ModelConfig("pop"), TrainConfig(epochs=1, **FAST), log=lambda _: None)
    rnd = train(movielens, ModelConfig("random"), TrainConfig(epochs=1, **FAST), log=lambda _: None)
    lgn = train(movielens, ModelConfig("lightgcn", dim=32), TrainConfig(epochs=25, **FAST), log=lambda _: None)
    assert rnd.metrics["test"]["recall@20"] < pop.metrics["test"]["recall@20"]
    assert lgn.metrics["test"]["recall@20"] > 1.1 * pop.metrics["test"]["recall@20"]


def test_reloaded_run_has_identical_embeddings(movielens, tmp_path):
    run = train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=1, **FAST), out=tmp_path / "r",
                log=lambda _: None)
    loaded = load_run(tmp_path / "r")
    for a, b in zip(run.embeddings(), loaded.embeddings()):
        assert torch.equal(a, b)


def test_learning_rate_decays_after_validation_stalls(movielens):
    """A validation metric that never improves after the first check halves the rate at every check."""
    dataset = movielens
    calls = iter([0.5] + [0.1] * 10)
    lines: list[str] = []
    model = build_model(ModelConfig("mf", dim=4), dataset, seed=0)
    result = fit(model, dataset, TrainConfig(epochs=4, lr=0.01, progress=False, eval_ks=(20,), patience=100,
                                             lr_decay_patience=1, lr_decay_factor=0.5),
                 lambda *_: {"recall@20": next(calls)}, log=lines.append)
    decays = [line for line in lines if "learning rate now" in line]
    assert len(decays) == 3 and decays[-1].endswith("0.00125")
    assert result.best_epoch == 1 and len(result.notes) == 3


def test_learning_rate_decay_settings_are_checked():
    with pytest.raises(ValueError, match="lr_decay_factor"):
        TrainConfig(lr_decay_patience=1, lr_decay_factor=1.5)
    with pytest.raises(ValueError, match="lr_decay_patience"):
        TrainConfig(lr_decay_patience=0)


@pytest.mark.parametrize("sampling", ["full", "neighbor"])
def test_several_negatives_per_interaction_share_one_propagation(movielens, sampling):
    """num_negatives=K gives every (user, positive) pair K BPR terms in the same step: an epoch takes
    as many model passes as with one negative, and the model still learns."""
    passes = {1: 0, 4: 0}
    scored = {1: 0, 4: 0}
    results = {}
    for per_pair in passes:
        model = build_model(ModelConfig("lightgcn", dim=16, layers=2), movielens, seed=0)

        def count(*_, per_pair=per_pair):
            passes[per_pair] += 1

        def score(user_emb, item_emb, users, items, per_pair=per_pair, score=model.score):
            scored[per_pair] += items.numel()
            return score(user_emb, item_emb, users, items)

        model.register_forward_hook(count)
        model.score = score
        config = TrainConfig(epochs=3, num_negatives=per_pair, sampling=sampling, fanout=(5, 5), patience=100,
                             **FAST)
        results[per_pair] = fit(model, movielens, config, lambda *_: {"recall@20": 0.0, "recall@10": 0.0},
                                log=lambda _: None)
    train_size = movielens.split_counts()["train"]
    assert passes[4] == passes[1] == 3 * -(-train_size // FAST["batch_size"])
    assert scored[1] == 3 * 2 * train_size and scored[4] == 4 * scored[1]  # (positive, negative) scores
    for result in results.values():
        losses = [record.loss for record in result.history]
        assert losses[0] < 0.7 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="num_negatives"):
        TrainConfig(num_negatives=0)


def test_a_run_refuses_features_that_changed_since_training(movielens, tmp_path):
    rng = np.random.default_rng(0)

    def with_text(values):
        return movielens.with_features(ModalityFeatures("text", values.astype(np.float32),
                                                        np.ones(movielens.num_items, bool), {"model": "random"}))

    with_text(rng.normal(size=(movielens.num_items, 8))).save(tmp_path / "ds")
    run = train(tmp_path / "ds", ModelConfig("vbpr", dim=8), TrainConfig(epochs=1, **FAST), out=tmp_path / "r",
                log=lambda _: None)
    assert load_run(tmp_path / "r").evaluate("test", ks=(20,))["recall@20"] == pytest.approx(
        run.metrics["test"]["recall@20"], abs=1e-6)
    with_text(rng.normal(size=(movielens.num_items, 8))).save(tmp_path / "ds", overwrite=True)
    with pytest.raises(GraphrecError, match="'text' features, which holds different values"):
        load_run(tmp_path / "r")
    with_text(rng.normal(size=(movielens.num_items, 4))).save(tmp_path / "ds", overwrite=True)
    with pytest.raises(GraphrecError, match="is now 4-d, not 8-d"):
        load_run(tmp_path / "r")


def test_run_embeddings_are_detached_copies(movielens):
    run = train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=1, **FAST), log=lambda _: None)
    users, items = run.embeddings()
    assert not users.requires_grad and not items.requires_grad
    users += 1.0
    assert not torch.equal(run.embeddings()[0], users)


def test_resume_refuses_a_changed_training_recipe(movielens, tmp_path):
    config = TrainConfig(epochs=1, **FAST)
    train(movielens, ModelConfig("mf", dim=8), config, out=tmp_path / "r", log=lambda _: None)
    with pytest.raises(GraphrecError, match=r"lr was 0\.005, now 0\.01"):
        train(movielens, ModelConfig("mf", dim=8), dataclasses.replace(config, epochs=2, lr=0.01),
              out=tmp_path / "r", resume=True, log=lambda _: None)
    resumed = train(movielens, ModelConfig("mf", dim=8), dataclasses.replace(config, epochs=2), out=tmp_path / "r",
                    resume=True, log=lambda _: None)
    assert len(resumed.metrics["epochs"]) == 2


def test_chosen_entity_columns_must_exist(movielens):
    with pytest.raises(GraphrecError, match=r"entities \['genre'\] are not item columns"):
        build_model(ModelConfig("gat", dim=8, layers=1, entities=("genre",)), movielens)


def test_cold_metrics_leave_out_cut_offs_that_hold_every_cold_item(movielens):
    from graphrec.evaluation import cold_items

    inter = movielens.interactions.copy()
    rows = (inter["item"] < 3).to_numpy() & (inter["split"] == "train").to_numpy()
    inter.loc[rows, "split"] = "test"
    few_cold = dataclasses.replace(movielens, interactions=inter)
    count = len(cold_items(few_cold))
    assert 20 < count <= 50
    run = train(few_cold, ModelConfig("mf", dim=8), TrainConfig(epochs=1, **{**FAST, "eval_ks": (10, 20, 50)}),
                log=lambda _: None)
    reported = {int(key.split("@")[1]) for key in run.metrics["test_cold"] if "@" in key}
    assert reported == {10, 20}
    assert any("test_cold leaves out the cut-offs" in note for note in run.metrics["notes"])


def test_a_run_trained_on_cuda_loads_on_a_machine_without_one(movielens, tmp_path):
    """run.json records the device it was trained with; loading, evaluating and recommending only
    read the weights, so a run whose run.json says cuda works on a CPU-only machine. Resuming it
    there is refused with a clear error naming the device."""
    from graphrec.serving import recommend

    run = train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=1, **FAST), out=tmp_path / "r",
                log=lambda _: None)
    spec_path = tmp_path / "r" / "run.json"
    spec = json.loads(spec_path.read_text())
    spec["train"]["device"] = "cuda"
    spec_path.write_text(json.dumps(spec))
    loaded = load_run(tmp_path / "r")
    assert loaded.train_config.device == "cuda"
    assert loaded.evaluate("test") == pytest.approx(run.metrics["test"])
    assert recommend(loaded, [str(movielens.users["user_id"].iloc[0])], k=5)[0].items
    if not torch.cuda.is_available():
        with pytest.raises(GraphrecError, match="device: 'cuda': this machine has no CUDA GPU"):
            train(movielens, ModelConfig("mf", dim=8), dataclasses.replace(loaded.train_config, epochs=2),
                  out=tmp_path / "r", resume=True, log=lambda _: None)


def test_a_run_written_before_model_options_loads(movielens, tmp_path):
    """Runs from before the registry stored every model's options side by side in run.json."""
    run = train(movielens, ModelConfig("lightgcn", dim=8, layers=2), TrainConfig(epochs=1, **FAST),
                out=tmp_path / "r", log=lambda _: None)
    spec_path = tmp_path / "r" / "run.json"
    spec = json.loads(spec_path.read_text())
    spec["model"] = {"name": "lightgcn", "dim": 8, "layers": 2, "heads": 1, "dropout": 0.0,
                     "fusion": "attention", "entities": ["genres", "categories", "brand"], "modalities": None}
    spec_path.write_text(json.dumps(spec))
    loaded = load_run(tmp_path / "r")
    assert loaded.model_config == ModelConfig("lightgcn", dim=8, layers=2)
    for a, b in zip(run.embeddings(), loaded.embeddings(), strict=True):
        assert torch.equal(a, b)
    resumed = train(movielens, ModelConfig("lightgcn", dim=8, layers=2), TrainConfig(epochs=2, **FAST),
                    out=tmp_path / "r", resume=True, log=lambda _: None)
    assert len(resumed.metrics["epochs"]) == 2

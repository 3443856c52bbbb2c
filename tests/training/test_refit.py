"""The refit protocol and selection on validation: what each reads, and what the run records."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset
from graphrec.data.holdout import merge_validation_into_training
from graphrec.evaluation import EvalConfig
from graphrec.models import ModelOptions, Popularity
from graphrec.training.run import ModelConfig, TrainConfig, load_run, train
from graphrec.training.selection import select_on_validation

FAST = dict(batch_size=4096, lr=5e-3, progress=False, eval_ks=(10, 20), deterministic=True)


@pytest.fixture(scope="module")
def movielens(shared_data, tmp_path_factory):
    return convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("d") / "ml",
                   ConvertConfig(min_rating=3, split="random", seed=3)).dataset


def scrambled_test(dataset: Dataset, seed: int = 0) -> Dataset:
    """The same train and valid interactions, with the test interactions moved to random items."""
    inter = dataset.interactions.copy()
    test = (inter["split"] == "test").to_numpy()
    inter.loc[test, "item"] = np.random.default_rng(seed).integers(0, dataset.num_items, int(test.sum())).astype(
        inter["item"].dtype)
    return dataclasses.replace(dataset, interactions=inter)


def test_merging_moves_validation_into_training_and_leaves_test_alone(movielens):
    merged = merge_validation_into_training(movielens)
    before, after = movielens.split_counts(), merged.split_counts()
    assert after == {"train": before["train"] + before["valid"], "valid": 0, "test": before["test"]}
    assert (merged.csr("train") != movielens.csr(["train", "valid"])).nnz == 0
    assert (merged.csr("test") != movielens.csr("test")).nnz == 0


def test_refit_trains_the_selected_schedule_on_train_and_valid_only(movielens, tmp_path):
    config = TrainConfig(epochs=4, lr_decay_patience=1, patience=10, refit=True, **FAST)
    run = train(movielens, ModelConfig("lightgcn", dim=8, layers=1), config, out=tmp_path / "r", log=lambda _: None)
    metrics = run.metrics
    assert metrics["protocol"] == "refit on train + valid"
    counts = movielens.split_counts()
    assert metrics["refit"]["train_interactions"] == counts["train"] + counts["valid"]
    assert len(metrics["refit"]["epochs"]) == metrics["best_epoch"]
    # the refit repeats the selected run's learning-rate decays up to its best epoch
    decays = [int(note.rsplit(" ", 1)[1]) for note in metrics["notes"] if note.startswith("learning rate decayed")]
    assert metrics["refit"]["lr_decay_epochs"] == [epoch for epoch in decays if epoch <= metrics["best_epoch"]]
    assert metrics["test"] != metrics["test_without_refit"]
    # The test split is never read while training or refitting: scrambling it changes no weight.
    other = train(scrambled_test(movielens), ModelConfig("lightgcn", dim=8, layers=1), config, log=lambda _: None)
    for (name, left), (_, right) in zip(run.model.state_dict().items(), other.model.state_dict().items(), strict=True):
        assert torch.equal(left, right), name
    # The saved model is the refit one, and it reloads on the merged dataset.
    loaded = load_run(tmp_path / "r")
    assert loaded.refit and loaded.evaluate("test") == pytest.approx(metrics["test"])
    with pytest.raises(Exception, match="refit on train \\+ valid"):
        loaded.evaluate("valid")


def test_without_refit_the_protocol_is_recorded(movielens):
    run = train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=1, **FAST), log=lambda _: None)
    assert run.metrics["protocol"] == "selected on validation" and "refit" not in run.metrics


@dataclasses.dataclass(frozen=True)
class BlendOptions(ModelOptions):
    weight: float | None = dataclasses.field(default=None, metadata={"help": "popularity weight",
                                                                     "grid": (0.0, 0.5, 1.0)})


class PopularityBlend(Popularity):
    """Popularity blended with a fixed random score: a closed-form model with one searched option."""

    name = "blend"
    Options = BlendOptions
    selects_on_validation = True
    has_embeddings = False

    def __init__(self, num_users: int, num_items: int, train_items, seed: int = 0) -> None:
        super().__init__(num_users, num_items, train_items, seed=seed)
        self.noise = torch.rand(num_users, num_items, generator=torch.Generator().manual_seed(seed))
        self.weight: float | None = None

    def _scores(self, users: torch.Tensor, weight: float) -> torch.Tensor:
        popularity = self.item_score.squeeze(1) / self.num_items
        return weight * popularity.expand(len(users), -1) + (1 - weight) * self.noise[users]

    def setting_scorer(self, settings):
        return lambda users: [self._scores(users, setting["weight"]) for setting in settings]

    def select(self, setting):
        self.weight = setting.get("weight", self.weight)

    def scorer(self):
        return lambda users: self._scores(users, self.weight)


def test_selection_reads_validation_only_and_picks_the_best_setting(movielens):
    _, items = movielens.pairs("train")
    config = EvalConfig(ks=(20,), beyond_accuracy=False, full_mrr=False)
    chosen = []
    for dataset in (movielens, scrambled_test(movielens, 1), scrambled_test(movielens, 2)):
        model = PopularityBlend(dataset.num_users, dataset.num_items, torch.from_numpy(items))
        selection = select_on_validation(model, dataset, BlendOptions(), config, "recall@20", torch.device("cpu"),
                                         log=lambda _: None)
        chosen.append((selection.chosen, [row["recall@20"] for row in selection.table]))
        assert model.weight == selection.chosen["weight"]
    assert chosen[0] == chosen[1] == chosen[2]  # the test split does not move the choice
    assert chosen[0][0] == {"weight": 1.0}  # popularity beats noise on MovieLens
    values = chosen[0][1]
    assert values[2] == max(values) and values[0] < values[2]
    # nothing searched: the model keeps its options and nothing is scored
    fixed = PopularityBlend(movielens.num_users, movielens.num_items, torch.from_numpy(items))
    fixed.weight = 0.5
    assert select_on_validation(fixed, movielens, BlendOptions(weight=0.5), config, "recall@20",
                                torch.device("cpu"), log=lambda _: None).chosen == {}
    assert fixed.weight == 0.5


def test_options_enumerate_their_search_grid():
    assert BlendOptions().settings() == [{"weight": 0.0}, {"weight": 0.5}, {"weight": 1.0}]
    assert BlendOptions(weight=0.3).settings() == [{}]
    assert BlendOptions().searched() == {"weight": (0.0, 0.5, 1.0)}


def test_a_closed_form_model_refits_on_train_and_valid(movielens, tmp_path):
    """Popularity counts the validation interactions too once refit: its test ranking changes."""
    run = train(movielens, ModelConfig("pop"), TrainConfig(epochs=1, refit=True, **FAST), out=tmp_path / "p",
                log=lambda _: None)
    assert json.loads((tmp_path / "p" / "run.json").read_text())["train"]["refit"] is True
    counts = torch.bincount(torch.from_numpy(merge_validation_into_training(movielens).pairs("train")[1]),
                            minlength=movielens.num_items)
    assert torch.argsort(run.model.item_score.squeeze(1))[-1] == int(counts.argmax())
    assert run.metrics["test"] != run.metrics["test_without_refit"]
    assert load_run(tmp_path / "p").dataset.split_counts()["valid"] == 0

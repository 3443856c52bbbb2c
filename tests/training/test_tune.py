"""``graphrec tune``: search spaces from the option dataclasses, and real Optuna studies in SQLite that
survive SIGKILL and take two processes at once."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import optuna
import pytest
import yaml

from graphrec.data.convert import convert
from graphrec.errors import DataFormatError, GraphrecError
from graphrec.models import MODELS, ModelConfig
from graphrec.training.config import TrainConfig
from graphrec.training.recipes import Recipe, load_recipe
from graphrec.training.tune import TRAIN_SPACE, TuneConfig, search_space, trial_recipe, tune, validation_score

QUIET = dict(log=lambda _: None)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    convert("synthetic", "-", root / "syn", reader_options={"users": 150, "items": 100})
    return root / "syn"


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_has_a_documented_space_whose_corners_are_valid_options(name):
    model = MODELS[name]
    space = search_space(name)
    if not dataclasses.fields(model.Options) and not model.trained_by_gradient:
        assert space == {}, "a model with no options and no training has nothing to search"
        return
    assert space, f"{name} declares no search space"
    if model.trained_by_gradient:
        assert {"lr", "reg"} <= set(space)
    for dimension in space.values():
        corners = dimension.choices if dimension.choices is not None else (dimension.low, dimension.high)
        for value in corners:
            if dimension.section == "model":
                ModelConfig(name, {dimension.name: value})  # raises ConfigError when out of range
            else:
                TrainConfig(**{dimension.name: value})


def test_space_file_narrows_widens_fixes_and_drops(tmp_path):
    space = search_space("lightgcn", {"lr": {"low": 5e-4, "high": 5e-3, "log": True}, "layers": [2, 3],
                                      "dim": 16, "reg": None, "num_negatives": {"low": 1, "high": 4}})
    assert space["lr"].low == 5e-4 and space["lr"].high == 5e-3 and space["lr"].log
    assert space["layers"].choices == (2, 3) and space["dim"].choices == (16,)
    assert "reg" not in space and space["num_negatives"].kind is int and space["num_negatives"].section == "train"
    assert search_space("gfcf")["alpha"].choices == MODELS["gfcf"].Options.__dataclass_fields__["alpha"].metadata[
        "grid"], "options the model selects on validation are searched over their grid"
    path = tmp_path / "space.yaml"
    with pytest.raises(DataFormatError, match=r"space.yaml, field 'layer': .*did you mean 'layers'"):
        search_space("lightgcn", {"layer": [1, 2]}, path=path)
    with pytest.raises(DataFormatError, match="low <= high"):
        search_space("lightgcn", {"lr": {"low": 1e-2, "high": 1e-3}}, path=path)
    with pytest.raises(DataFormatError, match="unknown keys"):
        search_space("lightgcn", {"lr": {"min": 1e-3, "max": 1e-2}}, path=path)


def test_trials_train_on_validation_only_and_the_trial_recipe_is_what_trains(synthetic):
    from graphrec.data.dataset import load_dataset

    dataset = load_dataset(synthetic)
    base = Recipe(model=ModelConfig("lightgcn", dim=8, layers=1), train=TrainConfig(epochs=2, progress=False))
    space = search_space("lightgcn")
    recipe = trial_recipe(base, {"dim": 32, "layers": 2, "lr": 0.005, "reg": 1e-5}, space)
    assert recipe.model.options.dim == 32 and recipe.train.lr == 0.005 and recipe.train.epochs == 2
    reports = []
    value = validation_score(dataset, recipe, [reports.append])
    assert [r.epoch for r in reports] == [1, 2] and all(r.valid is not None for r in reports)
    assert value == max(r.valid["recall@20"] for r in reports)
    # the same score without the test split: trials never read it
    without_test = dataclasses.replace(dataset, interactions=dataset.interactions[
        dataset.interactions["split"] != "test"].reset_index(drop=True))
    assert validation_score(without_test, recipe, []) == pytest.approx(value, abs=1e-6)


def test_a_trial_below_the_median_curve_is_pruned_during_training(synthetic):
    from graphrec.data.dataset import load_dataset
    from graphrec.training.trainer import EpochReport
    from graphrec.training.tune import pruning_observer

    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    observe = pruning_observer(good, "recall@20")
    for epoch in (1, 2, 3):
        observe(EpochReport(epoch=epoch, loss=0.5, lr=1e-3, seconds=0.1, valid={"recall@20": 0.9}))
        observe(EpochReport(epoch=epoch, loss=0.5, lr=1e-3, seconds=0.1))  # unevaluated epochs are not reported
    study.tell(good, 0.9)
    assert good.storage.get_trial(good._trial_id).intermediate_values == {1: 0.9, 2: 0.9, 3: 0.9}
    # a real training run whose validation curve lies below the first trial's is stopped at its first evaluation
    bad = study.ask()
    base = Recipe(model=ModelConfig("mf", dim=8), train=TrainConfig(epochs=5, progress=False))
    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        validation_score(load_dataset(synthetic), base, [pruning_observer(bad, "recall@20")])
    study.tell(bad, state=optuna.trial.TrialState.PRUNED)
    assert list(study.trials[1].intermediate_values) == [1]


def test_a_model_with_nothing_to_search_is_a_clear_error(synthetic, tmp_path):
    base = Recipe(model=ModelConfig("pop"), train=TrainConfig(progress=False))
    with pytest.raises(GraphrecError, match="nothing to search"):
        tune(synthetic, base, search_space("pop"), tmp_path / "study", TuneConfig(trials=1), **QUIET)


def _tune_command(dataset, study_dir, trials):
    return [sys.executable, "-m", "graphrec", "tune", str(dataset), "--model", "lightgcn", "--trials", str(trials),
            "--epochs", "3", "--study-dir", str(study_dir), "--startup-trials", "2", "--heartbeat", "1"]


def _trials(study_dir):
    # tune creates the database's tables holding this lock: opening the storage outside it could
    # create them at the same moment, and one of the two would fail
    with open(study_dir / ".study.open.lock", "a") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'study.db'}")
    try:
        return optuna.load_study(study_name="graphrec", storage=storage).get_trials(deepcopy=False)
    except KeyError:  # the database exists, its study record not yet
        return []


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@pytest.mark.slow  # three tune processes, each importing torch and training trials: about 60 s on two busy cores
def test_sigkill_then_the_same_command_resumes_losing_at_most_the_running_trial(synthetic, tmp_path):
    study_dir = tmp_path / "study"
    command = _tune_command(synthetic, study_dir, trials=6)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, f"tune ended before it could be killed:\n{process.stderr.read()}"
        assert time.monotonic() < deadline, "tune did not finish two trials in time"
        trials = _trials(study_dir) if (study_dir / "study.db").exists() else []
        done = [t for t in trials if t.state in FINISHED]
        if len(done) >= 2 and any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
            break
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = {t.number: (t.state, t.value, t.params) for t in _trials(study_dir) if t.state in FINISHED}
    assert len(before) >= 2

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    trials = _trials(study_dir)
    after = {t.number: (t.state, t.value, t.params) for t in trials if t.state in FINISHED}
    assert all(after[number] == kept for number, kept in before.items()), "finished trials survive the kill"
    assert len(after) >= 6
    lost = [t for t in trials if t.state not in FINISHED]
    assert len(lost) <= 1, [(t.number, t.state) for t in lost]
    assert all(t.state == optuna.trial.TrialState.FAIL for t in lost), "the killed trial is marked failed"

    # the outputs: best recipe, trials table, plots, and the best trial tested once
    summary = json.loads((study_dir / "summary.json").read_text())
    best = max((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
    assert summary["best_trial"] == best.number and summary["params"] == best.params
    recipe = load_recipe(study_dir / "best.yaml")
    assert recipe.train.lr == pytest.approx(best.params["lr"]) and recipe.model.options.dim == best.params["dim"]
    metrics = json.loads((study_dir / "best" / "metrics.json").read_text())
    assert metrics["valid"]["recall@20"] == pytest.approx(best.value, abs=1e-6), "the tested run is the best trial"
    assert summary["test"] == metrics["test"]
    table = (study_dir / "trials.csv").read_text().splitlines()
    assert len(table) == 1 + len(trials) and table[0].startswith("number,")
    for plot in ("history.png", "importances.png"):
        assert (study_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert yaml.safe_load((study_dir / "best.yaml").read_text())["model"]["name"] == "lightgcn"


@pytest.mark.slow  # two tune processes at once: about 60 s on two busy cores
def test_two_processes_run_trials_of_one_study_in_parallel(synthetic, tmp_path):
    study_dir = tmp_path / "shared-study"
    command = _tune_command(synthetic, study_dir, trials=8)
    processes = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    trials = [t for t in _trials(study_dir) if t.state in FINISHED]
    assert len(trials) >= 8
    by_process: dict[int, list] = {}
    for trial in trials:
        by_process.setdefault(trial.user_attrs["pid"], []).append(trial)
    assert set(by_process) == {p.pid for p in processes}, "both processes ran trials"
    first, second = by_process.values()
    overlapping = any(a.datetime_start < b.datetime_complete + timedelta(0) and b.datetime_start < a.datetime_complete
                      for a in first for b in second)
    assert overlapping, "trials of the two processes ran at the same time"
    params = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(set(params)) == len(params), "the two workers proposed different values"
    assert TRAIN_SPACE["lr"]["low"] <= min(t.params["lr"] for t in trials)

"""Runs on a dataset with cold users: ``valid_cold_users`` / ``test_cold_users`` in metrics.json and the
printed table, selection on the warm validation metric, refit, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset
from graphrec.evaluation import cold_users
from graphrec.training.run import ModelConfig, TrainConfig, train
from tests._cli import assert_clean_error, graphrec

FAST = dict(batch_size=4096, lr=5e-3, progress=False, eval_ks=(10, 20), deterministic=True)


@pytest.fixture(scope="module")
def movielens(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return convert("movielens", shared_data / "ml-100k", tmp_path_factory.mktemp("d") / "ml",
                   ConvertConfig(cold_users=0.1, seed=3)).dataset


def test_metrics_hold_the_cold_user_blocks_and_selection_reads_the_warm_validation(movielens, tmp_path):
    lines: list[str] = []
    run = train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=3, **FAST), out=tmp_path / "r",
                log=lines.append)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["valid_cold_users"] == run.evaluate("valid", protocol="cold_users")
    assert metrics["test_cold_users"] == run.evaluate("test", protocol="cold_users")
    assert metrics["test"] == run.evaluate("test") != metrics["test_cold_users"]
    # The best epoch's validation record is the warm figure, not the cold users'.
    best = metrics["epochs"][metrics["best_epoch"] - 1]["valid"]
    assert best["recall@20"] == metrics["valid"]["recall@20"] != metrics["valid_cold_users"]["recall@20"]
    assert any("94 users have no training interactions (cold users)" in note and "not in the warm averages" in note
               and "selection read the warm validation metric" in note for note in metrics["notes"])
    assert any(line.startswith("test_cold_users recall@20=") for line in lines)


def test_refit_trains_without_the_cold_users_and_tests_them_cold(movielens, tmp_path):
    run = train(movielens, ModelConfig("mf", dim=8), TrainConfig(epochs=2, refit=True, **FAST), log=lambda _: None)
    assert run.refit and np.array_equal(cold_users(run.dataset), cold_users(movielens))
    users, _ = run.dataset.pairs("train")
    assert not np.isin(cold_users(movielens), users).any()
    assert run.metrics["test_cold_users"] == run.evaluate("test", protocol="cold_users")
    assert "valid_cold_users" in run.metrics


def test_a_dataset_without_cold_users_has_no_such_blocks(shared_data, tmp_path):
    dataset = convert("movielens", shared_data / "ml-100k", tmp_path / "w", ConvertConfig(seed=3)).dataset
    metrics = train(dataset, "pop", TrainConfig(**FAST), log=lambda _: None).metrics
    assert "test" in metrics and not any(key.endswith("_cold_users") for key in metrics)


@pytest.mark.slow  # four subprocesses, about 25 s on two busy cores
def test_the_cli_converts_trains_and_evaluates_cold_users(shared_data, tmp_path):
    data, out = tmp_path / "ml", tmp_path / "run"
    converted = graphrec("convert", "movielens", shared_data / "ml-100k", data, "--cold-users", "0.1", "--seed", "4",
                         check=True)
    assert "94 cold users (10% of the 943 users with a non-empty attribute) held out of training" in converted.stdout
    trained = graphrec("train", data, "--model", "pop", "--out", out, check=True)
    assert "valid_cold_users recall@20=" in trained.stdout and "test_cold_users recall@20=" in trained.stdout
    evaluated = graphrec("evaluate", out, "--protocol", "cold_users", "--json", check=True)
    reported = json.loads(evaluated.stdout)
    assert reported["protocol"] == "cold_users"
    assert reported["metrics"] == json.loads((out / "metrics.json").read_text())["test_cold_users"]
    assert_clean_error(graphrec("evaluate", out, "--protocol", "users"), 2,
                       "--protocol must be warm, cold or cold_users, got 'users'")

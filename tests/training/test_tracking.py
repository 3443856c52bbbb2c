"""Experiment tracking from the trainer's epoch reports: real TensorBoard event files, a real MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from graphrec.data.convert import convert
from graphrec.models import ModelConfig, build_model
from graphrec.training.config import TrainConfig
from graphrec.training.run import evaluate_model
from graphrec.training.trainer import EpochReport, fit

EPOCHS = 4


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    return convert("synthetic", "-", root / "syn", reader_options={"users": 120, "items": 80}).dataset


def test_fit_reports_every_epoch_to_its_observers_and_an_observer_may_stop_it(synthetic):
    from graphrec.evaluation import EvalConfig

    config = TrainConfig(epochs=EPOCHS, eval_every=2, progress=False, lr=0.01, lr_decay_patience=1, patience=50,
                         batch_size=512)
    eval_config = EvalConfig(ks=config.eval_ks, beyond_accuracy=False, full_mrr=False)

    def validate(model, dataset, split):
        return evaluate_model(model, dataset, split, eval_config)

    reports: list[EpochReport] = []
    result = fit(build_model(ModelConfig("mf", dim=8), synthetic), synthetic, config, validate,
                 log=lambda _: None, observers=[reports.append])
    assert [r.epoch for r in reports] == list(range(1, EPOCHS + 1))
    assert [r.valid is not None for r in reports] == [False, True, False, True]
    assert [r.loss for r in reports] == [record.loss for record in result.history]
    assert [r.seconds for r in reports] == [record.seconds for record in result.history]
    assert reports[0].lr == 0.01 and all(r.lr > 0 for r in reports)

    class Stop(Exception):
        pass

    def stop_after_two(report: EpochReport) -> None:
        if report.epoch == 2:
            raise Stop

    seen: list[int] = []
    with pytest.raises(Stop):
        fit(build_model(ModelConfig("mf", dim=8), synthetic), synthetic, config, validate, log=lambda _: None,
            observers=[lambda report: seen.append(report.epoch), stop_after_two])
    assert seen == [1, 2]


def test_tensorboard_event_files_hold_loss_lr_epoch_time_and_validation_metrics(synthetic, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs, out = tmp_path / "tb", tmp_path / "run"
    completed = subprocess.run([sys.executable, "-m", "graphrec", "train", synthetic.path, "--model", "mf", "--dim",
                                "8", "--epochs", str(EPOCHS), "--no-progress", "--out", out, "--tensorboard", logs],
                               capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    events = EventAccumulator(str(logs))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/epoch_seconds", "valid/recall@20", "valid/ndcg@20",
            "final/test/recall@20"} <= tags
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, EPOCHS + 1))
    assert [e.value for e in loss] == pytest.approx([epoch["loss"] for epoch in metrics["epochs"]], rel=1e-6)
    assert [e.value for e in events.Scalars("valid/recall@20")] == pytest.approx(
        [epoch["valid"]["recall@20"] for epoch in metrics["epochs"]], rel=1e-6)
    assert events.Scalars("final/test/recall@20")[0].value == pytest.approx(metrics["test"]["recall@20"], rel=1e-6)


def test_mlflow_run_in_a_local_store_holds_params_curves_final_metrics_and_metrics_json(synthetic, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    completed = subprocess.run([sys.executable, "-m", "graphrec", "train", synthetic.path, "--model", "mf", "--dim",
                                "8", "--epochs", str(EPOCHS), "--no-progress", "--out", out, "--mlflow", uri],
                               capture_output=True, text=True, cwd=elsewhere)
    assert completed.returncode == 0, completed.stderr
    assert list(elsewhere.iterdir()) == [], "nothing is written where the command runs (MLflow's ./mlruns)"
    assert (tmp_path / "mlflow-artifacts").is_dir()
    metrics = json.loads((out / "metrics.json").read_text())
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("graphrec")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["model.name"] == "mf" and run.data.params["model.options.dim"] == "8"
    assert run.data.params["train.epochs"] == str(EPOCHS)
    curve = client.get_metric_history(run.info.run_id, "valid_recall_at_20")
    assert [m.step for m in sorted(curve, key=lambda m: m.step)] == list(range(1, EPOCHS + 1))
    assert run.data.metrics["final_test_recall_at_20"] == pytest.approx(metrics["test"]["recall@20"], rel=1e-6)
    assert "metrics.json" in [artifact.path for artifact in client.list_artifacts(run.info.run_id)]


def test_a_tracking_store_that_cannot_be_used_is_a_clear_error(synthetic, tmp_path):
    completed = subprocess.run([sys.executable, "-m", "graphrec", "train", synthetic.path, "--model", "pop",
                                "--out", tmp_path / "run", "--mlflow", "nosuchscheme://x"],
                               capture_output=True, text=True, cwd=tmp_path)
    assert completed.returncode == 2 and "error: --mlflow nosuchscheme://x:" in completed.stderr, completed.stderr
    assert "Traceback" not in completed.stderr

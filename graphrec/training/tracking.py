"""Experiment tracking: TensorBoard event files and MLflow runs, fed by the trainer's epoch reports.

Both are observers of :func:`~graphrec.training.trainer.fit` (:class:`~graphrec.training.trainer.EpochReport`):
each epoch's loss, learning rate and wall time, and the validation metrics when it was evaluated,
one step per epoch. When training ends they also record the run's final metrics. ``RUN/metrics.json``
stays the source of truth; these are views of it for the tools practitioners already use.

* TensorBoard: :class:`torch.utils.tensorboard.SummaryWriter` (needs the ``tensorboard`` package,
  the ``track`` extra). Tags: ``train/loss``, ``train/lr``, ``train/epoch_seconds``,
  ``valid/METRIC@K``, and ``final/SPLIT/METRIC@K``.
* MLflow: :class:`mlflow.MlflowClient` on a tracking URI (a local SQLite store such as
  ``sqlite:///mlflow.db``, which MLflow now recommends over its ``file:`` store, another database, or a
  server); one MLflow run per training run, with the model and training options as parameters,
  curves ``train_loss``, ``train_lr``, ``train_epoch_seconds``, ``valid_METRIC_at_K`` per epoch,
  ``final_SPLIT_METRIC_at_K`` once, and ``metrics.json`` as an artifact. MLflow's metric names
  cannot hold ``@``, so ``recall@20`` is logged as ``recall_at_20``. The client is used rather than
  ``mlflow.start_run`` so that nothing is kept in MLflow's process-global active run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrec.errors import GraphrecError
from graphrec.training.trainer import EpochReport, Observer

#: The splits of ``metrics.json`` recorded as final metrics.
FINAL_SPLITS = ("valid", "test", "test_cold")


@dataclass(frozen=True)
class TrackingConfig:
    """Where to track a training run: a TensorBoard log directory, an MLflow tracking URI, or neither."""

    tensorboard: str | None = None
    mlflow: str | None = None
    #: The MLflow experiment that runs are filed under.
    mlflow_experiment: str = "graphrec"

    @property
    def enabled(self) -> bool:
        return self.tensorboard is not None or self.mlflow is not None


class TensorBoardTracker:
    """Writes each epoch report as TensorBoard scalars (step = epoch)."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise GraphrecError("--tensorboard needs the tensorboard package: pip install 'graphrec[track]'") from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, report: EpochReport) -> None:
        self.writer.add_scalar("train/loss", report.loss, report.epoch)
        self.writer.add_scalar("train/lr", report.lr, report.epoch)
        self.writer.add_scalar("train/epoch_seconds", report.seconds, report.epoch)
        for name, value in (report.valid or {}).items():
            self.writer.add_scalar(f"valid/{name}", value, report.epoch)
        self.writer.flush()

    def finish(self, metrics: Mapping[str, Any], run_dir: Path | None, failed: bool = False) -> None:
        step = int(metrics.get("best_epoch", 0) or 0)
        for split in FINAL_SPLITS:
            for name, value in (metrics.get(split) or {}).items():
                self.writer.add_scalar(f"final/{split}/{name}", value, step)
        self.writer.close()


class MLflowTracker:
    """One MLflow run per training run, through :class:`mlflow.MlflowClient`."""

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, params: Mapping[str, Any]) -> None:
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise GraphrecError("--mlflow needs the mlflow package: pip install 'graphrec[track]'") from None
        try:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else self.client.create_experiment(
                experiment, artifact_location=_local_artifacts(tracking_uri))
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        except Exception as error:  # mlflow.exceptions.MlflowException and the store's own errors
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise GraphrecError(f"--mlflow {tracking_uri}: {first_line}") from None
        for key, value in flatten(params).items():
            self.client.log_param(self.run_id, key, value)

    def __call__(self, report: EpochReport) -> None:
        values = {"train_loss": report.loss, "train_lr": report.lr, "train_epoch_seconds": report.seconds}
        values.update({f"valid_{mlflow_name(name)}": value for name, value in (report.valid or {}).items()})
        for key, value in values.items():
            self.client.log_metric(self.run_id, key, value, step=report.epoch)

    def finish(self, metrics: Mapping[str, Any], run_dir: Path | None, failed: bool = False) -> None:
        for split in FINAL_SPLITS:
            for name, value in (metrics.get(split) or {}).items():
                self.client.log_metric(self.run_id, f"final_{split}_{mlflow_name(name)}", value)
        if run_dir is not None and (run_dir / "metrics.json").is_file():
            self.client.log_artifact(self.run_id, str(run_dir / "metrics.json"))
        self.client.set_terminated(self.run_id, status="FAILED" if failed else "FINISHED")


Tracker = TensorBoardTracker | MLflowTracker


@contextlib.contextmanager
def tracked(config: TrackingConfig, run_name: str, params: Mapping[str, Any]) -> Iterator[Trackers]:
    """The trackers ``config`` asks for, as observers; they are closed when the block ends (an MLflow
    run that raised is marked failed)."""
    trackers: list[Tracker] = []
    if config.tensorboard is not None:
        trackers.append(TensorBoardTracker(config.tensorboard))
    if config.mlflow is not None:
        trackers.append(MLflowTracker(config.mlflow, config.mlflow_experiment, run_name, params))
    group = Trackers(trackers)
    try:
        yield group
    except BaseException:
        group.finish({}, None, failed=True)
        raise
    if not group.finished:
        group.finish({}, None)


class Trackers:
    """Several trackers behind one observer list and one ``finish``."""

    def __init__(self, trackers: list[Tracker]) -> None:
        self.trackers = trackers
        self.finished = False

    @property
    def observers(self) -> list[Observer]:
        return list(self.trackers)

    def finish(self, metrics: Mapping[str, Any], run_dir: Path | None, failed: bool = False) -> None:
        if self.finished:
            return
        self.finished = True
        for tracker in self.trackers:
            tracker.finish(metrics, run_dir, failed=failed)


def _local_artifacts(tracking_uri: str) -> str | None:
    """For a SQLite store, artifacts beside its database file: MLflow's default is ``./mlruns`` in
    whatever directory the command runs from."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    database = Path(tracking_uri[len(prefix):])
    return (database.parent.resolve() / f"{database.stem}-artifacts").as_uri()


def mlflow_name(metric: str) -> str:
    """``recall@20`` as MLflow accepts it: ``recall_at_20``."""
    return metric.replace("@", "_at_")


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested options as ``model.dim``-style keys, for MLflow parameters."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, prefix=f"{name}."))
        else:
            out[name] = value
    return out


__all__ = ["MLflowTracker", "TensorBoardTracker", "Trackers", "TrackingConfig", "flatten", "mlflow_name", "tracked"]

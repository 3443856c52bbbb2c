"""Train, evaluate and reload a model on a dataset: the API behind ``graphrec train`` and ``graphrec evaluate``.

A run directory holds everything needed to use the model again::

    RUN/run.json       model and training configuration, dataset path, graphrec version
    RUN/model.pt       the best validation weights (loads with ``weights_only=True``)
    RUN/last.pt        the resumable checkpoint (model, optimiser, random states, history)
    RUN/metrics.json   valid / test (and test_cold, valid_cold_users, test_cold_users) metrics, and one
                       record per epoch
    RUN/curves.png     training curves (with ``plot=True``)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graphrec.data.dataset import Dataset, load_dataset
from graphrec.data.holdout import ensure_validation_split, holds_out_cold_users, merge_validation_into_training
from graphrec.data.storage import (
    OUTPUT_MARKERS,
    check_not_input,
    check_replaceable,
    directory_lock,
    write_json,
)
from graphrec.device import resolve_device
from graphrec.errors import DataFormatError, DatasetExistsError, GraphrecError, Interrupted, RunFailedError
from graphrec.evaluation import EvalConfig, cold_items, cold_users, evaluate_splits
from graphrec.models import MODELS, ModelConfig, Recommender, build_model
from graphrec.training.checkpoint import load_tensors, save_tensors
from graphrec.training.config import TrainConfig
from graphrec.training.distributed import finish as finish_distributed
from graphrec.training.plots import plot_training_curves
from graphrec.training.selection import Selection, select_on_validation
from graphrec.training.trainer import Observer, TrainResult, check_trainable, fit, refit


@dataclass
class Run:
    """A trained model together with its dataset and configuration."""

    model: Recommender
    dataset: Dataset
    model_config: ModelConfig
    train_config: TrainConfig
    path: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: The model was refit on train + valid (the refit protocol): its dataset has no validation split left.
    refit: bool = False

    @torch.no_grad()
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user and item embeddings, on the CPU wherever the model trained.

        Serving, export and ANN indexes work on the host, and a run loaded from disk lives
        there too, so a run gives the same kind of tensors whether it was just trained on a
        GPU or loaded.
        """
        if not self.model.has_embeddings:
            raise GraphrecError(f"model {self.model_config.name!r} has no user and item embeddings (it scores "
                                f"users directly), so there is nothing to export or index; recommend and "
                                f"evaluate work as for any model")
        self.model.eval()
        user_emb, item_emb = self.model.embed()
        # detached copies: a model whose embed() returns its own weights (MF) must not hand them out
        return user_emb.detach().to("cpu", copy=True), item_emb.detach().to("cpu", copy=True)

    def evaluate(self, split: str = "test", protocol: str = "warm", ks: tuple[int, ...] | None = None,
                 beyond_accuracy: bool = True) -> dict[str, float]:
        return self.evaluate_splits([split], protocol, ks, beyond_accuracy)[0]

    def evaluate_splits(self, splits: Sequence[str], protocol: str = "warm", ks: tuple[int, ...] | None = None,
                        beyond_accuracy: bool = True) -> list[dict[str, float]]:
        """:meth:`evaluate` of each of ``splits``, scoring the users once for all of them."""
        if "valid" in splits and self.refit:
            raise GraphrecError("this run was refit on train + valid, so its model has seen the validation split; "
                                "the validation metrics of the selected model are in its metrics.json")
        return evaluate_model_splits(self.model, self.dataset, splits, EvalConfig(
            ks=ks or self.train_config.eval_ks, batch_size=self.train_config.eval_batch_size, protocol=protocol,
            beyond_accuracy=beyond_accuracy))


@torch.no_grad()
def evaluate_model(model: Recommender, dataset: Dataset, split: str, config: EvalConfig) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``split`` (train items masked; valid too when testing)."""
    return evaluate_model_splits(model, dataset, [split], config)[0]


@torch.no_grad()
def evaluate_model_splits(model: Recommender, dataset: Dataset, splits: Sequence[str],
                          config: EvalConfig) -> list[dict[str, float]]:
    """:func:`evaluate_model` of each of ``splits``, in one scoring pass over the users."""
    model.eval()
    features = _item_features_for_diversity(dataset)
    if not model.has_embeddings:
        results = evaluate_splits(model.scorer(), dataset, splits, config, item_features=features,
                                  device=_model_device(model))
    else:
        # Layer-wise inference gives the same embeddings in bounded memory.
        user_emb, item_emb = model.embed_layerwise()
        items_t = item_emb.t()
        results = evaluate_splits(lambda users: user_emb[users] @ items_t, dataset, splits, config,
                                  item_features=features, device=user_emb.device, owns_scores=True)
    return [result.metrics for result in results]


def _model_device(model: Recommender) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def train(dataset: Dataset | str | Path, model: ModelConfig | str = "lightgcn",
          config: TrainConfig = TrainConfig(), out: str | Path | None = None, resume: bool = False,
          overwrite: bool = False, log: Callable[[str], None] = print, observers: Sequence[Observer] = ()) -> Run:
    """Train a model on a dataset, pick the best validation epoch, and test it.

    With ``out``, the run directory is written (see the module docstring) and
    ``resume=True`` continues from ``out/last.pt`` to the identical result. An existing run in
    ``out`` is replaced only with ``overwrite=True``; ``out`` is locked against other writers while
    training, and its ``run.json`` says ``status`` ``running``, ``finished``, ``failed`` or
    ``interrupted`` (with the ``reason``). ``observers`` receive every epoch's report (see
    :func:`~graphrec.training.trainer.fit`).
    """
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    out_path = Path(out) if out is not None else None
    if out_path is None or int(os.environ.get("RANK", "0")) != 0:
        return _train(dataset, model, config, out_path, resume, log, observers)
    check_not_input(out_path, [dataset.path])
    with directory_lock(out_path):
        _check_run_directory(out_path, resume, overwrite, log)
        return _train(dataset, model, config, out_path, resume, log, observers)


def _check_run_directory(out: Path, resume: bool, overwrite: bool, log: Callable[[str], None]) -> None:
    """``out`` may be trained into: absent, empty, or a run that is resumed or overwritten."""
    if os.path.lexists(out) and not out.is_dir():
        raise GraphrecError(f"{out} exists and is not a directory; choose another run directory")
    if not out.is_dir() or not any(out.iterdir()):
        if resume:
            log(f"note: {out} holds no run to resume; training starts from scratch")
        return
    if not (out / "run.json").is_file():
        check_replaceable(out)  # another kind of graphrec directory may still not take a run's files
        raise GraphrecError(f"{out} is a {_kind_of(out)}, not a run directory; choose another run directory")
    if resume:
        if not (out / "last.pt").is_file():
            log(f"note: {out} has no last.pt to resume from; training starts from scratch")
        return
    if not overwrite:
        raise DatasetExistsError(f"{out} already holds a run; resume it, or pass --overwrite (overwrite=True) "
                                 f"to replace it")


def _kind_of(directory: Path) -> str:
    return next((kind for marker, kind in OUTPUT_MARKERS.items() if (directory / marker).is_file()), "directory")


def _train(dataset: Dataset, model: ModelConfig | str, config: TrainConfig, out_path: Path | None, resume: bool,
           log: Callable[[str], None], observers: Sequence[Observer] = ()) -> Run:
    model_config = ModelConfig(model) if isinstance(model, str) else model
    is_main = int(os.environ.get("RANK", "0")) == 0
    if not is_main:
        log = _silent
    # Carved before the model exists: a graph model's adjacency must not hold the validation edges.
    dataset, carve_note = ensure_validation_split(dataset, config.seed)
    if carve_note:
        log(f"note: {carve_note}")
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    recommender = build_model(model_config, dataset, seed=config.seed)
    build_seconds = time.perf_counter() - started
    if recommender.trained_by_gradient:
        check_trainable(recommender, dataset, config)  # before the run directory is made
    # _fit_and_test takes the model out of this list: holding it only there, it can free a closed-form
    # model before the refit builds the next one.
    built = [recommender]
    del recommender
    if out_path is None or not is_main:
        return _fit_and_test(dataset, model_config, config, built, build_seconds, carve_note, out_path,
                             resume, log, observers)
    try:
        out_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GraphrecError(f"cannot create the run directory {out_path}: {exc.strerror or exc}") from None
    _write_run_json(out_path, dataset, model_config, config, resume, carved=carve_note is not None)
    if not resume:
        _clear_previous_run(out_path, log)
    try:
        run = _fit_and_test(dataset, model_config, config, built, build_seconds, carve_note, out_path,
                            resume, log, observers)
    except Interrupted as exc:
        _set_status(out_path, "interrupted", str(exc))
        raise
    except KeyboardInterrupt:
        _set_status(out_path, "interrupted", "interrupted after training, while testing")
        raise Interrupted("interrupted after training, while testing", f"{out_path / 'last.pt'} holds the trained "
                          f"epochs", resumable=(out_path / "last.pt").is_file()) from None
    except BaseException as exc:
        _set_status(out_path, "failed", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise
    _set_status(out_path, "finished")
    return run


def _set_status(out: Path, status: str, reason: str | None = None) -> None:
    """Record in run.json how the run ended; a failure to record must not hide the error being raised."""
    with contextlib.suppress(OSError, ValueError):
        spec = json.loads((out / "run.json").read_text())
        spec["status"] = status
        spec.pop("reason", None)
        if reason is not None:
            spec["reason"] = reason
        write_json(out / "run.json", spec)


def _fit_and_test(dataset: Dataset, model_config: ModelConfig, config: TrainConfig, built: list[Recommender],
                  build_seconds: float, carve_note: str | None, out_path: Path | None, resume: bool,
                  log: Callable[[str], None], observers: Sequence[Observer] = ()) -> Run:
    recommender = built.pop()  # the only reference left (see _train)
    is_main = int(os.environ.get("RANK", "0")) == 0
    device = resolve_device(config.device)
    log(f"training {model_config.name} on {dataset.name!r} ({dataset.num_users:,} users, {dataset.num_items:,} "
        f"items, {dataset.split_counts()['train']:,} training interactions) on {device}, sampling {config.sampling}")
    eval_config = EvalConfig(ks=config.eval_ks, batch_size=config.eval_batch_size, beyond_accuracy=False,
                             full_mrr=False)

    def validate(model_: Recommender, dataset_: Dataset, split: str) -> dict[str, float]:
        return evaluate_model(model_, dataset_, split, eval_config)

    selection = None
    reference: dict[str, Any] | None = None
    if recommender.trained_by_gradient:
        result = fit(recommender, dataset, config, validate,
                     checkpoint_path=out_path / "last.pt" if out_path is not None else None,
                     resume=resume, log=log, observers=observers)
        selected = Run(model=result.model, dataset=result.dataset, model_config=model_config, train_config=config,
                       path=out_path)
        run, refitted = selected, None
        if config.refit:
            run, refitted = _refit(selected, result, log)
            if result.is_main:
                reference = _selected_metrics(selected)
    else:
        recommender.to(device)
        if recommender.selects_on_validation:
            selection = select_on_validation(recommender, dataset, model_config.options, eval_config,
                                             config.select_metric, device, log)
            model_config = ModelConfig(model_config.name, dataclasses.replace(model_config.options,
                                                                              **selection.chosen))
            if out_path is not None and is_main:
                _record_selected_options(out_path, model_config)
        run = Run(model=recommender, dataset=dataset, model_config=model_config, train_config=config, path=out_path)
        if config.refit:
            reference = _selected_metrics(run)
            # A closed-form solution can take gigabytes (GF-CF's on Gowalla): let the selected one go
            # before the refit builds its own, so that the two are never held at once.
            del recommender, run
            run = _refit_closed_form(dataset, model_config, config, out_path, log)
        # no validation pass here: metrics.json evaluates validation once, with the full metrics
        result = TrainResult(model=run.model, dataset=dataset,
                             stopped_reason="closed form" + (": options selected on validation" if selection else ""),
                             train_seconds=build_seconds + (selection.seconds if selection else 0.0))
        refitted = None
    if not result.is_main:
        finish_distributed()
        return run
    if carve_note:
        result.notes.insert(0, carve_note)
    if out_path is not None:
        save_tensors(run.model.state_dict(), out_path / "model.pt")
    run.metrics = _final_metrics(run, result, reference, refitted, selection)
    if out_path is not None:
        write_json(out_path / "metrics.json", run.metrics)
        if config.plot and result.history:
            plot_training_curves(result.history, out_path / "curves.png",
                                 title=f"{model_config.name} on {dataset.name}",
                                 metrics=tuple(dict.fromkeys([config.select_metric, "recall@20", "ndcg@20"])),
                                 best_epoch=result.best_epoch)
    _log_metrics(run.metrics, log)
    finish_distributed()
    return run


def _refit(selected: Run, result: TrainResult, log: Callable[[str], None]) -> tuple[Run, TrainResult]:
    """The refit protocol for a model trained by gradient descent: the selected configuration (the
    best epoch and its learning-rate schedule) trained again on train + valid. Returns the refit run
    and its training record."""
    merged = merge_validation_into_training(selected.dataset)
    config = selected.train_config
    model = build_model(selected.model_config, merged, seed=config.seed)
    log(f"refit on train + valid ({merged.split_counts()['train']:,} interactions) with the selected configuration")
    refitted = refit(model, merged, config, result.best_epoch, result.lr_decay_epochs, log=log)
    return Run(model=model, dataset=merged, model_config=selected.model_config, train_config=config,
               path=selected.path, refit=True), refitted


def _refit_closed_form(dataset: Dataset, model_config: ModelConfig, config: TrainConfig, path: Path | None,
                       log: Callable[[str], None]) -> Run:
    """The refit protocol for a closed-form model: solved again on train + valid with the options
    chosen on validation (``model_config``)."""
    merged = merge_validation_into_training(dataset)
    log(f"refit on train + valid ({merged.split_counts()['train']:,} interactions) with the selected configuration")
    model = build_model(model_config, merged, seed=config.seed)
    model.to(resolve_device(config.device))
    if model.selects_on_validation:
        model.select({})  # every option is fixed by now
    return Run(model=model, dataset=merged, model_config=model_config, train_config=config, path=path, refit=True)


def _selected_metrics(selected: Run) -> dict[str, Any]:
    """What the refit protocol reports of the model selected on validation: its validation metrics
    (the refit model has trained on that split) and, for reference, its test metrics."""
    if selected.dataset.split_counts()["test"]:
        valid, test = selected.evaluate_splits(["valid", "test"])
        metrics = {"valid": valid, "test_without_refit": test}
    else:
        metrics = {"valid": selected.evaluate("valid")}
    users = cold_users(selected.dataset)
    if len(users) and selected.dataset.csr("valid")[users].nnz:
        metrics["valid_cold_users"] = selected.evaluate("valid", protocol="cold_users")
    return metrics


def _final_metrics(run: Run, result: TrainResult, reference: dict[str, Any] | None = None,
                   refitted: TrainResult | None = None, selection: Selection | None = None) -> dict[str, Any]:
    """``metrics.json``. With the refit protocol, ``run`` is the refit model and ``reference`` holds
    what :func:`_selected_metrics` measured of the model chosen on validation: validation metrics
    are that model's (the refit one has trained on the validation split), test metrics the refit
    model's, beside the selected model's for reference."""
    has_test = run.dataset.split_counts()["test"] > 0
    if reference is not None:
        valid, test = reference["valid"], run.evaluate("test") if has_test else None
    elif has_test:
        valid, test = run.evaluate_splits(["valid", "test"])
    else:
        valid, test = run.evaluate("valid"), None
    metrics: dict[str, Any] = {
        "model": run.model_config.name,
        "dataset": run.dataset.name,
        "protocol": "refit on train + valid" if reference is not None else "selected on validation",
        "valid": valid,
    }
    if selection is not None:
        metrics["selection"] = selection.to_dict()
    if reference is not None:
        metrics["refit"] = {"train_interactions": run.dataset.split_counts()["train"],
                            "epochs": [record.to_dict() for record in refitted.history] if refitted else [],
                            "lr_decay_epochs": refitted.lr_decay_epochs if refitted else [],
                            "train_seconds": refitted.train_seconds if refitted else 0.0}
    if test is not None:
        metrics["test"] = test
        if reference is not None:
            metrics["test_without_refit"] = reference["test_without_refit"]
        cold = cold_items(run.dataset)
        if len(cold) and run.dataset.csr("test")[:, cold].nnz > 0:
            # Ranking N cold items among themselves, a list of K >= N finds every one: no information.
            ks = tuple(k for k in run.train_config.eval_ks if k < len(cold))
            if ks:
                metrics["test_cold"] = run.evaluate("test", protocol="cold", ks=ks)
            if len(ks) < len(run.train_config.eval_ks):
                result.notes.append(f"only {len(cold)} items have no training interaction: test_cold leaves out the "
                                    f"cut-offs of {len(cold)} or more, where every cold item is in the list")
    else:
        result.notes.append("the dataset has no test split: only validation metrics are reported")
    metrics.update(_cold_user_metrics(run, reference, result.notes))
    metrics.update({
        "best_epoch": result.best_epoch,
        "stopped_reason": result.stopped_reason,
        "train_seconds": result.train_seconds,
        "seconds_per_epoch": (result.train_seconds / len(result.history)) if result.history else 0.0,
        "sampling": result.sampling,
        "distributed": result.distributed,
        "epochs": [record.to_dict() for record in result.history],
        "notes": result.notes,
        "model_config": run.model_config.to_dict(),
        "train_config": asdict(run.train_config),
    })
    return metrics


def _cold_user_metrics(run: Run, reference: dict[str, Any] | None, notes: list[str]) -> dict[str, Any]:
    """``valid_cold_users`` and ``test_cold_users``: the users without training interactions, who
    are scored from their features alone (a model that cannot read them scores them as an
    untrained user). Selection and early stopping never read these. With the refit protocol,
    ``reference`` holds the selected model's ``valid_cold_users``, as it holds its ``valid``."""
    users = cold_users(run.dataset)
    if len(users) == 0:
        return {}
    blocks: dict[str, Any] = {}
    if reference is not None:
        if "valid_cold_users" in reference:
            blocks["valid_cold_users"] = reference["valid_cold_users"]
    elif run.dataset.csr("valid")[users].nnz:
        blocks["valid_cold_users"] = run.evaluate("valid", protocol="cold_users")
    if run.dataset.csr("test")[users].nnz:
        blocks["test_cold_users"] = run.evaluate("test", protocol="cold_users")
    notes.append(f"{len(users):,} users have no training interactions (cold users): they are measured apart "
                 f"(valid_cold_users, test_cold_users)" + (", not in the warm averages" if holds_out_cold_users(
                     run.dataset) else "") + "; early stopping and selection read the warm validation metric")
    return blocks


def load_run(path: str | Path, dataset: Dataset | None = None) -> Run:
    """Rebuild a trained model from its run directory (weights loaded with ``weights_only=True``)."""
    path = Path(path)
    spec_path = path / "run.json"
    if not spec_path.is_file():
        raise GraphrecError(f"{path} is not a graphrec run directory (run.json is missing)")
    try:
        spec = json.loads(spec_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"is not valid JSON ({exc})", path=spec_path) from None
    if spec.get("status") in ("failed", "interrupted"):
        raise RunFailedError(f"run {path} {spec['status']}: {spec.get('reason', 'no reason recorded')}; it holds "
                             f"no model to use" + ("; resume it or train it again" if spec["status"] == "interrupted"
                                                   else "; train it again"))
    try:
        model_config = ModelConfig.from_dict(spec["model"])
        train_config = TrainConfig(**_tuples(spec["train"]))
    except (KeyError, TypeError, GraphrecError) as error:
        raise GraphrecError(f"{spec_path} does not describe a run this graphrec can load: {error}") from None
    if dataset is None:
        dataset = load_dataset(spec["dataset"])
    if spec.get("carved_validation") and dataset.split_counts()["valid"] == 0:
        dataset, _ = ensure_validation_split(dataset, train_config.seed)
    if train_config.refit:
        dataset = merge_validation_into_training(dataset)
    model_config = _check_features(path, spec, model_config, dataset)
    model = build_model(model_config, dataset, seed=train_config.seed)
    weights = path / "model.pt"
    if not weights.is_file():
        raise GraphrecError(f"{weights} is missing: the run has not finished training")
    state = load_tensors(weights, "model file")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, AttributeError) as exc:
        raise DataFormatError(f"does not hold this run's {model_config.name} weights "
                              f"({str(exc).strip().splitlines()[0]})", path=weights) from None
    metrics_path = path / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    return Run(model=model, dataset=dataset, model_config=model_config, train_config=train_config, path=path,
               metrics=metrics, refit=train_config.refit)


def evaluate_run(path: str | Path, split: str = "test", protocol: str = "warm",
                 ks: tuple[int, ...] | None = None) -> dict[str, float]:
    """Metrics of a saved run on ``split``."""
    return load_run(path).evaluate(split, protocol=protocol, ks=ks)


#: What a run directory holds besides ``run.json``; a new run (not a resume) clears them first, so a
#: run that fails can never leave another run's weights or metrics beside its own ``run.json``.
RUN_FILES = ("model.pt", "last.pt", "metrics.json", "curves.png")


#: Training options a resume may change: how long and how it is watched, not what is trained.
RESUMABLE_CHANGES = ("epochs", "max_minutes", "patience", "progress", "plot", "device", "sample_on", "refit",
                     "eval_batch_size")


def _record_selected_options(out: Path, model_config: ModelConfig) -> None:
    """run.json records the options selection chose, so that loading the run rebuilds exactly that
    model (without selecting again); what was searched stays beside it."""
    spec = json.loads((out / "run.json").read_text())
    spec["searched_model"] = spec["model"]
    spec["model"] = model_config.to_dict()
    write_json(out / "run.json", spec)


def _clear_previous_run(out: Path, log: Callable[[str], None]) -> None:
    stale = [out / name for name in RUN_FILES if (out / name).exists()]
    if stale:
        log(f"replacing the previous run in {out} (removed {', '.join(p.name for p in stale)})")
        for path in stale:
            path.unlink()


def _write_run_json(out: Path, dataset: Dataset, model_config: ModelConfig, config: TrainConfig,
                    resume: bool, carved: bool) -> None:
    spec = {"status": "running", "model": model_config.to_dict(), "train": asdict(config),
            "dataset": str(Path(dataset.path).resolve()) if dataset.path else None,
            "carved_validation": carved, "features": _feature_fingerprints(model_config, dataset)}
    existing = out / "run.json"
    if resume and existing.is_file():
        previous = json.loads(existing.read_text())
        previous["model"] = previous.get("searched_model", previous["model"])
        with contextlib.suppress(KeyError, TypeError, GraphrecError):  # an unreadable model differs anyway
            previous["model"] = json.loads(json.dumps(ModelConfig.from_dict(previous["model"]).to_dict()))
        keys = ("model", "dataset")
        if any(previous.get(k) != json.loads(json.dumps(spec[k])) for k in keys):
            raise GraphrecError(f"cannot resume {out}: its model or dataset differs from this command's")
        before, now = previous.get("train", {}), json.loads(json.dumps(spec["train"]))
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and k in before and before[k] != now[k])
        if changed:
            differences = ", ".join(f"{k} was {before[k]!r}, now {now[k]!r}" for k in changed)
            raise GraphrecError(f"cannot resume {out}: {differences}; a resumed run continues the same training "
                                f"(only {', '.join(RESUMABLE_CHANGES)} may change)")
    write_json(existing, spec)


def _feature_fingerprints(model_config: ModelConfig, dataset: Dataset) -> dict[str, dict[str, Any]]:
    """Each modality a content model reads (dimension and a hash of the matrix and its mask): a
    model's projections only fit the features it was trained on."""
    return {name: {"dim": dataset.features[name].dim, "sha256": _feature_hash(dataset, name)}
            for name in model_config.modalities(dataset) if name in dataset.features}


def _feature_hash(dataset: Dataset, name: str) -> str:
    feature = dataset.features[name]
    digest = hashlib.sha256(np.ascontiguousarray(feature.values, dtype=np.float32).tobytes())
    digest.update(np.ascontiguousarray(feature.mask, dtype=bool).tobytes())
    return digest.hexdigest()


def _check_features(path: Path, spec: dict[str, Any], model_config: ModelConfig, dataset: Dataset) -> ModelConfig:
    """The run's model config with the modalities it was trained on, after checking that the
    dataset still holds exactly those features (``graphrec encode`` may have replaced them)."""
    trained = spec.get("features")
    if not model_config.model.reads_features or trained is None:
        return model_config
    for name, fingerprint in trained.items():
        if name not in dataset.features:
            problem = "is gone"
        elif dataset.features[name].dim != fingerprint["dim"]:
            problem = f"is now {dataset.features[name].dim}-d, not {fingerprint['dim']}-d"
        elif _feature_hash(dataset, name) != fingerprint["sha256"]:
            problem = "holds different values (re-encoded?)"
        else:
            continue
        raise GraphrecError(f"run {path} was trained on the dataset's {name!r} features, which {problem}: "
                            f"retrain the run, or restore those features")
    return ModelConfig(model_config.name, {**dataclasses.asdict(model_config.options), "modalities": tuple(trained)})


def _tuples(values: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def _item_features_for_diversity(dataset: Dataset) -> torch.Tensor | None:
    """Every modality, each row L2-normalised first: raw CNN features have norms in the tens and
    would otherwise drown the unit-length text embeddings in the cosine that ILD takes."""
    if not dataset.features:
        return None
    return torch.cat([torch.nn.functional.normalize(torch.from_numpy(f.values), dim=1)
                      for f in dataset.features.values()], dim=1)


def _silent(_: str) -> None:
    """Log sink of ranks other than 0."""


def _log_metrics(metrics: dict[str, Any], log: Callable[[str], None]) -> None:
    for split in ("valid", "test", "test_cold", "valid_cold_users", "test_cold_users"):
        if split in metrics:
            shown = {k: v for k, v in metrics[split].items() if k.endswith("@20")}
            log(f"{split:<9} " + "  ".join(f"{k}={v:.4f}" for k, v in shown.items()))


__all__ = ["MODELS", "ModelConfig", "Run", "TrainConfig", "evaluate_model", "evaluate_run", "load_run", "train"]

"""Hyperparameter search: ``graphrec tune``, a resumable Optuna study on the validation split.

**Objective.** Each trial trains one configuration and returns its best **validation** metric
(``TrainConfig.select_metric``); the test split is never read during the search. Once the study has
its trials, the best trial's recipe is trained again as an ordinary run (``DIR/best``, optionally
with the refit protocol), and that run is tested, once.

**Search.** Optuna's TPE sampler proposes each trial's values; the median pruner stops a trial whose
validation curve, reported by the trainer after every evaluation (an observer of
:func:`~graphrec.training.trainer.fit`), falls below the median of earlier trials at the same epoch.

**Storage.** The study lives in ``DIR/study.db``, SQLite through Optuna's RDB storage, so that

* a ``tune`` that is killed (even with SIGKILL) resumes when the same command runs again: finished
  trials are in the database, and only the trial that was running is lost. Trials send a heartbeat;
  one whose heartbeat stops is marked failed and its parameters are queued again
  (:class:`optuna.storages.RetryFailedTrialCallback`);
* several ``tune`` processes on the same ``DIR`` run trials in parallel, each asking the database
  for the next trial. Each process stops once the study has ``trials`` finished (complete or
  pruned) trials, so parallel workers may together finish one trial each beyond it.

The sampler of each process is seeded from ``seed``, the trials already in the study and the process
id, so that parallel workers, and a resumed worker, do not propose the same values again.

**Search spaces** come from the model's option dataclass: a field's ``metadata["space"]``
(``{"low", "high", "log"}`` or ``{"choices"}``), or its ``metadata["grid"]`` for options the model
can choose on validation itself; plus :data:`TRAIN_SPACE` for models trained by gradient descent.
A ``space.yaml`` narrows or widens them: each key is a model option or a training option, its value
a range, a list of choices, a single value (fixed), or ``null`` (not searched)::

    lr: {low: 0.0005, high: 0.005, log: true}
    layers: [2, 3]
    dim: 64
    num_negatives: {low: 1, high: 8}

**Output** in ``DIR``: ``best.yaml`` (the best trial's recipe, ready for ``graphrec train --config``),
``trials.csv`` (every trial: state, value, parameters, seconds), ``history.png`` and
``importances.png`` (:mod:`optuna.visualization.matplotlib`), ``summary.json`` and the tested run
``best/``.
"""

from __future__ import annotations

import dataclasses
import difflib
import fcntl
import hashlib
import os
import time
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphrec.data.dataset import Dataset, load_dataset
from graphrec.data.holdout import ensure_validation_split
from graphrec.data.storage import atomic_file, write_json
from graphrec.errors import ConfigError, DataFormatError, DirectoryLockedError, GraphrecError
from graphrec.models import MODELS, ModelConfig, build_model
from graphrec.training.config import TrainConfig
from graphrec.training.recipes import Recipe
from graphrec.training.trainer import EpochReport

Log = Callable[[str], None]

#: The training options searched for every model trained by gradient descent.
TRAIN_SPACE: dict[str, dict[str, Any]] = {
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "reg": {"low": 1e-6, "high": 1e-2, "log": True},
}

STUDY_FILE = "study.db"
#: Seconds between looks at a best-trial run directory that another tune process of the study holds.
BEST_RUN_POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Dimension:
    """One searched option: a range (``low``..``high``, on a log scale with ``log``) or ``choices``."""

    name: str
    #: ``model`` (an option of the model's dataclass) or ``train`` (a TrainConfig field).
    section: str
    kind: type
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, **({"log": True} if self.log else {})}


@dataclass(frozen=True)
class TuneConfig:
    """How to search."""

    #: Finished (complete or pruned) trials the study should have.
    trials: int = 20
    study_name: str = "graphrec"
    seed: int = 0
    #: Trials drawn at random before TPE models the results (and before anything is pruned).
    startup_trials: int = 5
    #: Evaluations of a trial before it may be pruned.
    warmup_evaluations: int = 2
    #: Seconds between a running trial's heartbeats; a trial silent for 3 times as long is failed.
    heartbeat_seconds: int = 10
    #: Train the best configuration again on train + valid before testing it.
    refit: bool = False

    def __post_init__(self) -> None:
        for name in ("trials", "heartbeat_seconds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=name)
        for name in ("startup_trials", "warmup_evaluations"):
            if getattr(self, name) < 0:
                raise ConfigError(f"must be >= 0, got {getattr(self, name)}", field=name)


@dataclass
class TuneResult:
    best_number: int
    best_value: float
    best_recipe: Recipe
    trials: list[dict[str, Any]] = field(default_factory=list)
    best_run: Any = None
    files: dict[str, str] = field(default_factory=dict)


def search_space(model: str, overrides: Mapping[str, Any] | None = None,
                 path: str | Path | None = None) -> dict[str, Dimension]:
    """Model ``model``'s search space from its option dataclass (and :data:`TRAIN_SPACE`), with
    ``overrides`` (a ``space.yaml``'s contents, read from ``path``) applied."""
    model_type = MODELS[model]
    option_fields = {option.name: option for option in dataclasses.fields(model_type.Options)}
    train_fields = {option.name: option for option in dataclasses.fields(TrainConfig)}
    model_hints = typing.get_type_hints(model_type.Options)
    train_hints = typing.get_type_hints(TrainConfig)
    space: dict[str, Dimension] = {}
    for name, option in option_fields.items():
        spec = option.metadata.get("space")
        if spec is None and "grid" in option.metadata:
            spec = {"choices": tuple(option.metadata["grid"])}
        if spec is not None:
            space[name] = _dimension(name, "model", _plain(model_hints[name]), spec, None)
    if model_type.trained_by_gradient:
        for name, spec in TRAIN_SPACE.items():
            space[name] = _dimension(name, "train", _plain(train_hints[name]), spec, None)
    for name, spec in (overrides or {}).items():
        if name in option_fields:
            section, hint = "model", model_hints[name]
        elif name in train_fields:
            section, hint = "train", train_hints[name]
        else:
            known = [*option_fields, *train_fields]
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            raise DataFormatError(f"neither an option of model {model!r} nor a training option"
                                  f"{f' (did you mean {close[0]!r}?)' if close else ''}", path=path, field=name)
        if spec is None:
            space.pop(name, None)
            continue
        space[name] = _dimension(name, section, _plain(hint), spec, path)
    return space


def read_space_file(path: str | Path) -> dict[str, Any]:
    """A ``space.yaml`` (or ``.toml``): a mapping of option names to ranges, choices or values."""
    from graphrec.training.recipes import read_mapping_file

    return read_mapping_file(path, what="search space")


def _dimension(name: str, section: str, kind: Any, spec: Any, path: str | Path | None) -> Dimension:
    if isinstance(spec, list | tuple):
        spec = {"choices": tuple(spec)}
    elif not isinstance(spec, Mapping):
        spec = {"choices": (spec,)}
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise DataFormatError(f"unknown keys {sorted(unknown)}: a dimension is {{low, high, log}} or {{choices}}",
                              path=path, field=name)
    if "choices" in spec:
        choices = tuple(tuple(c) if isinstance(c, list) else c for c in spec["choices"])
        if not choices:
            raise DataFormatError("needs at least one choice", path=path, field=name)
        return Dimension(name, section, kind, choices=choices)
    if kind not in (int, float) or "low" not in spec or "high" not in spec:
        raise DataFormatError(f"needs low and high (a {getattr(kind, '__name__', kind)} option takes choices)",
                              path=path, field=name)
    try:
        low, high = kind(float(spec["low"])), kind(float(spec["high"]))
    except (TypeError, ValueError):
        raise DataFormatError(f"low and high must be numbers, got {spec['low']!r} and {spec['high']!r}",
                              path=path, field=name) from None
    log = bool(spec.get("log", False))
    if not low <= high or (log and low <= 0):
        raise DataFormatError(f"needs low <= high{' and low > 0 on a log scale' if log else ''}, got {low}..{high}",
                              path=path, field=name)
    return Dimension(name, section, kind, low=low, high=high, log=log)


def _plain(kind: Any) -> Any:
    arguments = [argument for argument in typing.get_args(kind) if argument is not type(None)]
    return arguments[0] if type(None) in typing.get_args(kind) and len(arguments) == 1 else kind


def trial_recipe(base: Recipe, values: Mapping[str, Any], space: Mapping[str, Dimension]) -> Recipe:
    """``base`` with a trial's ``values`` in place."""
    model_values = {name: value for name, value in values.items() if space[name].section == "model"}
    train_values = {name: value for name, value in values.items() if space[name].section == "train"}
    options = {**dataclasses.asdict(base.model.options), **model_values}
    return dataclasses.replace(base, model=ModelConfig(base.model.name, options),
                               train=dataclasses.replace(base.train, **train_values))


def validation_score(dataset: Dataset, recipe: Recipe, observers: list[Callable[[EpochReport], None]]) -> float:
    """Train ``recipe`` on ``dataset`` (which has a validation split) and return its best validation
    ``select_metric``. Nothing here reads the test split."""
    from graphrec.device import resolve_device
    from graphrec.evaluation import EvalConfig
    from graphrec.training.run import evaluate_model
    from graphrec.training.selection import select_on_validation
    from graphrec.training.trainer import fit

    config = recipe.train
    eval_config = EvalConfig(ks=config.eval_ks, batch_size=config.eval_batch_size, beyond_accuracy=False,
                             full_mrr=False)
    model = build_model(recipe.model, dataset, seed=config.seed)
    if model.trained_by_gradient:
        result = fit(model, dataset, config, lambda m, d, split: evaluate_model(m, d, split, eval_config),
                     log=_silent, observers=observers)
        return float(result.best_valid.get(config.select_metric, float("-inf")))
    device = resolve_device(config.device)
    model.to(device)
    if model.selects_on_validation:
        select_on_validation(model, dataset, recipe.model.options, eval_config, config.select_metric, device, _silent)
    return float(evaluate_model(model, dataset, "valid", eval_config)[config.select_metric])


def tune(dataset_path: str | Path, base: Recipe, space: Mapping[str, Dimension], study_dir: str | Path,
         config: TuneConfig = TuneConfig(), log: Log = print) -> TuneResult:
    """Run (or resume, or join) the study in ``study_dir`` until it has ``config.trials`` finished
    trials, then write the outputs and test the best trial (see the module docstring)."""
    optuna = _import_optuna()
    if not space:
        raise GraphrecError(f"model {base.model.name!r} has nothing to search: its options declare no space and it "
                            f"is not trained by gradient descent; give ranges in --space")
    study_dir = Path(study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(dataset_path)
    dataset, carve_note = ensure_validation_split(dataset, base.train.seed)
    if carve_note:
        log(f"note: {carve_note}")
    base = dataclasses.replace(base, dataset=str(Path(dataset_path).resolve()),
                               train=dataclasses.replace(base.train, progress=False, plot=False))
    study = open_study(study_dir, config)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    metric = base.train.select_metric

    def objective(trial: Any) -> float:
        recipe = trial_recipe(base, {name: dimension.suggest(trial) for name, dimension in space.items()}, space)
        trial.set_user_attr("recipe", recipe.to_dict())
        trial.set_user_attr("pid", os.getpid())
        value = validation_score(dataset, recipe, [pruning_observer(trial, metric)])
        log(f"trial {trial.number}: validation {metric} = {value:.4f}  "
            + " ".join(f"{name}={trial.params[name]}" for name in space))
        return value

    def log_pruned(study_: Any, trial: Any) -> None:
        if trial.state == optuna.trial.TrialState.PRUNED:
            log(f"trial {trial.number}: pruned after {len(trial.intermediate_values)} evaluations")

    done = len(study.get_trials(deepcopy=False, states=finished_states))
    if done < config.trials:
        log(f"study {config.study_name!r} in {study_dir / STUDY_FILE}: {done} of {config.trials} trials finished; "
            f"searching {', '.join(space)}")
        study.optimize(objective, catch=(GraphrecError,),
                       callbacks=[optuna.study.MaxTrialsCallback(config.trials, states=finished_states), log_pruned])
    else:
        log(f"study {config.study_name!r} already has {done} finished trials")
    return _finish(study, base, study_dir, config, log)


def pruning_observer(trial: Any, metric: str) -> Callable[[EpochReport], None]:
    """An observer of :func:`~graphrec.training.trainer.fit` that reports each validation ``metric`` to
    ``trial`` (step = epoch) and stops training, raising :class:`optuna.TrialPruned`, when the study's
    pruner says so."""
    optuna = _import_optuna()

    def observe(report: EpochReport) -> None:
        if report.valid is None:
            return
        trial.report(report.valid[metric], step=report.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"validation {metric} {report.valid[metric]:.4f} at epoch {report.epoch} "
                                     f"is below the median of earlier trials")

    return observe


def open_study(study_dir: str | Path, config: TuneConfig) -> Any:
    """The study in ``study_dir/study.db``, created on first use (see the module docstring)."""
    Path(study_dir).mkdir(parents=True, exist_ok=True)
    # Two workers starting together would both create the database's tables (SQLite then fails with
    # "table already exists"): one at a time opens or creates the study.
    with open(Path(study_dir) / ".study.open.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        optuna = _import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():  # heartbeats are marked experimental, and have been since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url=f"sqlite:///{(Path(study_dir) / STUDY_FILE).resolve()}",
                # SQLite locks the whole file per write: wait for another worker's write instead of failing.
                engine_kwargs={"connect_args": {"timeout": 60}},
                heartbeat_interval=config.heartbeat_seconds, grace_period=3 * config.heartbeat_seconds,
                heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))
        existing = optuna.study.get_all_study_names(storage) if Path(study_dir, STUDY_FILE).exists() else []
        trials_so_far = 0
        if config.study_name in existing:
            trials_so_far = len(optuna.load_study(study_name=config.study_name, storage=storage).trials)
        seed = int.from_bytes(hashlib.sha256(f"{config.seed}:{trials_so_far}:{os.getpid()}".encode()).digest()[:4],
                              "little")
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.startup_trials)
        pruner = optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials,
                                             n_warmup_steps=config.warmup_evaluations)
        return optuna.create_study(study_name=config.study_name, storage=storage, sampler=sampler, pruner=pruner,
                                   direction="maximize", load_if_exists=True)


def _finish(study: Any, base: Recipe, study_dir: Path, config: TuneConfig, log: Log) -> TuneResult:
    import dataclasses as dc

    from graphrec.training.recipes import merge_recipe
    from graphrec.training.run import train

    optuna = _import_optuna()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise GraphrecError(f"no trial of the study in {study_dir} completed; see its trials.csv")
    best = study.best_trial
    table = _trials_table(study)
    frame_path = study_dir / "trials.csv"
    with atomic_file(frame_path) as tmp:
        study.trials_dataframe(attrs=("number", "state", "value", "params", "duration")).to_csv(tmp, index=False)
    log(_format_table(table, list(best.params)))
    best_recipe = merge_recipe(best.user_attrs["recipe"], None)
    best_recipe = dc.replace(best_recipe, train=dc.replace(best_recipe.train, refit=config.refit))
    best_recipe.write(study_dir / "best.yaml")
    files = {"study": str(study_dir / STUDY_FILE), "trials": str(frame_path),
             "best_recipe": str(study_dir / "best.yaml")}
    files.update(_plots(study, study_dir, log))
    log(f"best trial {best.number}: validation {base.train.select_metric} = {best.value:.4f}; testing its recipe "
        f"once{' (refit on train + valid)' if config.refit else ''} in {study_dir / 'best'}")
    assert best_recipe.dataset is not None
    # The study's own run of its best recipe, replaced when a resumed study tests it again. Another tune
    # process of the same study may be testing it at this moment: wait for it, then test again (the
    # same recipe gives the same run), rather than fail after all the trials.
    while True:
        try:
            run = train(best_recipe.dataset, best_recipe.model, best_recipe.train, out=study_dir / "best",
                        overwrite=True, log=log)
            break
        except DirectoryLockedError:
            log(f"another tune process of this study is testing in {study_dir / 'best'}; waiting for it")
            time.sleep(BEST_RUN_POLL_SECONDS)
    files["best_run"] = str(study_dir / "best")
    write_json(study_dir / "summary.json", {
        "study": config.study_name, "best_trial": best.number, "metric": base.train.select_metric,
        "best_valid": best.value, "params": best.params, "refit": config.refit,
        "test": run.metrics.get("test"), "trials": table, "files": files})
    return TuneResult(best_number=best.number, best_value=float(best.value), best_recipe=best_recipe, trials=table,
                      best_run=run, files=files)


def _trials_table(study: Any) -> list[dict[str, Any]]:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds() if (
            trial.datetime_complete and trial.datetime_start) else None
        rows.append({"number": trial.number, "state": trial.state.name, "value": trial.value,
                     "evaluations": len(trial.intermediate_values), "seconds": seconds, **trial.params})
    return rows


def _format_table(rows: list[dict[str, Any]], params: list[str]) -> str:
    header = f"{'trial':>5}  {'state':<8}  {'value':>8}  {'evals':>5}  {'seconds':>7}  " + "  ".join(params)
    lines = [header]
    for row in rows:
        value = "" if row["value"] is None else f"{row['value']:.4f}"
        seconds = "" if row["seconds"] is None else f"{row['seconds']:.1f}"
        shown = "  ".join(_short(row.get(name)) for name in params)
        lines.append(f"{row['number']:>5}  {row['state']:<8}  {value:>8}  {row['evaluations']:>5}  {seconds:>7}  "
                     f"{shown}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _plots(study: Any, study_dir: Path, log: Log) -> dict[str, str]:
    """Optimisation history and parameter importances as PNG (importances need two finished trials
    with different values)."""
    import matplotlib

    optuna = _import_optuna()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written = {}
    for name, draw in (("history", optuna_plots.plot_optimization_history),
                       ("importances", optuna_plots.plot_param_importances)):
        path = study_dir / f"{name}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axes = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as error:
            log(f"no {name} plot: {error}")
            continue
        figure: Any = plt.gcf() if not hasattr(axes, "figure") else axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        with atomic_file(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        plt.close(figure)
        written[name] = str(path)
    return written


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise GraphrecError("graphrec tune needs Optuna: pip install 'graphrec[tune]'") from None
    return optuna


def _silent(_: str) -> None:
    """Trials train quietly: the study logs one line per trial."""


__all__ = ["TRAIN_SPACE", "Dimension", "TuneConfig", "TuneResult", "open_study", "pruning_observer", "read_space_file",
           "search_space", "trial_recipe", "tune", "validation_score"]

"""Recipes: a training run described in a file (``graphrec train --config recipe.yaml``).

A recipe holds the model and its options, the training options (the protocol among them:
``select_metric``, ``eval_ks`` and ``refit``) and, optionally, the dataset and where to track::

    dataset: ../shared/data/ml-100k        # optional; the command's DATASET wins
    model:
      name: lightgcn
      options: {dim: 64, layers: 3}
    train:
      epochs: 200
      lr: 0.001
      refit: false
    tracking:
      tensorboard: runs/tb/lightgcn        # optional

YAML (``.yaml``/``.yml``, read with PyYAML's safe loader) or TOML (``.toml``, :mod:`tomllib`).
Every key is checked against the dataclass it configures (:class:`~graphrec.models.ModelConfig`
with the model's ``Options``, :class:`~graphrec.training.config.TrainConfig`,
:class:`~graphrec.training.tracking.TrackingConfig`): an unknown key is a
:class:`~graphrec.errors.DataFormatError` naming the file, the key and the closest valid key, and
so is a value the dataclass rejects. Command-line flags override the recipe (:func:`merge_recipe`);
the merged recipe is what ``run.json`` records and what ``--print-config`` prints.
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphrec.errors import ConfigError, DataFormatError
from graphrec.models import MODELS, ModelConfig
from graphrec.training.config import TrainConfig
from graphrec.training.tracking import TrackingConfig

#: The sections of a recipe.
SECTIONS = ("dataset", "model", "train", "tracking")


@dataclass(frozen=True)
class Recipe:
    """A checked, merged recipe."""

    model: ModelConfig
    train: TrainConfig
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    dataset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), in the layout of a recipe file."""
        out: dict[str, Any] = {}
        if self.dataset is not None:
            out["dataset"] = self.dataset
        out["model"] = _plain(self.model.to_dict())
        out["train"] = _plain(dataclasses.asdict(self.train))
        tracking = {key: value for key, value in dataclasses.asdict(self.tracking).items()
                    if value is not None and value != _default(TrackingConfig, key)}
        if tracking:
            out["tracking"] = tracking
        return out

    def to_yaml(self) -> str:
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))

    def write(self, path: str | Path) -> Path:
        """The recipe as a YAML file, written atomically."""
        from graphrec.data.storage import atomic_file

        path = Path(path)
        with atomic_file(path) as tmp:
            tmp.write_text(self.to_yaml())
        return path


def read_recipe_file(path: str | Path) -> dict[str, Any]:
    """The raw contents of a recipe file, its top-level sections checked."""
    raw = read_mapping_file(path, what="recipe")
    _check_keys(raw, SECTIONS, Path(path), "")
    return raw


def read_mapping_file(path: str | Path, what: str = "recipe") -> dict[str, Any]:
    """A YAML (or, by its suffix, TOML) file holding one mapping."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"no such {what} file", path=path)
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            raw: Any = tomllib.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, ValueError) as error:
        raise DataFormatError(f"not valid TOML: {error}", path=path) from None
    except Exception as error:  # yaml.YAMLError, imported lazily
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        raise DataFormatError(f"not valid YAML: {getattr(error, 'problem', error)}", path=path,
                              line=None if line is None else line + 1) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DataFormatError(f"a {what} is a mapping; got {type(raw).__name__}", path=path)
    return raw


def load_recipe(path: str | Path) -> Recipe:
    """A recipe file, checked (see the module docstring)."""
    return merge_recipe(read_recipe_file(path), path)


def merge_recipe(raw: Mapping[str, Any] | None, path: str | Path | None = None, *, model: str | None = None,
                 model_options: Mapping[str, Any] | None = None, train: Mapping[str, Any] | None = None,
                 tracking: Mapping[str, Any] | None = None, dataset: str | Path | None = None) -> Recipe:
    """The recipe ``raw`` (read from ``path``) with the command line's values laid over it.

    ``model``, ``model_options``, ``train`` and ``tracking`` hold only what the command line gave.
    A value that came from the file and is rejected is a :class:`~graphrec.errors.DataFormatError`
    naming the file and the key; one that came from the command line stays a
    :class:`~graphrec.errors.ConfigError`, which the CLI reports under its flag.
    """
    raw = dict(raw or {})
    where = Path(path) if path is not None else None
    model_section = raw.get("model", {})
    if isinstance(model_section, str):
        model_section = {"name": model_section}
    if not isinstance(model_section, Mapping):
        raise DataFormatError("must be a model name or a mapping with name and options", path=where, field="model")
    _check_keys(model_section, ("name", "options"), where, "model.")
    file_model = str(model_section.get("name", "lightgcn"))
    file_options = dict(model_section.get("options") or {})
    if model is not None and model != file_model and file_options:
        raise ConfigError(f"{model!r} is not the recipe's model {file_model!r}, whose options "
                          f"({', '.join(file_options)}) would not apply; change the model in the recipe",
                          field="model")
    name = model if model is not None else file_model
    if name not in list(MODELS):  # the registry raises ConfigError (naming --model) for an unknown name
        if model is None:
            raise DataFormatError(f"unknown model {name!r}{_closest(name, MODELS)}; choose one of "
                                  f"{', '.join(MODELS)}", path=where, field="model.name")
        MODELS[name]  # raises the ConfigError naming --model
    options_type = MODELS[name].Options
    options = {key: _coerce(value, options_type, key, where, f"model.options.{key}")
               for key, value in file_options.items()}
    _check_keys(options, [f.name for f in dataclasses.fields(options_type)], where, "model.options.")
    given_options = dict(model_options or {})
    model_config = _build(lambda: ModelConfig(name, {**options, **given_options}), where, "model.options.",
                          from_file=set(options) - set(given_options))

    train_section = dict(raw.get("train") or {})
    _check_keys(train_section, [f.name for f in dataclasses.fields(TrainConfig)], where, "train.")
    train_values = {key: _coerce(value, TrainConfig, key, where, f"train.{key}")
                    for key, value in train_section.items()}
    given_train = dict(train or {})
    train_config = _build(lambda: TrainConfig(**{**train_values, **given_train}), where, "train.",
                          from_file=set(train_values) - set(given_train))

    tracking_section = dict(raw.get("tracking") or {})
    _check_keys(tracking_section, [f.name for f in dataclasses.fields(TrackingConfig)], where, "tracking.")
    given_tracking = {key: value for key, value in (tracking or {}).items() if value is not None}
    tracking_config = TrackingConfig(**{**tracking_section, **given_tracking})

    chosen_dataset = dataset if dataset is not None else raw.get("dataset")
    if chosen_dataset is not None and dataset is None and where is not None and not Path(chosen_dataset).is_absolute():
        # a recipe's relative dataset path is relative to the recipe, wherever the command runs
        chosen_dataset = str((where.parent / chosen_dataset).resolve())
    return Recipe(model=model_config, train=train_config, tracking=tracking_config,
                  dataset=None if chosen_dataset is None else str(chosen_dataset))


def _build(make: typing.Callable[[], Any], where: Path | None, prefix: str, from_file: set[str]) -> Any:
    try:
        return make()
    except ConfigError as error:
        if where is not None and error.field in from_file:
            raise DataFormatError(error.reason, path=where, field=f"{prefix}{error.field}") from None
        raise


def _check_keys(section: Mapping[str, Any], known: typing.Iterable[str], where: Path | None, prefix: str) -> None:
    known = list(known)
    for key in section:
        if key not in known:
            raise DataFormatError(f"unknown key{_closest(str(key), known)}; valid keys are {', '.join(known)}",
                                  path=where, field=f"{prefix}{key}")


def _closest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, cls: type, key: str, where: Path | None, name: str) -> Any:
    """``value`` as field ``key`` of ``cls`` declares it: lists become tuples, and numbers that
    YAML 1.1 reads as strings (``1e-3``) become floats. Unknown keys pass (checked elsewhere)."""
    hints = typing.get_type_hints(cls)
    if key not in hints:
        return value
    hint = hints[key]
    arguments = [a for a in typing.get_args(hint) if a is not type(None)]
    plain = arguments[0] if type(None) in typing.get_args(hint) and len(arguments) == 1 else hint
    if value is None:
        return None
    origin = typing.get_origin(plain)
    if origin is tuple:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise DataFormatError(f"must be a list, got {value!r}", path=where, field=name)
        element = typing.get_args(plain)[0] if typing.get_args(plain) else str
        return tuple(_scalar(v, element, where, name) for v in value)
    return _scalar(value, plain, where, name)


def _scalar(value: Any, kind: Any, where: Path | None, name: str) -> Any:
    if kind is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            pass
    elif (kind is int and isinstance(value, int) and not isinstance(value, bool)) or (
            kind in (bool, str) and isinstance(value, kind)) or kind not in (float, int, bool, str):
        return value
    raise DataFormatError(f"must be {getattr(kind, '__name__', kind)}, got {value!r}", path=where, field=name)


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


__all__ = ["SECTIONS", "Recipe", "load_recipe", "merge_recipe", "read_mapping_file", "read_recipe_file"]

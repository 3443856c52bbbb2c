"""The one registry of models: names, option dataclasses and constructors.

:data:`MODELS` maps each model's ``name`` to its class. Everything that lists or builds models
reads it: :class:`ModelConfig` and :func:`build_model`, the CLI's ``--model`` choices and its
model options, the quickstart, and the tests' parametrisation. Adding a model is one new file
with a :class:`~graphrec.models.base.Recommender` subclass and one line in :data:`MODELS` (see
``docs/adding-a-model.md``).

Registration checks a class the way scikit-learn's ``check_estimator`` checks an estimator:
the declarations the rest of graphrec relies on must be there, so a model that forgets one
fails on import, not in the middle of a training run.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError, check_finite_fields
from graphrec.graph.hetero import chosen_modalities
from graphrec.models.base import ModelOptions, Recommender
from graphrec.models.baselines import Popularity, RandomScores
from graphrec.models.bspm import BSPM
from graphrec.models.freedom import FREEDOM
from graphrec.models.gfcf import GFCF
from graphrec.models.lgmrec import LGMRec
from graphrec.models.lightgcn import LightGCN
from graphrec.models.mf import MF
from graphrec.models.mmgf import MultimodalGraphFilter
from graphrec.models.modality_gat import ModalityGAT
from graphrec.models.vbpr import VBPR


class ModelRegistry(Mapping[str, type[Recommender]]):
    """Model classes by ``name``, in registration order, each checked on registration."""

    def __init__(self, models: Iterable[type[Recommender]] = ()) -> None:
        self._models: dict[str, type[Recommender]] = {}
        for model in models:
            self.register(model)

    def register(self, model: type[Recommender]) -> type[Recommender]:
        """Add ``model`` after checking its declarations; returns it (usable as a decorator)."""
        check_model_class(model)
        if model.name in self._models:
            raise TypeError(f"model name {model.name!r} is registered twice ({self._models[model.name].__name__} "
                            f"and {model.__name__})")
        self._models[model.name] = model
        return model

    def __getitem__(self, name: str) -> type[Recommender]:
        try:
            return self._models[name]
        except KeyError:
            raise ConfigError(f"unknown model {name!r}{_did_you_mean(name, self._models)}; choose one of "
                              f"{', '.join(self._models)}", field="model") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def option_names(self, name: str) -> tuple[str, ...]:
        """The options model ``name`` takes."""
        return tuple(option.name for option in dataclasses.fields(self[name].Options))

    def option_fields(self) -> dict[str, list[tuple[str, dataclasses.Field[Any]]]]:
        """Every option name any model has, with the (model, field) pairs that declare it."""
        owners: dict[str, list[tuple[str, dataclasses.Field[Any]]]] = {}
        for name, model in self._models.items():
            for option in dataclasses.fields(model.Options):
                owners.setdefault(option.name, []).append((name, option))
        return owners


def check_model_class(model: type[Recommender]) -> None:
    """A ``TypeError`` naming what ``model`` fails to declare (see :class:`Recommender`)."""
    problems = []
    if not isinstance(getattr(model, "name", None), str) or not model.name:
        problems.append("a class attribute `name` (its registry key)")
    options = getattr(model, "Options", None)
    if not (isinstance(options, type) and issubclass(options, ModelOptions) and dataclasses.is_dataclass(options)
            and options.__dataclass_params__.frozen):  # type: ignore[attr-defined]  # set by @dataclass
        problems.append("`Options`, a frozen dataclass subclassing ModelOptions")
    elif model.reads_features != ("modalities" in {f.name for f in dataclasses.fields(options)}):
        problems.append("`reads_features` exactly when its Options have a `modalities` field")
    if getattr(model.from_dataset, "__isabstractmethod__", False):
        problems.append("the classmethod `from_dataset(dataset, options, seed)`")

    def overrides(method: str) -> bool:
        return getattr(model, method) is not getattr(Recommender, method)

    needed = []
    if model.has_embeddings:
        needed.append("embed")
    if model.trained_by_gradient:
        needed += ["user_ego", "item_ego"]
    if model.supports_subgraphs:
        needed.append("embed_subgraph")
    if model.supports_alignment:
        needed.append("alignment_loss")
    if not model.has_embeddings:
        needed.append("scorer")
    if model.selects_on_validation:
        needed += ["setting_scorer", "select"]
    if model.linear_in_history:
        needed.append("score_histories")
    problems += [f"`{method}` (its flags require it)" for method in needed if not overrides(method)]
    if problems:
        raise TypeError(f"model class {model.__name__} cannot be registered: it needs " + "; ".join(problems))


#: The registry. One line per model.
MODELS = ModelRegistry([
    Popularity,
    RandomScores,
    MF,
    LightGCN,
    VBPR,
    ModalityGAT,
    GFCF,
    BSPM,
    MultimodalGraphFilter,
    FREEDOM,
    LGMRec,
])


@dataclass(frozen=True, init=False)
class ModelConfig:
    """A model by name with its options: ``ModelConfig("gat", dim=64, layers=1)``, or
    ``ModelConfig("gat", ModalityGATOptions(dim=64, layers=1))``. Options the model does not have
    are an error naming them (and the models that have them)."""

    name: str
    options: ModelOptions

    def __init__(self, name: str = "lightgcn", options: ModelOptions | Mapping[str, Any] | None = None,
                 **values: Any) -> None:
        model = MODELS[name]
        if isinstance(options, ModelOptions):
            if not isinstance(options, model.Options):
                raise ConfigError(f"model {name!r} takes {model.Options.__name__}, got {type(options).__name__}",
                                  field="options")
            options = dataclasses.replace(options, **values) if values else options
        else:
            options = make_options(name, {**(options or {}), **values})
        check_finite_fields(options)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "options", options)

    @property
    def model(self) -> type[Recommender]:
        return MODELS[self.name]

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "options": {...}}``, as ``run.json`` stores it."""
        return {"name": self.name, "options": dataclasses.asdict(self.options)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> ModelConfig:
        """The inverse of :meth:`to_dict`. Also reads the flat form of runs written before models had
        options of their own (every model's options side by side), keeping the model's own; options
        the model gained since the run was saved take the value it was trained with
        (``Options.added_later``)."""
        if "options" in spec:
            return cls(spec["name"], {**MODELS[spec["name"]].Options.added_later, **spec["options"]})
        own = {option.name for option in dataclasses.fields(MODELS[spec["name"]].Options)}
        return cls(spec["name"], {**MODELS[spec["name"]].Options.added_later,
                                  **{key: value for key, value in spec.items() if key in own}})

    def modalities(self, dataset: Dataset) -> list[str]:
        """The modalities the model reads from ``dataset``: those chosen, else every one it has
        (none for a model that reads no features)."""
        if not self.model.reads_features:
            return []
        modalities = self.options.modalities  # type: ignore[attr-defined]  # ensured by check_model_class
        return chosen_modalities(dataset, modalities)


def make_options(name: str, values: Mapping[str, Any]) -> ModelOptions:
    """Model ``name``'s options from plain values (lists become tuples, as JSON and YAML give them)."""
    options_type = MODELS[name].Options
    known = {option.name for option in dataclasses.fields(options_type)}
    for key in values:
        if key not in known:
            owners = [model for model, cls in MODELS.items()
                      if key in {option.name for option in dataclasses.fields(cls.Options)}]
            where = f" (an option of {', '.join(owners)})" if owners else _did_you_mean(key, known)
            has = f"its options are {', '.join(sorted(known))}" if known else "it has no options"
            raise ConfigError(f"model {name!r} has no option {key!r}{where}; {has}", field=key)
    return options_type(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})


def build_model(config: ModelConfig, dataset: Dataset, seed: int = 0) -> Recommender:
    """``config``'s model for ``dataset`` (training edges only), its initialisation seeded by ``seed``."""
    torch.manual_seed(seed)
    return config.model.from_dataset(dataset, config.options, seed=seed)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


__all__ = ["MODELS", "ModelConfig", "ModelRegistry", "build_model", "check_model_class", "make_options"]

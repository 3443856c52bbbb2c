"""Hyperparameter selection on the validation split for models that are not trained by gradient
descent (closed-form graph filters): every setting of the options their ``Options`` leave to be
chosen is scored in one pass over the validation users, and the best by the selection metric is
kept (the first of equals, in grid order). The test split is never read here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from graphrec.data.dataset import Dataset
from graphrec.evaluation import EvalConfig, evaluate_many
from graphrec.models.base import ModelOptions, Recommender

#: Memory for the score matrices of all settings of one batch of users (float32).
SCORES_BUDGET_BYTES = 1 << 30


@dataclass
class Selection:
    """What selection chose: ``chosen`` (option values), the validation metric of every setting tried,
    and the seconds it took."""

    chosen: dict[str, Any]
    metric: str
    table: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "metric": self.metric, "settings": self.table, "seconds": self.seconds}


def select_on_validation(model: Recommender, dataset: Dataset, options: ModelOptions, config: EvalConfig,
                         metric: str, device: torch.device, log: Callable[[str], None] = print) -> Selection:
    """Score every setting of ``options``' searched fields on the validation split, then
    ``model.select`` the best by ``metric``. With nothing searched, the model just takes its options."""
    started = time.perf_counter()
    settings = options.settings()
    if settings == [{}]:
        model.select({})
        return Selection(chosen={}, metric=metric, seconds=time.perf_counter() - started)
    # One score matrix per setting for every user of a batch: the batch shrinks with the settings.
    batch = max(1, min(config.batch_size, SCORES_BUDGET_BYTES // (4 * len(settings) * dataset.num_items)))
    results = evaluate_many(model.setting_scorer(settings), len(settings), dataset, "valid",
                            dataclasses.replace(config, batch_size=batch), device=device)
    table = [{**setting, **{key: result.metrics[key] for key in result.metrics if key.endswith("@20") or key == metric}}
             for setting, result in zip(settings, results, strict=True)]
    best = max(range(len(settings)), key=lambda index: (results[index].metrics[metric], -index))
    model.select(settings[best])
    described = ", ".join(f"{name}={value}" for name, value in settings[best].items())
    log(f"selected on validation from {len(settings)} settings: {described} "
        f"({metric} {results[best].metrics[metric]:.4f})")
    return Selection(chosen=dict(settings[best]), metric=metric, table=table, seconds=time.perf_counter() - started)

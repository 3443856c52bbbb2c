"""Hyperparameter selection on the validation split for models that are not trained by gradient
descent (closed-form graph filters): every setting of the options their ``Options`` leave to be
chosen is scored in one pass over the validation users, and the best by the selection metric is
kept (the first of equals, in grid order). A model whose search would multiply out searches in
stages (:meth:`~graphrec.models.base.Recommender.selection_stage`), each given the best setting of
the stages before it. The test split is never read here.
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
    best_setting: dict[str, Any] = {}
    best_value = float("nan")
    table: list[dict[str, Any]] = []
    stage = 0
    while (settings := model.selection_stage(options, stage, best_setting)) is not None:
        if settings == [{}]:
            break
        # One score matrix per setting for every user of a batch: the batch shrinks with the settings.
        batch = max(1, min(config.batch_size, SCORES_BUDGET_BYTES // (4 * len(settings) * dataset.num_items)))
        results = evaluate_many(model.setting_scorer(settings), len(settings), dataset, "valid",
                                dataclasses.replace(config, batch_size=batch), device=device)
        table += [{"stage": stage, **setting,
                   **{key: result.metrics[key] for key in result.metrics if key.endswith("@20") or key == metric}}
                  for setting, result in zip(settings, results, strict=True)]
        best = max(range(len(settings)), key=lambda index: (results[index].metrics[metric], -index))
        best_setting, best_value = dict(settings[best]), results[best].metrics[metric]
        stage += 1
    model.select(best_setting)
    if not table:
        return Selection(chosen={}, metric=metric, seconds=time.perf_counter() - started)
    described = ", ".join(f"{name}={_shown(value)}" for name, value in best_setting.items())
    log(f"selected on validation from {len(table)} settings{f' in {stage} stages' if stage > 1 else ''}: "
        f"{described} ({metric} {best_value:.4f})")
    return Selection(chosen=best_setting, metric=metric, table=table, seconds=time.perf_counter() - started)


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

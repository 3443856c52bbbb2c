"""How to train: :class:`TrainConfig`, which checks values only.

Nothing here looks at the machine: ``device`` is a name that :func:`~graphrec.training.trainer.fit`
resolves when it trains, so a configuration written on a GPU machine (a run's ``run.json``)
still loads on one without. Errors are :class:`~graphrec.errors.ConfigError` naming the field;
the CLI names its own flag for it. torch and the metrics are imported when a configuration is
checked, not with this module, which the CLI reads for its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphrec.errors import ConfigError, check_finite_fields

SAMPLING_MODES = ("full", "neighbor", "auto")
SAMPLE_ON = ("auto", "cpu", "device")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``patience`` counts evaluations, ``max_minutes`` bounds training wall time."""

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    #: L2 weight on the batch's layer-0 embeddings.
    reg: float = 1e-4
    seed: int = 2020
    #: ``auto`` (the first CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda``, ``cuda:N``.
    device: str = "auto"
    #: Validate every this many epochs.
    eval_every: int = 1
    #: Evaluations without validation improvement before training stops.
    patience: int = 10
    #: The validation metric that selects the model, ``METRIC@K`` with K in ``eval_ks``.
    select_metric: str = "recall@20"
    eval_ks: tuple[int, ...] = (10, 20, 50)
    eval_batch_size: int = 4096
    max_minutes: float | None = None
    progress: bool = True
    plot: bool = False
    #: ``full``, ``neighbor``, or ``auto`` (full-graph when it fits in memory).
    sampling: str = "full"
    #: Neighbours per layer for neighbour sampling (-1: all).
    fanout: tuple[int, ...] = (10, 10, 10)
    #: Where neighbour sampling runs: ``cpu``, ``device`` (the training device) or ``auto``: the
    #: training GPU when the graph's sampling arrays take under a quarter of its free memory, else
    #: the CPU. On a GPU, drawing on the CPU leaves the GPU waiting for every batch.
    sample_on: str = "auto"
    #: One CPU thread (and deterministic CUDA kernels): runs and resumes repeat, to float32 rounding.
    deterministic: bool = False
    #: Weight of the InfoNCE alignment of item content with the id embeddings (content models).
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.2
    #: Update only the embedding rows a batch touched (sparse gradients and lazy Adam,
    #: :class:`~graphrec.training.lazy_adam.LazyAdam`). ``None``: on for neighbour sampling in one process, where a
    #: batch touches a small part of a large table and a dense Adam step over all of it would cost
    #: more than the batch itself; off otherwise (full-graph propagation touches every row anyway).
    sparse_embeddings: bool | None = None
    #: Multiply the learning rate by ``lr_decay_factor`` after every ``lr_decay_patience``
    #: validation evaluations without improvement (``None``: constant learning rate). Decided on
    #: the validation split, like early stopping; set ``patience`` larger to leave room for it.
    lr_decay_patience: int | None = None
    lr_decay_factor: float = 0.5
    #: Negatives drawn per training interaction. Each (user, positive) pair then contributes one BPR
    #: term per negative, all from the same propagation: with full-graph training the propagation
    #: dominates a step's cost, so extra negatives add gradient signal almost for free.
    num_negatives: int = 1
    #: The refit protocol: after model selection on validation (the best epoch and its learning-rate
    #: schedule, or a closed-form model's hyperparameters), train the selected configuration again on
    #: train + valid and report test from that model. Training takes about twice as long.
    refit: bool = False

    def __post_init__(self) -> None:
        import torch

        from graphrec.evaluation.metrics import RANKING_METRICS

        check_finite_fields(self)
        for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size", "num_negatives"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"must be positive, got {getattr(self, name)}", field=name)
        if self.sampling not in SAMPLING_MODES:
            raise ConfigError(f"must be one of {', '.join(SAMPLING_MODES)}, got {self.sampling!r}", field="sampling")
        if self.sample_on not in SAMPLE_ON:
            raise ConfigError(f"must be one of {', '.join(SAMPLE_ON)}, got {self.sample_on!r}", field="sample_on")
        if self.sample_on != "auto" and self.sampling == "full":
            raise ConfigError(f"{self.sample_on!r} places neighbour sampling, which full-graph training does not "
                              f"do; leave it at 'auto' or sample", field="sample_on")
        if not self.fanout or any(f == 0 or f < -1 for f in self.fanout):
            raise ConfigError(f"must be positive per layer (-1 = all), got {self.fanout}", field="fanout")
        if self.lr_decay_patience is not None and self.lr_decay_patience <= 0:
            raise ConfigError(f"must be positive or unset, got {self.lr_decay_patience}", field="lr_decay_patience")
        if not 0 < self.lr_decay_factor < 1:
            raise ConfigError(f"must lie in (0, 1), got {self.lr_decay_factor}", field="lr_decay_factor")
        if not self.lr > 0:
            raise ConfigError(f"must be positive, got {self.lr}", field="lr")
        if self.reg < 0:
            raise ConfigError(f"must be >= 0, got {self.reg}", field="reg")
        if not self.eval_ks or any(k <= 0 for k in self.eval_ks):
            raise ConfigError(f"must be positive cut-offs, got {self.eval_ks}", field="eval_ks")
        metric, _, k = self.select_metric.partition("@")
        if metric not in RANKING_METRICS or not k.isdigit() or int(k) not in self.eval_ks:
            raise ConfigError(f"{self.select_metric!r} must be METRIC@K with METRIC one of "
                              f"{', '.join(RANKING_METRICS)} (lower case) and K in the cut-offs {self.eval_ks}",
                              field="select_metric")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"must be positive or unset, got {self.max_minutes}", field="max_minutes")
        if self.contrastive_weight < 0:
            raise ConfigError(f"must be >= 0, got {self.contrastive_weight}", field="contrastive_weight")
        if not self.contrastive_temperature > 0:
            raise ConfigError(f"must be positive, got {self.contrastive_temperature}", field="contrastive_temperature")
        if self.device != "auto":
            try:
                torch.device(self.device)
            except RuntimeError:
                raise ConfigError(f"{self.device!r} is not a device name; use auto, cpu, cuda or cuda:N",
                                  field="device") from None

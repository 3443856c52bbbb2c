"""The resumable checkpoint (``RUN/last.pt``): model, optimiser, every random state and the loop's
own state, written atomically after each epoch and loaded with ``weights_only=True``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphrec.data.storage import atomic_file
from graphrec.errors import GraphrecError
from graphrec.training.optim import Optimizer


@dataclass
class EpochRecord:
    epoch: int
    seconds: float
    loss: float
    valid: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seconds": self.seconds, "loss": self.loss, "valid": self.valid}


@dataclass
class LoopState:
    """Where training stands: what a checkpoint carries besides the weights and random states."""

    epoch: int = 0
    train_seconds: float = 0.0
    best_value: float = -math.inf
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    evals_without_improvement: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lr_decay_epochs: list[int] = field(default_factory=list)


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: Optimizer, generator: torch.Generator,
                    state: LoopState, sampler_generator: torch.Generator | None, sampling: str) -> None:
    """Write the checkpoint atomically. ``sampler_generator`` is the neighbour sampler's own
    generator (graphrec's sampler); PyG's draws from torch's global one, which is saved anyway."""
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "epoch": state.epoch,
        "train_seconds": state.train_seconds,
        "best_value": state.best_value,
        "best_epoch": state.best_epoch,
        "best_valid": state.best_valid,
        "best_state": state.best_state,
        "evals_without_improvement": state.evals_without_improvement,
        "history": [record.to_dict() for record in state.history],
        "notes": state.notes,
        "lr_decay_epochs": state.lr_decay_epochs,
        "sampling": sampling,
        "sampler_generator": None if sampler_generator is None else sampler_generator.get_state(),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Optimizer, generator: torch.Generator,
                    sampler_generator: torch.Generator | None, sampling: str) -> LoopState:
    """Restore a checkpoint into ``model``, ``optimizer`` and the generators; returns the loop state."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("sampling", sampling) != sampling:
        raise GraphrecError(f"cannot resume from {path}: it was trained with {payload['sampling']} sampling and "
                            f"this run uses {sampling}")
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise GraphrecError(f"cannot resume from {path}: it was written by a different model or training "
                            f"setup ({str(exc).splitlines()[0]}); train without resuming to start over") from None
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    sampler_state = payload.get("sampler_generator")
    if sampler_state is not None and sampler_generator is not None:
        sampler_generator.set_state(sampler_state)
    return LoopState(
        epoch=payload["epoch"], train_seconds=payload["train_seconds"], best_value=payload["best_value"],
        best_epoch=payload["best_epoch"], best_valid=payload["best_valid"], best_state=payload["best_state"],
        evals_without_improvement=payload["evals_without_improvement"],
        history=[EpochRecord(**record) for record in payload["history"]], notes=list(payload.get("notes", [])),
        lr_decay_epochs=list(payload.get("lr_decay_epochs", [])))

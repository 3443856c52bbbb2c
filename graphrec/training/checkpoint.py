"""The resumable checkpoint (``RUN/last.pt``): model, optimiser, every random state and the loop's
own state, written atomically after each epoch and loaded with ``weights_only=True``."""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphrec.data.storage import atomic_file
from graphrec.errors import DataFormatError, GraphrecError
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


#: What every ``last.pt`` holds (a file without them is some other checkpoint).
_CHECKPOINT_KEYS = {"model", "optimizer", "generator", "torch_rng", "epoch", "history"}


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
    save_tensors(payload, path)


def save_tensors(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path``, atomically. Serialised in memory first and written by Python, so
    that a full disk or a file size limit is an ``OSError`` naming its cause (torch's own file writer
    reports it as an unspecific ``RuntimeError``)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_file(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def load_tensors(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load`` with ``weights_only=True``, every way a file can fail to be one of graphrec's
    checkpoints turned into a :class:`~graphrec.errors.DataFormatError` naming it: truncated or
    garbage bytes, or a pickle that holds more than tensors (refused unexecuted)."""
    if not path.is_file():
        raise DataFormatError(f"the {what} is missing or not a file", path=path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # garbage bytes can also drive the unpickler's stack empty (IndexError)
    except (pickle.UnpicklingError, IndexError) as exc:
        with open(path, "rb") as handle:
            is_pickle = handle.read(1) == b"\x80"  # the protocol opcode every pickle since protocol 2 starts with
        if is_pickle and "Weights only load failed" in str(exc):
            raise DataFormatError(f"is not a graphrec {what}: it is a pickle of Python objects beyond tensors (it may "
                                  f"carry code); it was opened with weights_only=True, so nothing in it was executed",
                                  path=path) from None
        raise DataFormatError(f"is not a graphrec {what} (damaged, or another kind of file; nothing in it was "
                              f"executed)", path=path) from None
    # a truncated zip or pickle fails in the reader (EOFError, RuntimeError) or in its parsing
    except (EOFError, RuntimeError, OSError, ValueError, TypeError, KeyError, AttributeError, MemoryError) as exc:
        raise DataFormatError(f"is not a readable graphrec {what} (truncated or damaged: {_first_line(exc)})",
                              path=path) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: Optimizer, generator: torch.Generator,
                    sampler_generator: torch.Generator | None, sampling: str) -> LoopState:
    """Restore a checkpoint into ``model``, ``optimizer`` and the generators; returns the loop state."""
    payload = load_tensors(path)
    if not isinstance(payload, dict) or not set(payload) >= _CHECKPOINT_KEYS:
        raise DataFormatError("is not a graphrec training checkpoint (its contents are not a run's last.pt)", path=path)
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

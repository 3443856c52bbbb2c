"""The one place that turns a ``--device`` string into a :class:`torch.device`, or a clear error.

Training, evaluation and both encoders take the same spellings: ``auto`` (the first CUDA GPU
when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from graphrec.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """The device ``spec`` names; a ConfigError (a GraphrecError) when it is not a device name or
    this machine lacks it."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{spec!r} is not a device name; use auto, cpu, cuda or cuda:N", field="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{spec!r}: this machine has no CUDA GPU; use cpu or auto", field="device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"{spec!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)", field="device")
    return device


def fp16_on_cuda(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The encoders' inference precision: fp16 autocast on a CUDA device, full precision elsewhere."""
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else contextlib.nullcontext()

"""Multi-process training with ``torch.distributed``: who am I, and agreeing on decisions.

Launch with torchrun, on one machine or several::

    torchrun --nproc_per_node 2 -m graphrec train DATASET --model lightgcn --out RUN
    torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        -m graphrec train DATASET --out RUN

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`context_from_env`
reads them and joins the process group (gloo on the CPU, nccl on CUDA). Gradients
are synchronised by PyTorch's :class:`~torch.nn.parallel.DistributedDataParallel`;
graphrec only shards the training triplets and has rank 0 decide when to stop.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from graphrec.errors import GraphrecError


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def agree(self, flag: bool) -> bool:
        """Rank 0's ``flag``, on every rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=self._collective_device)
        dist.broadcast(value, src=0)
        return bool(value.item())

    def mean(self, value: float) -> float:
        """The mean of every rank's ``value``, on every rank."""
        if not self.enabled:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self._collective_device)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size

    def gather_strings(self, text: str) -> list[str]:
        """Every rank's ``text``, on every rank."""
        if not self.enabled:
            return [text]
        gathered: list[str | None] = [None] * self.world_size
        dist.all_gather_object(gathered, text)
        return [str(g) for g in gathered]

    @property
    def _collective_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def context_from_env(device: torch.device) -> DistributedContext:
    """The process's place in a torchrun launch (a single-process context without one)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return DistributedContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            raise GraphrecError(
                f"torchrun started {local_world} processes on this machine but it has {gpus} GPU(s), and "
                f"nccl needs one GPU per process (local rank {local_rank} has none): start at most {gpus} "
                f"per node (--nproc_per_node {max(gpus, 1)}), or train on the CPU with --device cpu (gloo)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    if device.type == "cpu":
        # Processes on one machine share its cores; oversubscribed threads only slow each other down.
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                              backend=backend)


def finish() -> None:
    """Wait for every rank (rank 0 writes last), then leave the process group cleanly.

    Without this a rank that finishes first may tear down its gloo threads while rank 0 is
    still evaluating, and torchrun reports the job as failed."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def parameter_checksum(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes, in ``state_dict`` order."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()

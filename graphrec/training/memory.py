"""Memory planning: full-graph or neighbour-sampled training, and where the sampler's arrays live.

The estimates are deliberately rough (within a small factor of the measured peak); they only
have to tell a graph that fits comfortably from one that does not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from graphrec.data.dataset import Dataset
from graphrec.errors import GraphrecError
from graphrec.models.base import Recommender
from graphrec.training.config import TrainConfig

Log = Callable[[str], None]


def choose_sampling(config: TrainConfig, model: Recommender, dataset: Dataset, device: torch.device,
                    log: Log) -> str:
    """``full`` or ``neighbor``; ``auto`` takes full-graph training when its activations fit
    comfortably in memory, else neighbour sampling (for models that support it)."""
    supports = model.supports_subgraphs
    if config.sampling == "neighbor" and not supports:
        raise GraphrecError(f"model {model.name!r} does not train on sampled subgraphs; train it full-graph")
    if config.sampling != "auto":
        return config.sampling
    estimate = full_graph_bytes(model, dataset)
    available = available_memory(device)
    mode = "full" if not supports or estimate < 0.5 * available else "neighbor"
    log(f"sampling auto: full-graph training needs about {estimate / 2**30:.2f} GiB of "
        f"{available / 2**30:.1f} GiB available: chose {mode}")
    return mode


def full_graph_bytes(model: Recommender, dataset: Dataset) -> int:
    """Rough peak memory of one full-graph step: every layer's activations and their gradients,
    the parameters with Adam's two moments, and the adjacency."""
    nodes = dataset.num_users + dataset.num_items
    dim = model.dim or 64
    layers = model.num_layers or 1
    edges = 2 * dataset.split_counts()["train"]
    estimate = 4 * nodes * dim * (2 * (layers + 1) + 4) + 12 * edges
    if model.attention_heads:  # attention keeps per-edge scores, coefficients and their gradients per layer
        estimate += 4 * edges * model.attention_heads * 6 * layers
    return estimate


def choose_sampler_device(config: TrainConfig, dataset: Dataset, device: torch.device, log: Log) -> torch.device:
    """Where neighbour sampling runs (``config.sample_on``); ``auto`` says what it chose."""
    cpu = torch.device("cpu")
    if device.type == "cpu":
        return cpu
    if config.sample_on != "auto":
        chosen = device if config.sample_on == "device" else cpu
        log(f"neighbour sampling on {chosen} (sample_on={config.sample_on!r})")
        return chosen
    need = sampler_bytes(dataset)
    available = available_memory(device)
    chosen = device if need < 0.25 * available else cpu
    log(f"neighbour sampling on {chosen}: its graph arrays take about {need / 2**30:.2f} GiB of "
        f"{available / 2**30:.1f} GiB free on {device}")
    return chosen


def sampler_bytes(dataset: Dataset) -> int:
    """Memory of the neighbour sampler's graph: per direction of the interactions, a CSC pointer
    per node plus a source id and an edge id per edge, all int64."""
    edges = dataset.split_counts()["train"]
    return 8 * (4 * edges + dataset.num_users + dataset.num_items + 2)


def available_memory(device: torch.device) -> int:
    """Free memory of a GPU, or the host's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def fanout_for(model: Recommender, fanout: tuple[int, ...], log: Log) -> tuple[int, ...]:
    """One fan-out per propagation layer: fewer would leave the deeper layers without sampled
    edges (silently wrong embeddings), so that is an error; extra hops are dropped."""
    layers = model.num_layers
    if len(fanout) == layers:
        return fanout
    if len(fanout) < layers:
        raise GraphrecError(f"fan-out {','.join(map(str, fanout))} samples {len(fanout)} hop(s) but the model "
                            f"propagates over {layers} layers; give one fan-out per layer")
    log(f"fan-out {','.join(map(str, fanout))} has more hops than the model's {layers} layers: "
        f"sampling {','.join(map(str, fanout[:layers]))}")
    return fanout[:layers]

"""The BPR training loop, model-agnostic: it speaks only the ``Recommender`` interface.

One epoch visits every training interaction once, in a seeded random order, with
``num_negatives`` uniform negatives per interaction. With several processes each global batch
is split over the ranks, the last one unevenly with each rank's loss weighted by its share, so
that a full-graph epoch takes the same steps as in one process (only a final remainder
smaller than the number of processes is left out). After every ``eval_every`` epochs the model is
scored on the **validation** split (never the test split); the best validation
state is kept, training stops after ``patience`` evaluations without improvement
or when the time budget runs out, and the best state is what gets tested.

A checkpoint written after each epoch holds the model, the optimiser and every
random-number state, so a resumed run ends identical to an uninterrupted one.
With several CPU threads, MKL may split reductions differently from run to run
(its thread count adapts to load), which changes results in the last bits;
``deterministic=True`` trains on one intra-op thread, which made runs and resumes
bit-identical on the CPU in every run on the 2-core machines here; on a 16-core machine
running eight such trainings at once, 3 of 17 resumes ended an epoch one float32
rounding step off (its loss 0.41958239 against 0.41958237), so count on CPU results
repeating to float32 rounding, and usually exactly. On CUDA it also asks for PyTorch's
deterministic kernels, so losses and metrics repeat exactly; the parameters repeat to
float32 rounding only, since cuSPARSE's products are outside PyTorch's deterministic switch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.data.splitting import TRAIN, VALID, split_random
from graphrec.data.storage import atomic_file, write_json
from graphrec.device import resolve_device
from graphrec.errors import GraphrecError
from graphrec.evaluation.metrics import RANKING_METRICS
from graphrec.training.bpr import bpr_loss
from graphrec.training.distributed import (
    DistributedContext,
    context_from_env,
    parameter_checksum,
)
from graphrec.training.lazy_adam import LazyAdam
from graphrec.training.negatives import NegativeSampler


@dataclass(frozen=True)
class TrainConfig:
    """How to train. ``patience`` counts evaluations, ``max_minutes`` bounds training wall time."""

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    reg: float = 1e-4
    seed: int = 2020
    device: str = "auto"
    eval_every: int = 1
    patience: int = 10
    select_metric: str = "recall@20"
    eval_ks: tuple[int, ...] = (10, 20, 50)
    eval_batch_size: int = 4096
    max_minutes: float | None = None
    progress: bool = True
    plot: bool = False
    sampling: str = "full"
    fanout: tuple[int, ...] = (10, 10, 10)
    #: Where neighbour sampling runs: ``cpu``, ``device`` (the training device) or ``auto``: the
    #: training GPU when the graph's sampling arrays take under a quarter of its free memory, else
    #: the CPU. On a GPU, drawing on the CPU leaves the GPU waiting for every batch.
    sample_on: str = "auto"
    deterministic: bool = False
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

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_every", "patience", "eval_batch_size", "num_negatives"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        if self.sampling not in ("full", "neighbor", "auto"):
            raise ValueError(f"TrainConfig.sampling must be full, neighbor or auto, got {self.sampling!r}")
        if self.sample_on not in ("auto", "cpu", "device"):
            raise ValueError(f"TrainConfig.sample_on must be auto, cpu or device, got {self.sample_on!r}")
        if self.sample_on != "auto" and self.sampling == "full":
            raise ValueError(f"TrainConfig.sample_on={self.sample_on!r} places neighbour sampling, which "
                             f"sampling='full' does not do; leave it at 'auto' or sample")
        if not self.fanout or any(f == 0 or f < -1 for f in self.fanout):
            raise ValueError(f"TrainConfig.fanout must be positive per layer (-1 = all), got {self.fanout}")
        if self.lr_decay_patience is not None and self.lr_decay_patience <= 0:
            raise ValueError(f"TrainConfig.lr_decay_patience must be positive or None, got {self.lr_decay_patience}")
        if not 0 < self.lr_decay_factor < 1:
            raise ValueError(f"TrainConfig.lr_decay_factor must lie in (0, 1), got {self.lr_decay_factor}")
        if self.lr <= 0 or self.reg < 0:
            raise ValueError("TrainConfig.lr must be > 0 and reg >= 0")
        metric, _, k = self.select_metric.partition("@")
        if metric not in RANKING_METRICS or not k.isdigit() or int(k) not in self.eval_ks:
            raise ValueError(f"select_metric {self.select_metric!r} must be METRIC@K with METRIC one of "
                             f"{', '.join(RANKING_METRICS)} (lower case) and K in eval_ks {self.eval_ks}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"TrainConfig.max_minutes must be positive or None, got {self.max_minutes}")
        if self.contrastive_weight < 0 or not self.contrastive_temperature > 0:
            raise ValueError(f"TrainConfig.contrastive_weight must be >= 0 and contrastive_temperature > 0, got "
                             f"{self.contrastive_weight} and {self.contrastive_temperature}")
        try:
            resolve_device(self.device)
        except GraphrecError as error:
            raise ValueError(str(error)) from None


@dataclass
class EpochRecord:
    epoch: int
    seconds: float
    loss: float
    valid: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "seconds": self.seconds, "loss": self.loss, "valid": self.valid}


@dataclass
class TrainResult:
    model: torch.nn.Module
    dataset: Dataset
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    stopped_reason: str = ""
    train_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    sampling: str = "full"
    distributed: dict[str, Any] | None = None
    is_main: bool = True


def ensure_validation_split(dataset: Dataset, seed: int, share: float = 0.1) -> tuple[Dataset, str | None]:
    """Return the dataset unchanged if it has validation interactions; else carve them out of training."""
    counts = dataset.split_counts()
    if counts["valid"] > 0:
        return dataset, None
    inter = dataset.interactions
    codes = inter["split"].cat.codes.to_numpy().copy()
    train_rows = np.flatnonzero(codes == TRAIN)
    rng = np.random.default_rng(seed)
    carved = split_random(inter["user"].to_numpy()[train_rows], (1.0 - share, share, 0.0), rng)
    codes[train_rows[carved == VALID]] = VALID
    new_inter = inter.copy()
    new_inter["split"] = pd.Categorical.from_codes(codes, dtype=SPLIT_DTYPE)
    carved_dataset = dataclasses.replace(dataset, interactions=new_inter)
    note = (f"the dataset has no validation split; carved {int((carved == VALID).sum()):,} training "
            f"interactions ({share:.0%} per user, seed {seed}) into validation for early stopping")
    return carved_dataset, note


EvaluateFn = Callable[[torch.nn.Module, Dataset, str], dict[str, float]]


def fit(model: torch.nn.Module, dataset: Dataset, config: TrainConfig, evaluate_fn: EvaluateFn,
        checkpoint_path: Path | None = None, resume: bool = False,
        log: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` with BPR on ``dataset``'s training split, selecting on validation.

    ``evaluate_fn(model, dataset, split)`` returns the metrics dict of one split; it is
    called with ``"valid"`` only. The returned model holds the best validation weights.
    """
    if config.deterministic:
        threads = torch.get_num_threads()
        on_cuda = resolve_device(config.device).type == "cuda"
        was_deterministic = torch.are_deterministic_algorithms_enabled()
        was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.set_num_threads(1)
        if on_cuda:
            # On CUDA the embedding backward scatter-adds with atomics, in a different order
            # on every run, unless deterministic kernels are asked for; cuBLAS needs a fixed
            # workspace for the same reason (read when its first handle is created).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            return fit(model, dataset, dataclasses.replace(config, deterministic=False), evaluate_fn,
                       checkpoint_path=checkpoint_path, resume=resume, log=log)
        finally:
            torch.set_num_threads(threads)
            if on_cuda:
                torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
    ctx = context_from_env(resolve_device(config.device))
    device = ctx.device
    if not ctx.is_main:
        log = _silent
    if dataset.split_counts()["valid"] == 0:
        raise GraphrecError(f"dataset {dataset.name!r} has no validation split, which model selection needs; "
                            f"carve one with ensure_validation_split(dataset, seed) before building the model "
                            f"(so that a graph model's edges exclude it), as graphrec.training.run.train does")
    model.to(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    users_np, items_np = dataset.pairs("train")
    train_users = torch.from_numpy(users_np)
    train_items = torch.from_numpy(items_np)
    negatives = NegativeSampler(train_users, train_items, dataset.num_items, candidates=train_items)
    if config.contrastive_weight > 0 and not getattr(model, "supports_alignment", False):
        raise GraphrecError(f"contrastive alignment needs a content model (gat or vbpr); "
                            f"{type(model).__name__} has no content to align")
    mode = choose_sampling(config, model, dataset, log)
    fanout = _fanout_for(model, config.fanout, log) if mode == "neighbor" else config.fanout
    neighbors = None
    if mode == "neighbor":
        neighbors = _neighbor_sampler(dataset, fanout, config.seed, choose_sampler_device(config, dataset, device, log))
    if ctx.enabled and len(train_users) < ctx.world_size:
        raise GraphrecError(f"{len(train_users):,} training interactions cannot be shared by {ctx.world_size} "
                            f"processes; train in one process")
    trained = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (adjacency, features, masks) are rebuilt from the same data on every rank; the sparse
        # ones cannot be broadcast at all, so DDP synchronises parameters only.
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [name for name, _ in model.named_buffers()])
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        log(f"distributed: {ctx.world_size} processes ({ctx.backend}); each trains on 1/{ctx.world_size} "
            f"of every batch of {config.batch_size}")
    sparse = config.sparse_embeddings if config.sparse_embeddings is not None else (
        mode == "neighbor" and not ctx.enabled)
    if sparse and mode != "neighbor":
        raise GraphrecError("sparse_embeddings needs neighbour sampling: full-graph propagation reads whole "
                            "embedding tables, whose gradients are dense")
    if sparse and ctx.enabled:
        raise GraphrecError("sparse_embeddings is not supported with distributed training (DDP averages "
                            "dense gradients); leave it unset")
    optimizer = make_optimizer(model, config.lr, sparse)
    if sparse:
        log("sparse embedding updates: each batch updates only the embedding rows it touched (lazy Adam)")

    state = _LoopState()
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        state = _load_checkpoint(checkpoint_path, model, optimizer, generator, neighbors)
        log(f"resumed from {checkpoint_path} after epoch {state.epoch}")
    notes = state.notes  # kept in the loop state, so that a checkpoint carries them

    budget = None if config.max_minutes is None else config.max_minutes * 60.0
    progress = _progress_bar(config, initial=state.epoch) if ctx.is_main else None
    stopped_reason = "completed all epochs"
    while state.epoch < config.epochs:
        if ctx.agree(budget is not None and state.train_seconds >= budget):
            stopped_reason = f"time budget of {config.max_minutes:g} minutes reached"
            break
        if ctx.agree(state.evals_without_improvement >= config.patience):
            stopped_reason = f"early stopping: no validation improvement in {config.patience} evaluations"
            break
        epoch = state.epoch + 1
        started = time.perf_counter()
        # Ranks must run the same number of steps, so a mid-epoch time-out applies to one process only.
        budget_left = None if budget is None or ctx.enabled else budget - state.train_seconds
        loss, out_of_time = _train_one_epoch(model, trained, optimizer, negatives, neighbors, train_users,
                                             train_items, generator, config, device, ctx, budget_left)
        seconds = time.perf_counter() - started
        loss = ctx.mean(loss)  # each rank's loss covers its own shard of every batch
        state.train_seconds += seconds
        record = EpochRecord(epoch=epoch, seconds=seconds, loss=loss)
        decay = False
        if ctx.is_main and (epoch % config.eval_every == 0 or epoch == config.epochs or out_of_time):
            record.valid = evaluate_fn(model, dataset, "valid")
            value = record.valid[config.select_metric]
            if value > state.best_value:
                state.best_value = value
                state.best_epoch = epoch
                state.best_valid = dict(record.valid)
                state.best_state = copy.deepcopy(model.state_dict())
                state.evals_without_improvement = 0
            else:
                state.evals_without_improvement += 1
                decay = bool(config.lr_decay_patience) and (
                    state.evals_without_improvement % config.lr_decay_patience == 0)
        # Only rank 0 evaluates, so every rank takes its decision.
        if config.lr_decay_patience and ctx.agree(decay):
            lr = _scale_learning_rate(optimizer, config.lr_decay_factor)
            log(f"epoch {epoch}: no validation improvement in {state.evals_without_improvement} "
                f"evaluations; learning rate now {lr:.3g}")
            notes.append(f"learning rate decayed to {lr:.3g} after epoch {epoch}")
        state.history.append(record)
        state.epoch = epoch
        if progress is None and record.valid is not None:
            log(f"epoch {epoch:>4}  loss {loss:.4f}  valid {config.select_metric} "
                f"{record.valid[config.select_metric]:.4f}  ({state.train_seconds:.0f} s training)")
        if progress is not None:
            progress.update(1)
            postfix = {"loss": f"{loss:.4f}"}
            if record.valid is not None:
                postfix[config.select_metric] = f"{record.valid[config.select_metric]:.4f}"
            progress.set_postfix(postfix)
        if checkpoint_path is not None and ctx.is_main:
            _save_checkpoint(checkpoint_path, model, optimizer, generator, state, neighbors)
        if out_of_time:
            stopped_reason = f"time budget of {config.max_minutes:g} minutes reached"
            break
    if progress is not None:
        progress.close()
    if ctx.enabled:
        checksums = ctx.gather_strings(parameter_checksum(model))
        notes.append(f"distributed over {ctx.world_size} processes ({ctx.backend}); final parameters "
                     f"{'identical' if len(set(checksums)) == 1 else 'DIFFER'} across ranks")
        state_distributed = {"world_size": ctx.world_size, "backend": ctx.backend, "rank_checksums": checksums,
                             "identical_across_ranks": len(set(checksums)) == 1}
    else:
        state_distributed = None
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    _set_sparse_embeddings(model, False)
    log(f"stopped: {stopped_reason}; best validation {config.select_metric} = {state.best_value:.4f} "
        f"at epoch {state.best_epoch}")
    return TrainResult(model=model, dataset=dataset, history=state.history, best_epoch=state.best_epoch,
                       best_valid=state.best_valid, stopped_reason=stopped_reason,
                       train_seconds=state.train_seconds, notes=notes, sampling=mode,
                       distributed=state_distributed, is_main=ctx.is_main)


def choose_sampling(config: TrainConfig, model: torch.nn.Module, dataset: Dataset,
                    log: Callable[[str], None]) -> str:
    """``full`` or ``neighbor``; ``auto`` takes full-graph training when its activations fit
    comfortably in memory, else neighbour sampling (for models that support it)."""
    supports = getattr(model, "supports_subgraphs", False)
    if config.sampling == "neighbor" and not supports:
        raise GraphrecError(f"{type(model).__name__} does not train on sampled subgraphs; use --sampling full")
    if config.sampling != "auto":
        return config.sampling
    estimate = full_graph_bytes(model, dataset)
    available = _available_memory(resolve_device(config.device))
    mode = "full" if not supports or estimate < 0.5 * available else "neighbor"
    log(f"sampling auto: full-graph training needs about {estimate / 2**30:.2f} GiB of "
        f"{available / 2**30:.1f} GiB available: chose {mode}")
    return mode


def full_graph_bytes(model: torch.nn.Module, dataset: Dataset) -> int:
    """Rough peak memory of one full-graph step: every layer's activations and their gradients,
    the parameters with Adam's two moments, and the adjacency."""
    nodes = dataset.num_users + dataset.num_items
    dim = int(getattr(model, "dim", 64))
    layers = int(getattr(model, "num_layers", 1))
    edges = 2 * dataset.split_counts()["train"]
    estimate = 4 * nodes * dim * (2 * (layers + 1) + 4) + 12 * edges
    heads = int(getattr(model, "heads", 0))
    if heads:  # attention keeps per-edge scores, coefficients and their gradients for every layer
        estimate += 4 * edges * heads * 6 * layers
    return estimate


def choose_sampler_device(config: TrainConfig, dataset: Dataset, device: torch.device,
                          log: Callable[[str], None]) -> torch.device:
    """Where neighbour sampling runs (``config.sample_on``); ``auto`` says what it chose."""
    cpu = torch.device("cpu")
    if device.type == "cpu":
        return cpu
    if config.sample_on != "auto":
        chosen = device if config.sample_on == "device" else cpu
        log(f"neighbour sampling on {chosen} (sample_on={config.sample_on!r})")
        return chosen
    need = sampler_bytes(dataset)
    available = _available_memory(device)
    chosen = device if need < 0.25 * available else cpu
    log(f"neighbour sampling on {chosen}: its graph arrays take about {need / 2**30:.2f} GiB of "
        f"{available / 2**30:.1f} GiB free on {device}")
    return chosen


def sampler_bytes(dataset: Dataset) -> int:
    """Memory of the neighbour sampler's graph: per direction of the interactions, a CSC pointer
    per node plus a source id and an edge id per edge, all int64."""
    edges = dataset.split_counts()["train"]
    return 8 * (4 * edges + dataset.num_users + dataset.num_items + 2)


def _available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    import psutil

    return int(psutil.virtual_memory().available)


def _fanout_for(model: torch.nn.Module, fanout: tuple[int, ...], log: Callable[[str], None]) -> tuple[int, ...]:
    """One fan-out per propagation layer: fewer would leave the deeper layers without sampled
    edges (silently wrong embeddings), so that is an error; extra hops are dropped."""
    layers = getattr(model, "num_layers", None)
    if layers is None or len(fanout) == layers:
        return fanout
    if len(fanout) < layers:
        raise GraphrecError(f"--fanout {','.join(map(str, fanout))} samples {len(fanout)} hop(s) but the model "
                            f"propagates over {layers} layers; give one fan-out per layer")
    log(f"fan-out {','.join(map(str, fanout))} has more hops than the model's {layers} layers: "
        f"sampling {','.join(map(str, fanout[:layers]))}")
    return fanout[:layers]


def _neighbor_sampler(dataset: Dataset, fanout: tuple[int, ...], seed: int, device: torch.device):
    from graphrec.graph import GraphConfig, build_graph
    from graphrec.sampling import make_neighbor_sampler

    graph = build_graph(dataset, GraphConfig(entities=(), modalities=()))
    return make_neighbor_sampler(graph, list(fanout), seed=seed, device=device)


def _train_one_epoch(model, trained, optimizer, negatives: NegativeSampler, neighbors, train_users: torch.Tensor,
                     train_items: torch.Tensor, generator: torch.Generator, config: TrainConfig,
                     device: torch.device, ctx: DistributedContext,
                     budget_left: float | None) -> tuple[float, bool]:
    """One pass over the training interactions. Every rank draws the same permutation and
    negatives (same generator) and takes its own slice of each global batch."""
    model.train()
    order = torch.randperm(len(train_users), generator=generator)
    users_all = train_users[order]
    positives_all = train_items[order]
    per_pair = config.num_negatives
    negatives_all = negatives.sample(users_all.repeat_interleave(per_pair), generator=generator).view(-1, per_pair)
    if neighbors is None:
        # One copy per epoch rather than three small ones per step: on a GPU, per-step host
        # transfers and reading the loss back each stall the queue of kernels.
        users_all, positives_all, negatives_all = (t.to(device) for t in (users_all, positives_all, negatives_all))
    total, batches = torch.zeros((), device=device), 0
    started = time.perf_counter()
    world = ctx.world_size
    step = max(config.batch_size // world, 1) * world
    for start in range(0, len(order), step):
        size = min(step, len(order) - start)
        if size < world:  # every rank needs a row: a remainder smaller than the world is left out
            break
        # Rank k takes rows [k*size/W, (k+1)*size/W) of the global batch: equal shares of a full
        # batch, near-equal ones of the last.
        window = slice(start + ctx.rank * size // world, start + (ctx.rank + 1) * size // world)
        share = (window.stop - window.start) * world / size
        users, positives = users_all[window], positives_all[window]
        negative_items = negatives_all[window].reshape(-1)
        if per_pair > 1:
            users, positives = users.repeat_interleave(per_pair), positives.repeat_interleave(per_pair)
        if neighbors is None:
            user_emb, item_emb = trained()
            u, p, n = users, positives, negative_items
        else:
            from graphrec.sampling import bpr_subgraph

            # Seeds enter PyG's sampler interface on the CPU, where these indices still are; the
            # subgraph comes back on the sampler's device.
            batch = bpr_subgraph(neighbors, users, positives, negative_items)
            user_emb, item_emb = trained(batch.data.to(device))
            u, p, n = batch.users.to(device), batch.pos.to(device), batch.neg.to(device)
            users, positives, negative_items = users.to(device), positives.to(device), negative_items.to(device)
        loss = bpr_loss(model.score(user_emb, item_emb, u, p), model.score(user_emb, item_emb, u, n))
        if config.reg > 0:
            loss = loss + config.reg * model.regularization(users, positives, negative_items)
        if config.contrastive_weight > 0:
            loss = loss + config.contrastive_weight * model.alignment_loss(
                torch.unique(positives), config.contrastive_temperature)
        if share != 1.0:
            # DDP averages the ranks' gradients; weighting each rank's mean by its share of the
            # batch makes that average the gradient of the whole batch's mean, as in one process.
            loss = loss * share
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        batches += 1
        if budget_left is not None and time.perf_counter() - started >= budget_left:
            return float(total) / batches, True
    return float(total) / max(batches, 1), False


class _EmbeddingsAndDenseOptimizer:
    """Lazy Adam for the embedding tables plus Adam for every other parameter, behind one
    ``zero_grad`` / ``step`` / ``state_dict`` (PyTorch has no container for two optimisers)."""

    def __init__(self, sparse: torch.optim.Optimizer, dense: torch.optim.Optimizer | None) -> None:
        self.optimizers = [opt for opt in (sparse, dense) if opt is not None]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": [optimizer.state_dict() for optimizer in self.optimizers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state.get("optimizers", ())) != len(self.optimizers):
            raise ValueError("the checkpoint's optimiser does not match this run's (sparse_embeddings differs)")
        for optimizer, part in zip(self.optimizers, state["optimizers"]):
            optimizer.load_state_dict(part)


def _scale_learning_rate(optimizer, factor: float) -> float:
    """Multiply every parameter group's learning rate by ``factor``; returns the new rate."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
    return float(optimizer.param_groups[0]["lr"])


def _set_sparse_embeddings(model: torch.nn.Module, sparse: bool) -> list[torch.nn.Parameter]:
    tables = [module for module in model.modules() if isinstance(module, torch.nn.Embedding)]
    for table in tables:
        table.sparse = sparse
    return [table.weight for table in tables]


def make_optimizer(model: torch.nn.Module, lr: float, sparse_embeddings: bool = False):
    """Adam over every parameter; with ``sparse_embeddings``, the model's ``nn.Embedding`` tables
    produce sparse gradients and get :class:`~graphrec.training.lazy_adam.LazyAdam` (rows a batch
    did not touch keep their value and their moments), the other parameters plain Adam."""
    if not sparse_embeddings:
        _set_sparse_embeddings(model, False)
        return torch.optim.Adam(model.parameters(), lr=lr)
    tables = _set_sparse_embeddings(model, True)
    table_ids = {id(weight) for weight in tables}
    others = [p for p in model.parameters() if id(p) not in table_ids and p.requires_grad]
    return _EmbeddingsAndDenseOptimizer(LazyAdam(tables, lr=lr),
                                        torch.optim.Adam(others, lr=lr) if others else None)


def _silent(_: str) -> None:
    """Log sink of ranks other than 0."""


@dataclass
class _LoopState:
    epoch: int = 0
    train_seconds: float = 0.0
    best_value: float = -math.inf
    best_epoch: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    evals_without_improvement: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _save_checkpoint(path: Path, model, optimizer, generator: torch.Generator, state: _LoopState,
                     neighbors=None) -> None:
    sampler_generator = _sampler_generator(neighbors)
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
        "sampling": "full" if neighbors is None else "neighbor",
        # torch's own sampler draws from its generator; PyG's (pyg-lib) from torch's global one, saved above
        "sampler_generator": None if sampler_generator is None else sampler_generator.get_state(),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def _sampler_generator(neighbors) -> torch.Generator | None:
    return getattr(neighbors, "generator", None)


def _load_checkpoint(path: Path, model, optimizer, generator: torch.Generator, neighbors=None) -> _LoopState:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    sampling = "full" if neighbors is None else "neighbor"
    if payload.get("sampling", sampling) != sampling:
        raise GraphrecError(f"cannot resume from {path}: it was trained with {payload['sampling']} sampling and "
                            f"this run uses {sampling}")
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, ValueError, RuntimeError) as exc:
        raise GraphrecError(f"cannot resume from {path}: it was written by a different model or training "
                            f"setup ({str(exc).splitlines()[0]}); train without --resume to start over") from None
    generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    sampler_state = payload.get("sampler_generator")
    sampler_generator = _sampler_generator(neighbors)
    if sampler_state is not None and sampler_generator is not None:
        sampler_generator.set_state(sampler_state)
    return _LoopState(
        epoch=payload["epoch"], train_seconds=payload["train_seconds"], best_value=payload["best_value"],
        best_epoch=payload["best_epoch"], best_valid=payload["best_valid"], best_state=payload["best_state"],
        evals_without_improvement=payload["evals_without_improvement"],
        history=[EpochRecord(**record) for record in payload["history"]], notes=list(payload.get("notes", [])))


def _progress_bar(config: TrainConfig, initial: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=config.epochs, initial=initial, desc="train", unit="epoch", dynamic_ncols=True)


def save_metrics(path: Path, payload: dict[str, Any]) -> None:
    """Write ``metrics.json`` atomically."""
    write_json(path, payload)

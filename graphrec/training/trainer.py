"""The BPR training loop, model-agnostic: it speaks only the :class:`~graphrec.models.base.Recommender`
interface.

:func:`fit` takes batches from a :mod:`~graphrec.training.batches` source and applies
:func:`~graphrec.training.step.bpr_step` to each. After every ``eval_every`` epochs the model is
scored on the **validation** split (never the test split); the best validation state is kept,
training stops after ``patience`` evaluations without improvement or when the time budget runs
out, and the best state is what gets tested.

A checkpoint written after each epoch (:mod:`~graphrec.training.checkpoint`) holds the model,
the optimiser and every random-number state, so a resumed run ends identical to an
uninterrupted one. With several CPU threads, MKL may split reductions differently from run to
run (its thread count adapts to load), which changes results in the last bits;
``deterministic=True`` trains on one intra-op thread, which made runs and resumes bit-identical
on the CPU in every run on the 2-core machines here; on a 16-core machine running eight such
trainings at once, 3 of 17 resumes ended an epoch one float32 rounding step off, so count on CPU
results repeating to float32 rounding, and usually exactly. On CUDA it also asks for PyTorch's
deterministic kernels, so losses and metrics repeat exactly; the parameters repeat to float32
rounding only, since cuSPARSE's products are outside PyTorch's deterministic switch.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphrec.data.dataset import Dataset
from graphrec.data.holdout import ensure_validation_split
from graphrec.device import resolve_device
from graphrec.errors import GraphrecError, Interrupted, TrainingDiverged
from graphrec.models.base import Recommender
from graphrec.training.batches import BatchSource, SampledBatches, interaction_sampler
from graphrec.training.checkpoint import EpochRecord, LoopState, load_checkpoint, save_checkpoint
from graphrec.training.config import TrainConfig
from graphrec.training.distributed import DistributedContext, context_from_env, parameter_checksum
from graphrec.training.memory import choose_sampler_device, choose_sampling, fanout_for
from graphrec.training.negatives import NegativeSampler
from graphrec.training.optim import Optimizer, make_optimizer, scale_learning_rate, set_sparse_embeddings
from graphrec.training.step import bpr_step

Log = Callable[[str], None]
EvaluateFn = Callable[[Recommender, Dataset, str], dict[str, float]]


@dataclass(frozen=True)
class EpochReport:
    """What :func:`fit` tells its observers after each epoch: the epoch's mean loss, its wall time,
    the learning rate it trained with, and the validation metrics when it was evaluated (``None``
    otherwise). Experiment tracking (:mod:`~graphrec.training.tracking`) and pruning of search
    trials (:mod:`~graphrec.training.tune`) read these; neither lives in the loop."""

    epoch: int
    loss: float
    lr: float
    seconds: float
    valid: dict[str, float] | None = None


#: Called by :func:`fit` on the main process after every epoch. It may raise to stop training
#: (a pruned search trial does); the exception propagates out of :func:`fit`.
Observer = Callable[[EpochReport], None]


@dataclass
class TrainResult:
    model: Recommender
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
    #: Epochs after which the learning rate decayed, up to the best epoch: the schedule a refit repeats.
    lr_decay_epochs: list[int] = field(default_factory=list)


def fit(model: Recommender, dataset: Dataset, config: TrainConfig, evaluate_fn: EvaluateFn,
        checkpoint_path: Path | None = None, resume: bool = False, log: Log = print,
        observers: Sequence[Observer] = ()) -> TrainResult:
    """Train ``model`` with BPR on ``dataset``'s training split, selecting on validation.

    ``evaluate_fn(model, dataset, split)`` returns the metrics dict of one split; it is
    called with ``"valid"`` only. The returned model holds the best validation weights.
    Each of ``observers`` receives an :class:`EpochReport` after every epoch (main process only).
    """
    check_trainable(model, dataset, config)
    device = resolve_device(config.device)
    with _deterministic(config.deterministic, device):
        ctx, generator, batches, forward, optimizer = _setup(model, dataset, config, device, log)
        log = log if ctx.is_main else _silent
        state = LoopState()
        if resume and checkpoint_path is not None and checkpoint_path.exists():
            state = load_checkpoint(checkpoint_path, model, optimizer, generator, batches.sampler_generator,
                                    batches.sampling)
            log(f"resumed from {checkpoint_path} after epoch {state.epoch}")
        progress = _progress_bar(config, initial=state.epoch) if ctx.is_main else None
        stopped_reason = "completed all epochs"
        budget = None if config.max_minutes is None else config.max_minutes * 60.0
        saved_epoch = state.epoch  # what the checkpoint on disk holds
        try:
            while state.epoch < config.epochs:
                stop = _stop_reason(state, config, budget, ctx)
                if stop:
                    stopped_reason = stop
                    break
                # Ranks must run the same number of steps, so a mid-epoch time-out applies to one process only.
                budget_left = None if budget is None or ctx.enabled else budget - state.train_seconds
                started = time.perf_counter()
                try:
                    loss, out_of_time = train_one_epoch(model, forward, optimizer, batches.epoch(generator), config,
                                                        budget_left)
                except TrainingDiverged as exc:
                    raise TrainingDiverged(f"epoch {state.epoch + 1}: {exc}; {_kept(checkpoint_path, saved_epoch)}; "
                                           f"lower the learning rate (it is {config.lr:g})") from None
                record = EpochRecord(epoch=state.epoch + 1, seconds=time.perf_counter() - started,
                                     loss=ctx.mean(loss))
                _end_epoch(record, state, model, optimizer, dataset, config, evaluate_fn, ctx, log, out_of_time)
                _report(record, state, config, progress, log)
                if ctx.is_main:
                    report = EpochReport(epoch=record.epoch, loss=record.loss, lr=_learning_rate(optimizer),
                                         seconds=record.seconds, valid=record.valid)
                    for observer in observers:
                        observer(report)
                if checkpoint_path is not None and ctx.is_main:
                    save_checkpoint(checkpoint_path, model, optimizer, generator, state, batches.sampler_generator,
                                    batches.sampling)
                    saved_epoch = state.epoch
                if out_of_time:
                    stopped_reason = f"time budget of {config.max_minutes:g} minutes reached"
                    break
        except KeyboardInterrupt:
            if progress is not None:
                progress.close()
            raise Interrupted(f"training interrupted during epoch {saved_epoch + 1}",
                              _kept(checkpoint_path, saved_epoch),
                              resumable=checkpoint_path is not None and saved_epoch > 0) from None
        if progress is not None:
            progress.close()
        distributed = _compare_ranks(model, ctx, state.notes)
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        set_sparse_embeddings(model, False)
    log(f"stopped: {stopped_reason}; best validation {config.select_metric} = {state.best_value:.4f} "
        f"at epoch {state.best_epoch}")
    return TrainResult(model=model, dataset=dataset, history=state.history, best_epoch=state.best_epoch,
                       best_valid=state.best_valid, stopped_reason=stopped_reason,
                       train_seconds=state.train_seconds, notes=state.notes, sampling=batches.sampling,
                       distributed=distributed, is_main=ctx.is_main,
                       lr_decay_epochs=[epoch for epoch in state.lr_decay_epochs if epoch <= state.best_epoch])


def check_trainable(model: Recommender, dataset: Dataset, config: TrainConfig) -> None:
    """Raise what :func:`fit` would refuse before its first step (no validation split, a model
    that cannot sample, a fan-out that does not match the layers, sparse updates without sampling,
    alignment without content), without training: a run directory is made only for a run that can start."""
    if not model.trained_by_gradient:
        raise GraphrecError(f"model {model.name!r} is not trained by gradient descent: it is ready once built")
    if dataset.split_counts()["valid"] == 0:
        raise GraphrecError(f"dataset {dataset.name!r} has no validation split, which model selection needs, and "
                            f"none could be carved from its training split; convert it again with a split that "
                            f"makes one (random or leave-last)")
    if config.contrastive_weight > 0 and not model.supports_alignment:
        raise GraphrecError(f"contrastive alignment needs a content model; model {model.name!r} has no content "
                            f"to align")
    sampling = choose_sampling(config, model, dataset, resolve_device(config.device), _silent)
    if sampling == "neighbor":
        fanout_for(model, config.fanout, _silent)
    elif config.sparse_embeddings:
        raise GraphrecError("sparse_embeddings needs neighbour sampling: full-graph propagation reads whole "
                            "embedding tables, whose gradients are dense")


def _kept(checkpoint_path: Path | None, saved_epoch: int) -> str:
    if checkpoint_path is None:
        return "nothing was saved (no checkpoint path)"
    if saved_epoch == 0:
        return "no epoch had finished, so there is no checkpoint"
    return f"{checkpoint_path} holds epoch {saved_epoch}"


def refit(model: Recommender, dataset: Dataset, config: TrainConfig, epochs: int,
          lr_decay_epochs: Sequence[int] = (), log: Log = print) -> TrainResult:
    """Train ``model`` on all of ``dataset``'s training split for a fixed schedule chosen before (on
    validation, by :func:`fit`): ``epochs`` epochs, the learning rate scaled by ``lr_decay_factor``
    after each of ``lr_decay_epochs``. Nothing is evaluated and nothing stops it early: the refit
    protocol runs it on train + valid, where no validation split is left to select on."""
    if not model.trained_by_gradient:
        raise GraphrecError(f"model {model.name!r} is not trained by gradient descent: it is ready once built")
    device = resolve_device(config.device)
    with _deterministic(config.deterministic, device):
        ctx, generator, batches, forward, optimizer = _setup(model, dataset, config, device, log)
        log = log if ctx.is_main else _silent
        history: list[EpochRecord] = []
        notes: list[str] = []
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            loss, _ = train_one_epoch(model, forward, optimizer, batches.epoch(generator), config)
            history.append(EpochRecord(epoch=epoch, seconds=time.perf_counter() - started, loss=ctx.mean(loss)))
            if epoch in lr_decay_epochs:
                notes.append(f"learning rate decayed to {scale_learning_rate(optimizer, config.lr_decay_factor):.3g} "
                             f"after epoch {epoch}")
        distributed = _compare_ranks(model, ctx, notes)
        set_sparse_embeddings(model, False)
    log(f"refit: {epochs} epochs on {dataset.split_counts()['train']:,} interactions")
    return TrainResult(model=model, dataset=dataset, history=history, best_epoch=epochs,
                       stopped_reason=f"refit for the selected {epochs} epochs",
                       train_seconds=sum(record.seconds for record in history), notes=notes,
                       sampling=batches.sampling, distributed=distributed, is_main=ctx.is_main,
                       lr_decay_epochs=list(lr_decay_epochs))


def _setup(model: Recommender, dataset: Dataset, config: TrainConfig, device: torch.device, log: Log,
           ) -> tuple[DistributedContext, torch.Generator, BatchSource, Callable[..., Any], Optimizer]:
    """What both :func:`fit` and :func:`refit` train with, seeded the same way."""
    ctx = context_from_env(device)
    log = log if ctx.is_main else _silent
    model.to(ctx.device)
    torch.manual_seed(config.seed)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    batches = _batch_source(model, dataset, config, ctx, log)
    forward = _distribute(model, ctx, config, log)
    optimizer = _optimizer(model, config, batches, ctx, log)
    return ctx, generator, batches, forward, optimizer


def train_one_epoch(model: Recommender, forward: Callable[..., Any], optimizer: Optimizer,
                    batches: Iterator[Any], config: TrainConfig, budget_left: float | None = None,
                    ) -> tuple[float, bool]:
    """:func:`~graphrec.training.step.bpr_step` over one epoch of ``batches``; returns the mean loss
    and whether the time budget ran out mid-epoch."""
    model.train()
    total, count = None, 0
    losses = []
    started = time.perf_counter()
    out_of_time = False
    for batch in batches:
        loss = bpr_step(model, batch, optimizer, reg=config.reg, contrastive_weight=config.contrastive_weight,
                        contrastive_temperature=config.contrastive_temperature, forward=forward)
        # summed on the device: reading each loss back would stall a GPU's queue of kernels
        total = loss if total is None else total + loss
        losses.append(loss.detach())
        count += 1
        if budget_left is not None and time.perf_counter() - started >= budget_left:
            out_of_time = True
            break
    mean = 0.0 if total is None else float(total) / count
    if not math.isfinite(mean):
        step = int(torch.nonzero(~torch.isfinite(torch.stack(losses)))[0, 0]) + 1
        raise TrainingDiverged(f"the training loss became {float(losses[step - 1])} at step {step} of {count}")
    return mean, out_of_time


@contextlib.contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """One intra-op thread, and on CUDA deterministic kernels, for the duration of training."""
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    on_cuda = device.type == "cuda"
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(1)
    if on_cuda:
        # On CUDA the embedding backward scatter-adds with atomics, in a different order on every
        # run, unless deterministic kernels are asked for; cuBLAS needs a fixed workspace for the
        # same reason (read when its first handle is created).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if on_cuda:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def _batch_source(model: Recommender, dataset: Dataset, config: TrainConfig, ctx: DistributedContext,
                  log: Log) -> BatchSource:
    users_np, items_np = dataset.pairs("train")
    train_users, train_items = torch.from_numpy(users_np), torch.from_numpy(items_np)
    if config.contrastive_weight > 0 and not model.supports_alignment:
        raise GraphrecError(f"contrastive alignment needs a content model; model {model.name!r} has no content "
                            f"to align")
    if ctx.enabled and len(train_users) < ctx.world_size:
        raise GraphrecError(f"{len(train_users):,} training interactions cannot be shared by {ctx.world_size} "
                            f"processes; train in one process")
    negatives = NegativeSampler(train_users, train_items, dataset.num_items, candidates=train_items)
    common = (train_users, train_items, negatives, config.batch_size, config.num_negatives, ctx.device, ctx)
    if choose_sampling(config, model, dataset, ctx.device, log) == "full":
        return BatchSource(*common)
    sampler = interaction_sampler(dataset, fanout_for(model, config.fanout, log), config.seed,
                                  choose_sampler_device(config, dataset, ctx.device, log))
    return SampledBatches(sampler, *common)


def _distribute(model: Recommender, ctx: DistributedContext, config: TrainConfig, log: Log) -> Callable[..., Any]:
    """What computes the embeddings: the model, or its DDP wrapper with several processes."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # Buffers (adjacency, features, masks) are rebuilt from the same data on every rank; the sparse
    # ones cannot be broadcast at all, so DDP synchronises parameters only.
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
        model, [name for name, _ in model.named_buffers()])
    log(f"distributed: {ctx.world_size} processes ({ctx.backend}); each trains on 1/{ctx.world_size} "
        f"of every batch of {config.batch_size}")
    return DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)


def _optimizer(model: Recommender, config: TrainConfig, batches: BatchSource, ctx: DistributedContext,
               log: Log) -> Optimizer:
    sampled = batches.sampling == "neighbor"
    sparse = config.sparse_embeddings if config.sparse_embeddings is not None else (sampled and not ctx.enabled)
    if sparse and not sampled:
        raise GraphrecError("sparse_embeddings needs neighbour sampling: full-graph propagation reads whole "
                            "embedding tables, whose gradients are dense")
    if sparse and ctx.enabled:
        raise GraphrecError("sparse_embeddings is not supported with distributed training (DDP averages "
                            "dense gradients); leave it unset")
    if sparse:
        log("sparse embedding updates: each batch updates only the embedding rows it touched (lazy Adam)")
    return make_optimizer(model, config.lr, bool(sparse))


def _stop_reason(state: LoopState, config: TrainConfig, budget: float | None, ctx: DistributedContext) -> str:
    if ctx.agree(budget is not None and state.train_seconds >= budget):
        return f"time budget of {config.max_minutes:g} minutes reached"
    if ctx.agree(state.evals_without_improvement >= config.patience):
        return f"early stopping: no validation improvement in {config.patience} evaluations"
    return ""


def _end_epoch(record: EpochRecord, state: LoopState, model: Recommender, optimizer: Optimizer, dataset: Dataset,
               config: TrainConfig, evaluate_fn: EvaluateFn, ctx: DistributedContext, log: Log,
               out_of_time: bool) -> None:
    """Validate when due, keep the best state, decay the learning rate, and record the epoch."""
    epoch = record.epoch
    state.train_seconds += record.seconds
    decay = False
    if ctx.is_main and (epoch % config.eval_every == 0 or epoch == config.epochs or out_of_time):
        record.valid = evaluate_fn(model, dataset, "valid")
        value = record.valid[config.select_metric]
        if value > state.best_value:
            state.best_value, state.best_epoch = value, epoch
            state.best_valid = dict(record.valid)
            state.best_state = copy.deepcopy(model.state_dict())
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
            decay = config.lr_decay_patience is not None and (
                state.evals_without_improvement % config.lr_decay_patience == 0)
    # Only rank 0 evaluates, so every rank takes its decision.
    if config.lr_decay_patience and ctx.agree(decay):
        lr = scale_learning_rate(optimizer, config.lr_decay_factor)
        log(f"epoch {epoch}: no validation improvement in {state.evals_without_improvement} "
            f"evaluations; learning rate now {lr:.3g}")
        state.notes.append(f"learning rate decayed to {lr:.3g} after epoch {epoch}")
        state.lr_decay_epochs.append(epoch)
    state.history.append(record)
    state.epoch = epoch


def _report(record: EpochRecord, state: LoopState, config: TrainConfig, progress: Any, log: Log) -> None:
    metric = config.select_metric
    if progress is None:
        if record.valid is not None:
            log(f"epoch {record.epoch:>4}  loss {record.loss:.4f}  valid {metric} {record.valid[metric]:.4f}  "
                f"({state.train_seconds:.0f} s training)")
        return
    progress.update(1)
    postfix = {"loss": f"{record.loss:.4f}"}
    if record.valid is not None:
        postfix[metric] = f"{record.valid[metric]:.4f}"
    progress.set_postfix(postfix)


def _learning_rate(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def _compare_ranks(model: Recommender, ctx: DistributedContext, notes: list[str]) -> dict[str, Any] | None:
    """With several processes: whether every rank ended with the same parameters."""
    if not ctx.enabled:
        return None
    checksums = ctx.gather_strings(parameter_checksum(model))
    identical = len(set(checksums)) == 1
    notes.append(f"distributed over {ctx.world_size} processes ({ctx.backend}); final parameters "
                 f"{'identical' if identical else 'DIFFER'} across ranks")
    return {"world_size": ctx.world_size, "backend": ctx.backend, "rank_checksums": checksums,
            "identical_across_ranks": identical}


def _progress_bar(config: TrainConfig, initial: int) -> Any:
    if not config.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=config.epochs, initial=initial, desc="train", unit="epoch", dynamic_ncols=True)


def _silent(_: str) -> None:
    """Log sink of ranks other than 0."""


__all__ = ["EpochRecord", "EpochReport", "EvaluateFn", "Observer", "TrainConfig", "TrainResult", "check_trainable",
           "ensure_validation_split", "fit", "refit", "train_one_epoch"]

"""Batch sources: what one BPR step needs, for full-graph and for neighbour-sampled training.

One epoch visits every training interaction once, in a seeded random order, with
``num_negatives`` uniform negatives per interaction. With several processes each global batch
is split over the ranks, the last one unevenly with each rank's loss weighted by its share, so
that an epoch takes the same steps as in one process (only a final remainder smaller than the
number of processes is left out). Every rank draws the same permutation and negatives (same
generator) and takes its own slice of each global batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import BaseSampler

from graphrec.data.dataset import Dataset
from graphrec.training.distributed import DistributedContext
from graphrec.training.negatives import NegativeSampler


@dataclass(frozen=True)
class TrainBatch:
    """BPR triples on the training device: ``users``, ``positives`` and ``negatives`` are global
    ids (``[B * K]`` each, a pair repeated once per negative), which the regulariser and the
    alignment loss read. ``subgraph`` is the sampled computation graph (``None``: full-graph), and
    ``local`` the triples' rows in the model's output on it (``None``: the global ids are the rows).
    ``share`` weights this rank's loss when a global batch was split unevenly."""

    users: Tensor
    positives: Tensor
    negatives: Tensor
    subgraph: HeteroData | None = None
    local: tuple[Tensor, Tensor, Tensor] | None = None
    share: float = 1.0

    @property
    def rows(self) -> tuple[Tensor, Tensor, Tensor]:
        """Rows of the user, positive and negative items in the embeddings the model returns."""
        return self.local if self.local is not None else (self.users, self.positives, self.negatives)


class BatchSource:
    """Full-graph batches; :class:`SampledBatches` adds a sampled subgraph to each."""

    sampling = "full"

    def __init__(self, train_users: Tensor, train_items: Tensor, negatives: NegativeSampler, batch_size: int,
                 num_negatives: int, device: torch.device, ctx: DistributedContext | None = None) -> None:
        self.train_users, self.train_items = train_users, train_items
        self.negatives = negatives
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.device = device
        self.rank = 0 if ctx is None else ctx.rank
        self.world_size = 1 if ctx is None else ctx.world_size

    @property
    def sampler_generator(self) -> torch.Generator | None:
        """The random state a checkpoint must save besides the trainer's (none for full-graph)."""
        return None

    def epoch(self, generator: torch.Generator) -> Iterator[TrainBatch]:
        """This rank's batches of one epoch, drawn from ``generator``: the order and the negatives of
        the whole epoch are drawn now, each batch (and its subgraph) when it is taken."""
        order = torch.randperm(len(self.train_users), generator=generator)
        users_all, positives_all = self.train_users[order], self.train_items[order]
        per_pair = self.num_negatives
        negatives_all = self.negatives.sample(users_all.repeat_interleave(per_pair),
                                              generator=generator).view(-1, per_pair)
        return self._batches(*self._prepare(users_all, positives_all, negatives_all))

    def _batches(self, users_all: Tensor, positives_all: Tensor, negatives_all: Tensor) -> Iterator[TrainBatch]:
        world, per_pair = self.world_size, self.num_negatives
        step = max(self.batch_size // world, 1) * world
        for start in range(0, len(users_all), step):
            size = min(step, len(users_all) - start)
            if size < world:  # every rank needs a row: a remainder smaller than the world is left out
                break
            # Rank k takes rows [k*size/W, (k+1)*size/W) of the global batch: equal shares of a full
            # batch, near-equal ones of the last.
            window = slice(start + self.rank * size // world, start + (self.rank + 1) * size // world)
            share = (window.stop - window.start) * world / size
            users, positives = users_all[window], positives_all[window]
            negative_items = negatives_all[window].reshape(-1)
            if per_pair > 1:
                users, positives = users.repeat_interleave(per_pair), positives.repeat_interleave(per_pair)
            yield self._batch(users, positives, negative_items, share)

    def _prepare(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # One copy per epoch rather than three small ones per step: on a GPU, per-step host
        # transfers stall the queue of kernels.
        return users.to(self.device), positives.to(self.device), negatives.to(self.device)

    def _batch(self, users: Tensor, positives: Tensor, negatives: Tensor, share: float) -> TrainBatch:
        return TrainBatch(users, positives, negatives, share=share)


class SampledBatches(BatchSource):
    """Batches with the neighbour-sampled computation graph of their users and items."""

    sampling = "neighbor"

    def __init__(self, sampler: BaseSampler, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sampler = sampler

    @property
    def sampler_generator(self) -> torch.Generator | None:
        return getattr(self.sampler, "generator", None)  # graphrec's sampler has one; PyG's uses torch's

    def _prepare(self, users: Tensor, positives: Tensor, negatives: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # Seeds enter PyG's sampler interface on the CPU, where these indices stay.
        return users, positives, negatives

    def _batch(self, users: Tensor, positives: Tensor, negatives: Tensor, share: float) -> TrainBatch:
        from graphrec.sampling import bpr_subgraph

        # The subgraph comes back on the sampler's device; the model's may differ.
        sampled = bpr_subgraph(self.sampler, users, positives, negatives)
        device = self.device
        return TrainBatch(users.to(device), positives.to(device), negatives.to(device),
                          subgraph=sampled.data.to(device),
                          local=(sampled.users.to(device), sampled.pos.to(device), sampled.neg.to(device)),
                          share=share)


def interaction_sampler(dataset: Dataset, fanout: tuple[int, ...], seed: int,
                        device: torch.device | str = "cpu") -> BaseSampler:
    """A neighbour sampler over the training interactions alone (both directions): what
    :class:`SampledBatches` draws from; side entities and modalities reach models as features."""
    from graphrec.graph import GraphConfig, build_graph
    from graphrec.sampling import make_neighbor_sampler

    graph = build_graph(dataset, GraphConfig(entities=(), modalities=(), user_entities=(), user_modalities=()))
    return make_neighbor_sampler(graph, list(fanout), seed=seed, device=device)

"""One BPR optimisation step, the unit that the trainer and the benchmarks share."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.models.base import Recommender
from graphrec.training.batches import TrainBatch
from graphrec.training.bpr import bpr_loss
from graphrec.training.optim import Optimizer


def bpr_step(model: Recommender, batch: TrainBatch, optimizer: Optimizer, *, reg: float = 0.0,
             contrastive_weight: float = 0.0, contrastive_temperature: float = 0.2,
             forward: Callable[[HeteroData | None], tuple[Tensor, Tensor]] | None = None,
             phase: Callable[[str], None] | None = None) -> Tensor:
    r"""Forward, loss, backward and optimiser step on one batch; returns the (detached) loss

    .. math::
        \mathcal{L} = s \Big( \mathrm{BPR} + \mathcal{A} + \lambda\, \mathcal{R}
        + w\, \mathcal{L}_{\mathrm{InfoNCE}} \Big),

    with :math:`\mathcal{A}` the model's own terms (:meth:`~graphrec.models.base.Recommender.auxiliary_loss`,
    weighted by the model), :math:`\mathcal{R}` the model's
    :meth:`~graphrec.models.base.Recommender.regularization` (weight ``reg``), the alignment loss over
    the batch's distinct positives (weight ``contrastive_weight``) and :math:`s` the batch's ``share``.
    ``forward`` is what computes the embeddings (``model`` itself, or its
    :class:`~torch.nn.parallel.DistributedDataParallel` wrapper).
    ``phase``, when given, is called with ``"forward"``, ``"backward"`` and ``"step"`` as each part
    ends, for profiling (the benchmarks time them).
    """
    user_emb, item_emb = (forward or model)(batch.subgraph)
    users, positives, negatives = batch.rows
    loss = bpr_loss(model.score(user_emb, item_emb, users, positives),
                    model.score(user_emb, item_emb, users, negatives))
    auxiliary = model.auxiliary_loss(user_emb, item_emb, users, positives, negatives)
    if auxiliary is not None:
        loss = loss + auxiliary
    if reg > 0:
        loss = loss + reg * model.regularization(batch.users, batch.positives, batch.negatives)
    if contrastive_weight > 0:
        loss = loss + contrastive_weight * model.alignment_loss(torch.unique(batch.positives),
                                                                contrastive_temperature)
    if batch.share != 1.0:
        # DDP averages the ranks' gradients; weighting each rank's mean by its share of the
        # batch makes that average the gradient of the whole batch's mean, as in one process.
        loss = loss * batch.share
    if phase is not None:
        phase("forward")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if phase is not None:
        phase("backward")
    optimizer.step()
    if phase is not None:
        phase("step")
    return loss.detach()

"""Optimisers for BPR training: Adam, or lazy Adam on the embedding tables for sampled training.

PyTorch has no container for two optimisers, so :class:`EmbeddingsAndDenseOptimizer` puts the
lazy (sparse) one and the dense one behind one ``zero_grad`` / ``step`` / ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch

from graphrec.training.lazy_adam import LazyAdam


class EmbeddingsAndDenseOptimizer:
    """Lazy Adam for the embedding tables plus Adam for every other parameter."""

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
        for optimizer, part in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(part)


#: What the trainer steps: a torch optimiser or the pair above.
Optimizer = torch.optim.Optimizer | EmbeddingsAndDenseOptimizer


def make_optimizer(model: torch.nn.Module, lr: float, sparse_embeddings: bool = False) -> Optimizer:
    """Adam over every parameter; with ``sparse_embeddings``, the model's ``nn.Embedding`` tables
    produce sparse gradients and get :class:`~graphrec.training.lazy_adam.LazyAdam` (rows a batch
    did not touch keep their value and their moments), the other parameters plain Adam."""
    if not sparse_embeddings:
        set_sparse_embeddings(model, False)
        return torch.optim.Adam(model.parameters(), lr=lr)
    tables = set_sparse_embeddings(model, True)
    table_ids = {id(weight) for weight in tables}
    others = [p for p in model.parameters() if id(p) not in table_ids and p.requires_grad]
    return EmbeddingsAndDenseOptimizer(LazyAdam(tables, lr=lr),
                                       torch.optim.Adam(others, lr=lr) if others else None)


def set_sparse_embeddings(model: torch.nn.Module, sparse: bool) -> list[torch.Tensor]:
    """Switch the model's ``nn.Embedding`` tables to sparse (or dense) gradients; returns their weights."""
    tables = [module for module in model.modules() if isinstance(module, torch.nn.Embedding)]
    for table in tables:
        table.sparse = sparse
    return [table.weight for table in tables]


def scale_learning_rate(optimizer: Optimizer, factor: float) -> float:
    """Multiply every parameter group's learning rate by ``factor``; returns the new rate."""
    for group in optimizer.param_groups:
        group["lr"] *= factor
    return float(optimizer.param_groups[0]["lr"])

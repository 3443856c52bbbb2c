"""LazyAdam: the maths of torch.optim.SparseAdam (which it replaces for speed), row by row."""

from __future__ import annotations

import pytest
import torch

from graphrec.training.lazy_adam import LazyAdam


def _tables(seed: int = 0) -> tuple[torch.nn.Embedding, torch.nn.Embedding]:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(50, 4, generator=generator)
    return (torch.nn.Embedding.from_pretrained(weights.clone(), freeze=False, sparse=True),
            torch.nn.Embedding.from_pretrained(weights.clone(), freeze=False, sparse=True))


def _batches(steps: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    # repeated rows inside a batch (a user with several interactions) and rows no batch touches
    return [torch.randint(0, 40, (30,), generator=generator) for _ in range(steps)]


def _train(table: torch.nn.Embedding, optimizer: torch.optim.Optimizer, batches: list[torch.Tensor]) -> None:
    for rows in batches:
        optimizer.zero_grad()
        loss = (table(rows) ** 2).sum() + table(rows[:5]).sum()
        loss.backward()
        optimizer.step()


def test_lazy_adam_takes_the_steps_of_sparse_adam():
    ours, reference = _tables()
    untouched = ours.weight.detach()[40:].clone()
    batches = _batches(6)
    _train(ours, LazyAdam(ours.parameters(), lr=0.05), batches)
    _train(reference, torch.optim.SparseAdam(reference.parameters(), lr=0.05), batches)
    torch.testing.assert_close(ours.weight, reference.weight, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ours.weight.detach()[:40], _tables()[0].weight.detach()[:40])
    # rows that no batch touched keep their value
    assert torch.equal(ours.weight.detach()[40:], untouched)


def test_lazy_adam_continues_from_a_sparse_adam_state():
    """The same state keys: a checkpoint written by SparseAdam resumes under LazyAdam, and back."""
    ours, reference = _tables()
    batches = _batches(6)
    first = torch.optim.SparseAdam(ours.parameters(), lr=0.05)
    _train(ours, first, batches[:3])
    second = LazyAdam(ours.parameters(), lr=0.05)
    second.load_state_dict(first.state_dict())
    _train(ours, second, batches[3:])
    _train(reference, torch.optim.SparseAdam(reference.parameters(), lr=0.05), batches)
    torch.testing.assert_close(ours.weight, reference.weight, rtol=1e-6, atol=1e-7)
    assert second.state_dict()["state"][0]["step"] == 6


def test_lazy_adam_refuses_dense_gradients_and_bad_settings():
    weight = torch.nn.Parameter(torch.zeros(3, 2))
    weight.grad = torch.ones(3, 2)
    with pytest.raises(RuntimeError, match="sparse gradients"):
        LazyAdam([weight]).step()
    for bad in ({"lr": 0.0}, {"betas": (0.9, 1.0)}, {"eps": 0.0}):
        with pytest.raises(ValueError):
            LazyAdam([weight], **bad)

"""Vectorised negative sampling: never a training positive, uniform over the rest, seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from graphrec.errors import GraphrecError
from graphrec.training.negatives import NegativeSampler


def test_negatives_are_never_positives_and_uniform():
    generator = torch.Generator().manual_seed(0)
    num_users, num_items = 50, 30
    users = torch.randint(num_users, (600,), generator=generator)
    items = torch.randint(num_items, (600,), generator=generator)
    sampler = NegativeSampler(users, items, num_items)
    positives = set(zip(users.tolist(), items.tolist()))
    query = torch.arange(num_users).repeat_interleave(2000)
    negatives = sampler.sample(query, generator=generator)
    assert not any((u, i) in positives for u, i in zip(query.tolist(), negatives.tolist()))
    # per user, the draws are uniform over the non-positive items (chi-square)
    p_values = []
    for user in range(num_users):
        drawn = negatives[query == user].numpy()
        allowed = sorted(set(range(num_items)) - {i for u, i in positives if u == user})
        observed = np.array([(drawn == i).sum() for i in allowed])
        assert observed.sum() == 2000
        p_values.append(stats.chisquare(observed).pvalue)
    # under uniformity p-values are uniform; a fixed-seed run must not pile up near 0
    assert np.mean(np.array(p_values) < 0.01) < 0.1


def test_same_seed_same_negatives():
    users = torch.tensor([0, 0, 1, 2])
    items = torch.tensor([1, 2, 0, 3])
    sampler = NegativeSampler(users, items, 5)
    query = torch.randint(3, (1000,), generator=torch.Generator().manual_seed(1))
    a = sampler.sample(query, generator=torch.Generator().manual_seed(5))
    b = sampler.sample(query, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_user_with_every_item_is_an_error():
    sampler = NegativeSampler(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]), 2)
    with pytest.raises(GraphrecError, match=r"user index\(es\) \[0\] interacted with every one of the 2 items"):
        sampler.sample(torch.tensor([0]))


def test_a_user_with_all_but_one_item_still_gets_that_item():
    # rejection alone would need about 100 rounds per draw here; the exact fallback settles it
    items = torch.arange(199)
    sampler = NegativeSampler(torch.zeros(199, dtype=torch.long), items, 200, max_rounds=3)
    drawn = sampler.sample(torch.zeros(500, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, torch.full((500,), 199))
    again = sampler.sample(torch.zeros(500, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)


def test_the_exact_fallback_draws_uniformly_from_the_complement():
    positives = torch.arange(0, 190)
    sampler = NegativeSampler(torch.zeros(190, dtype=torch.long), positives, 200, max_rounds=0)
    drawn = sampler.sample(torch.zeros(20_000, dtype=torch.long), generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(drawn, minlength=200)
    assert counts[:190].sum() == 0
    assert stats.chisquare(counts[190:].numpy()).pvalue > 1e-3

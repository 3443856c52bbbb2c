"""Vectorised uniform negative sampling that never returns a user's training positive.

Negatives are uniform over the training catalogue: every item by default, or the
``candidates`` given (the trainer passes the items that have training interactions).

Each user's positives are encoded as sorted keys ``user * num_items + item``. A
batch of candidates is drawn uniformly; membership is one ``searchsorted`` over
the keys, and only the rejected draws are redrawn, round by round. There is no
Python loop per sample: the number of rounds is logarithmic in the batch size
for realistic densities.
"""

from __future__ import annotations

import torch


class NegativeSampler:
    """Uniform negatives excluding each user's positives (usually the training interactions)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int, max_rounds: int = 100,
                 candidates: torch.Tensor | None = None) -> None:
        self.num_items = int(num_items)
        self.max_rounds = max_rounds
        # Negatives come from the training catalogue (``candidates``, default all items). Items with
        # no training interaction would otherwise only ever be seen as negatives, and a model would
        # learn to bury exactly the cold items that content is meant to surface.
        self.candidates = None if candidates is None else torch.unique(candidates.to(torch.int64))
        keys = users.to(torch.int64) * self.num_items + items.to(torch.int64)
        self.keys = torch.unique(keys)  # sorted
        catalogue = self.num_items if self.candidates is None else len(self.candidates)
        saturated = torch.nonzero(torch.bincount(torch.div(self.keys, self.num_items, rounding_mode="floor"))
                                  >= catalogue).flatten()
        self.saturated_users = saturated  # users who interacted with every item: no negative exists

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.to(torch.int64) * self.num_items + items.to(torch.int64)
        position = torch.searchsorted(self.keys, keys).clamp_(max=max(len(self.keys) - 1, 0))
        return self.keys[position] == keys if len(self.keys) else torch.zeros_like(keys, dtype=torch.bool)

    def sample(self, users: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One negative item per entry of ``users``."""
        if len(self.saturated_users) and torch.isin(users, self.saturated_users).any():
            raise ValueError("some users interacted with every item; no negative item exists for them")
        negatives = self._draw(users.shape, generator, users.device)
        rejected = torch.nonzero(self.is_positive(users, negatives)).flatten()
        for _ in range(self.max_rounds):
            if len(rejected) == 0:
                return negatives
            redraw = self._draw(rejected.shape, generator, users.device)
            negatives[rejected] = redraw
            still = self.is_positive(users[rejected], redraw)
            rejected = rejected[still]
        raise RuntimeError(f"negative sampling did not converge in {self.max_rounds} rounds")

    def _draw(self, shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        if self.candidates is None:
            return torch.randint(self.num_items, shape, generator=generator, device=device)
        position = torch.randint(len(self.candidates), shape, generator=generator, device=device)
        return self.candidates.to(device)[position]

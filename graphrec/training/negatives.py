"""Vectorised uniform negative sampling that never returns a user's training positive.

Negatives are uniform over the training catalogue: every item by default, or the
``candidates`` given (the trainer passes the items that have training interactions).

Each user's positives are encoded as sorted keys ``user * num_items + item``. A
batch of candidates is drawn uniformly; membership is one ``searchsorted`` over
the keys, and only the rejected draws are redrawn, round by round. There is no
Python loop per sample: the number of rounds is logarithmic in the batch size
for realistic densities. A user who has nearly every item would need many rounds, so
after ``max_rounds`` the few draws still rejected are taken exactly from their users'
remaining items.
"""

from __future__ import annotations

import torch

from graphrec.errors import GraphrecError


class NegativeSampler:
    """Uniform negatives excluding each user's positives (usually the training interactions)."""

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_items: int, max_rounds: int = 20,
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
            stuck = self.saturated_users[torch.isin(self.saturated_users, users)][:5].tolist()
            catalogue = self.num_items if self.candidates is None else len(self.candidates)
            raise GraphrecError(f"user index(es) {stuck} interacted with every one of the {catalogue:,} items that "
                                f"negatives are drawn from (the items with training interactions), so no negative "
                                f"exists for them (a negative must be an item that some user trained on)")
        negatives = self._draw(users.shape, generator, users.device)
        rejected = torch.nonzero(self.is_positive(users, negatives)).flatten()
        for _ in range(self.max_rounds):
            if len(rejected) == 0:
                return negatives
            redraw = self._draw(rejected.shape, generator, users.device)
            negatives[rejected] = redraw
            still = self.is_positive(users[rejected], redraw)
            rejected = rejected[still]
        if len(rejected):
            negatives[rejected] = self._draw_exactly(users[rejected], generator)
        return negatives

    def _draw_exactly(self, users: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Uniform negatives from each user's complement, listed explicitly: for the rare draws that
        rejection did not settle (users who have nearly every item)."""
        out = torch.empty_like(users)
        catalogue = (torch.arange(self.num_items) if self.candidates is None else self.candidates.cpu())
        for user in torch.unique(users).tolist():
            rows = torch.nonzero(users == user).flatten()
            bounds = torch.tensor([user * self.num_items, (user + 1) * self.num_items])
            low, high = torch.searchsorted(self.keys, bounds)
            positives = self.keys[low:high] - user * self.num_items
            allowed = catalogue[~torch.isin(catalogue, positives.cpu())]
            pick = torch.randint(len(allowed), (len(rows),), generator=generator)
            out[rows] = allowed[pick].to(out.device)
        return out

    def _draw(self, shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        if self.candidates is None:
            return torch.randint(self.num_items, shape, generator=generator, device=device)
        position = torch.randint(len(self.candidates), shape, generator=generator, device=device)
        return self.candidates.to(device)[position]

r"""Non-learned floors: popularity and random scores.

* :class:`Popularity`: :math:`\hat y_{ui} = \log(1 + n_i + \epsilon_i)`, with :math:`n_i` the
  number of training interactions of item :math:`i` and a seeded :math:`\epsilon_i \sim U[0, 0.5)`
  that orders items of equal count at random (it never reorders different counts); the same
  ranking for every user. Without it, ties (every cold item has :math:`n_i = 0`) would fall back
  to the item index, and catalogue order can carry information: MovieLens numbers its movies in
  an order that tracks their popularity.
* :class:`RandomScores`: :math:`\hat y_{ui} = \langle \mathbf{r}_u, \mathbf{s}_i \rangle` with fixed
  Gaussian vectors drawn from a seed; an independent random ranking per user.

Both speak the :class:`~graphrec.models.base.Recommender` interface and are not trained by
gradient descent (``trained_by_gradient = False``): training only evaluates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.models.base import ModelOptions, Recommender


@dataclass(frozen=True)
class PopularityOptions(ModelOptions):
    """Popularity has no hyperparameter."""


@dataclass(frozen=True)
class RandomOptions(ModelOptions):
    """The random floor has no hyperparameter (its vectors are 32-d)."""


class Popularity(Recommender):
    """Rank items by their training popularity, breaking ties at random (seeded), not by item index.

    An item's score is its rank (0 for the least popular), which float32 holds exactly for up to
    2^24 items whatever the counts; a float32 count or log-count stops telling counts apart (and
    loses the tie-break) from about a million interactions per item."""

    name = "pop"
    Options = PopularityOptions
    trained_by_gradient = False
    item_score: Tensor  # buffers registered in __init__
    user_one: Tensor

    def __init__(self, num_users: int, num_items: int, train_items: Tensor, seed: int = 0) -> None:
        super().__init__(num_users, num_items)
        counts = torch.bincount(torch.as_tensor(train_items, dtype=torch.long), minlength=num_items)
        tie_break = 0.5 * torch.rand(num_items, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        score = torch.empty(num_items, dtype=torch.float32)
        score[torch.argsort(counts.to(torch.float64) + tie_break)] = torch.arange(num_items, dtype=torch.float32)
        self.register_buffer("item_score", score.unsqueeze(1))
        self.register_buffer("user_one", torch.ones(num_users, 1))

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: PopularityOptions, seed: int = 0) -> Popularity:
        _, items = dataset.pairs("train")
        return cls(dataset.num_users, dataset.num_items, torch.from_numpy(items), seed=seed)

    def reset_parameters(self) -> None:
        """Nothing to learn."""

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_one, self.item_score


class RandomScores(Recommender):
    """Score with fixed random vectors: the floor every model must beat."""

    name = "random"
    Options = RandomOptions
    trained_by_gradient = False
    user_vectors: Tensor  # buffers registered in __init__
    item_vectors: Tensor

    def __init__(self, num_users: int, num_items: int, dim: int = 32, seed: int = 0) -> None:
        super().__init__(num_users, num_items)
        self.dim = dim
        self.seed = seed
        self.register_buffer("user_vectors", torch.empty(num_users, dim))
        self.register_buffer("item_vectors", torch.empty(num_items, dim))
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: RandomOptions, seed: int = 0) -> RandomScores:
        return cls(dataset.num_users, dataset.num_items, seed=seed)

    def reset_parameters(self) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        self.user_vectors.copy_(torch.randn(self.num_users, self.dim, generator=generator))
        self.item_vectors.copy_(torch.randn(self.num_items, self.dim, generator=generator))

    def embed(self) -> tuple[Tensor, Tensor]:
        return self.user_vectors, self.item_vectors

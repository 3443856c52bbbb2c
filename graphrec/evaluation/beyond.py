r"""Beyond-accuracy measures of the top-K lists recommended to all evaluated users.

With :math:`L_u` user u's top-K list (only items actually recommended, i.e. with
a score above :math:`-\infty`), :math:`C` the candidate items, :math:`c_i` the
number of distinct training users of item i, :math:`n` the number of items and
:math:`r_i` how many lists contain item i:

.. math::
    \text{coverage@K} &= |\textstyle\bigcup_u L_u| \,/\, |C|

    \text{ILD@K} &= \operatorname{mean}_u \frac{1}{|L_u|(|L_u| - 1)}
                    \sum_{i \ne j \in L_u} \big(1 - \cos(x_i, x_j)\big)

    \text{novelty@K} &= \operatorname{mean}_u \operatorname{mean}_{i \in L_u} -\log_2 p_i,
    \qquad p_i = \frac{c_i + 1}{\sum_j c_j + n}

    \text{avg\_pop@K} &= \operatorname{mean}_u \operatorname{mean}_{i \in L_u} c_i

    \text{gini@K} &= \frac{\sum_{j=1}^{|C|} (2j - |C| - 1)\, r_{(j)}}{|C| \sum_j r_j}
    \quad (r_{(1)} \le \dots \le r_{(|C|)})

The Laplace smoothing in :math:`p_i` keeps novelty finite for items nobody
trained on. The cosine of an all-zero feature row (an item missing the modality)
is taken as 0 with every item. Users whose list has fewer than two items do not
enter ILD (so ``ild@1`` is never reported); users with an empty list do not
enter novelty or avg_pop.
Gini is 0 when every candidate is recommended equally often and approaches 1
when a single item fills every list.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

#: Names of the beyond-accuracy measures, reported as ``f"{name}@{k}"``.
BEYOND_METRICS: tuple[str, ...] = ("coverage", "ild", "novelty", "avg_pop", "gini")


def gini_index(counts: Tensor | np.ndarray) -> float:
    """Gini index of a non-negative count vector (0 = perfectly even)."""
    values = torch.sort(torch.as_tensor(counts, dtype=torch.float64).flatten()).values
    total = float(values.sum())
    n = values.numel()
    if n == 0 or total == 0.0:
        return float("nan")
    weights = 2.0 * torch.arange(1, n + 1, dtype=torch.float64, device=values.device) - n - 1
    return float((weights * values).sum() / (n * total))


def normalized_rows(features: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero."""
    norms = features.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, features / norms.clamp_min(torch.finfo(features.dtype).tiny), 0.0)


class BeyondAccuracy:
    """Accumulates top-K lists batch by batch and reports the measures above.

    Args:
        ks: cut-offs.
        candidates: item indices that could be recommended (coverage and Gini
            are relative to them).
        train_counts: ``[num_items]`` distinct training users per item.
        item_features: ``[num_items, d]`` features for intra-list diversity, or
            None to skip ``ild``.
        device: where the accumulation runs.
    """

    def __init__(self, ks: Sequence[int], candidates: np.ndarray, train_counts: np.ndarray,
                 item_features: Tensor | None = None, device: torch.device | str = "cpu") -> None:
        self.ks = tuple(ks)
        self.device = torch.device(device)
        num_items = len(train_counts)
        self.candidates = torch.as_tensor(candidates, dtype=torch.long, device=self.device)
        counts = torch.as_tensor(train_counts, dtype=torch.float64, device=self.device)
        self.popularity = counts
        self.self_information = -torch.log2((counts + 1.0) / (counts.sum() + num_items))
        self.features = None if item_features is None else normalized_rows(
            item_features.to(self.device, torch.float32))
        # 1 for unit rows, 0 for the all-zero rows of items missing the modality
        self.has_features = None if self.features is None else (self.features.norm(dim=1) > 0).to(torch.float64)
        self.times_recommended = {k: torch.zeros(num_items, dtype=torch.long, device=self.device)
                                  for k in self.ks}
        self._per_user: dict[str, list[Tensor]] = {f"{name}@{k}": [] for k in self.ks
                                                   for name in ("ild", "novelty", "avg_pop")}

    def update(self, items: Tensor, recommended: Tensor) -> None:
        """Add a batch of lists: ``items[u, j]`` the item ranked ``j + 1`` for user ``u``,
        ``recommended[u, j]`` False where that position holds no real recommendation."""
        items = items.to(self.device)
        recommended = recommended.to(self.device)
        safe_items = torch.where(recommended, items, 0)
        for k in self.ks:
            top, shown = safe_items[:, :k], recommended[:, :k]
            length = shown.sum(dim=1).to(torch.float64)
            self.times_recommended[k] += torch.bincount(top[shown], minlength=len(self.popularity))
            nonempty = length > 0
            novelty = (self.self_information[top] * shown).sum(dim=1) / length
            avg_pop = (self.popularity[top] * shown).sum(dim=1) / length
            self._per_user[f"novelty@{k}"].append(torch.where(nonempty, novelty, float("nan")))
            self._per_user[f"avg_pop@{k}"].append(torch.where(nonempty, avg_pop, float("nan")))
            if self.features is not None:
                self._per_user[f"ild@{k}"].append(self._intra_list_diversity(top, shown, length))

    def _intra_list_diversity(self, top: Tensor, shown: Tensor, length: Tensor) -> Tensor:
        # For unit rows, sum_{i != j} cos(x_i, x_j) = ||sum_i x_i||^2 - sum_i ||x_i||^2; embedding_bag
        # sums each list's rows without materialising a [B, K, d] gather.
        features, has_features = self.features, self.has_features
        assert features is not None and has_features is not None  # update() calls this only with features
        summed = torch.nn.functional.embedding_bag(top, features, mode="sum",
                                                   per_sample_weights=shown.to(features.dtype))
        self_similarity = (has_features[top] * shown).sum(dim=1)
        pairs = length * (length - 1)
        mean_similarity = (summed.to(torch.float64).square().sum(dim=1) - self_similarity) / pairs
        return torch.where(pairs > 0, 1.0 - mean_similarity, float("nan"))

    def per_user(self) -> dict[str, np.ndarray]:
        """Per-user values of the list-level measures (NaN where a user does not enter the mean)."""
        return {name: torch.cat(values).cpu().numpy() for name, values in self._per_user.items() if values}

    def compute(self) -> dict[str, float]:
        """The measures for every K, keyed ``"coverage@20"`` etc."""
        per_user = self.per_user()
        out: dict[str, float] = {}
        for k in self.ks:
            counts = self.times_recommended[k][self.candidates]
            out[f"coverage@{k}"] = float((counts > 0).sum()) / max(len(self.candidates), 1)
            if f"ild@{k}" in per_user and not np.isnan(per_user[f"ild@{k}"]).all():
                out[f"ild@{k}"] = _nanmean(per_user[f"ild@{k}"])
            out[f"novelty@{k}"] = _nanmean(per_user[f"novelty@{k}"])
            out[f"avg_pop@{k}"] = _nanmean(per_user[f"avg_pop@{k}"])
            out[f"gini@{k}"] = gini_index(counts)
        return out


def _nanmean(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")

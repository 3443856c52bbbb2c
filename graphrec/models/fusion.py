r"""Fusion of several modality representations into one, selectable by name.

Given inputs :math:`\mathbf{x}_{m} \in \mathbb{R}^{N \times F_m}` for modalities
:math:`m = 1..M`, a mask :math:`\mathbf{K} \in \{0,1\}^{N \times M}` of the ones each
row has, and per-modality projections :math:`\mathbf{p}_m = \mathbf{W}_m \mathbf{x}_m
\in \mathbb{R}^{N \times d}`, the strategies are (sums run over available
modalities, :math:`K_{nm} = 1`):

=============  ============================================================================
``concat``     early fusion: :math:`\mathbf{W} [\tilde{\mathbf{x}}_1 \| \dots \| \tilde{\mathbf{x}}_M]`,
               where a missing :math:`\tilde{\mathbf{x}}_m` is a learned placeholder vector
``sum``        :math:`\sum_m \mathbf{p}_m`
``mean``       :math:`\frac{1}{|\{m\}|} \sum_m \mathbf{p}_m`
``product``    :math:`\prod_m \mathbf{p}_m` (element-wise)
``attention``  :math:`\sum_m \alpha_m \mathbf{p}_m`, :math:`\alpha = \operatorname{softmax}_m
               \mathbf{a}^\top \tanh(\mathbf{W}_a \mathbf{p}_m + \mathbf{b})`; the weights of
               the last call are kept in :attr:`Fusion.last_weights` ``[N, M]``
``gated``      :math:`\sum_m \sigma(\mathbf{G}_m \mathbf{p}_m + \mathbf{c}_m) \odot \mathbf{p}_m`
``late``       score-level fusion: :math:`[\mathbf{p}_1 \| \dots \| \mathbf{p}_M]`
               (``M * d`` wide), a missing block being zeros. Its inner product with a
               user vector :math:`[\mathbf{q}_1 \| \dots \| \mathbf{q}_M]` is
               :math:`\sum_m \langle \mathbf{q}_m, \mathbf{p}_m \rangle`: one score per
               modality, summed, with absent modalities contributing nothing.
=============  ============================================================================

A row with no available modality fuses to zeros (no information), except for
``concat``, whose placeholders stand in for every missing input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

FUSION_STRATEGIES: tuple[str, ...] = ("concat", "sum", "mean", "product", "attention", "gated", "late")


def masked_softmax(scores: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the entries where ``mask`` is True; masked entries, and rows with
    nothing available, get weight 0 (never NaN, also in the gradient)."""
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask


class Fusion(torch.nn.Module):
    """Fuse modality representations with one of :data:`FUSION_STRATEGIES` (see the module docstring).

    Args:
        strategy: the strategy's name.
        in_dims: input width of each modality, by name (a list names them ``"0"``, ``"1"``, ...).
        out_dim: width ``d`` of each projected modality and of the output
            (``M * d`` for ``late``, see :attr:`output_dim`).
    """

    def __init__(self, strategy: str, in_dims: Mapping[str, int] | Sequence[int], out_dim: int) -> None:
        super().__init__()
        if strategy not in FUSION_STRATEGIES:
            raise ValueError(f"unknown fusion strategy {strategy!r}; choose one of {', '.join(FUSION_STRATEGIES)}")
        dims = dict(in_dims) if isinstance(in_dims, Mapping) else {str(k): int(v) for k, v in enumerate(in_dims)}
        if not dims:
            raise ValueError("fusion needs at least one modality")
        bad = [name for name in dims if not name or "." in name]
        if bad:
            raise ValueError(f"modality names must be non-empty and contain no '.', got {bad}")
        self.strategy = strategy
        self.names: list[str] = list(dims)
        self.in_dims: dict[str, int] = dims
        self.out_dim = int(out_dim)
        self.last_weights: Tensor | None = None

        if strategy == "concat":
            self.placeholders = torch.nn.ParameterDict(
                {name: torch.nn.Parameter(torch.empty(dim)) for name, dim in dims.items()})
            self.projection = torch.nn.Linear(sum(dims.values()), out_dim)
        else:
            self.projections = torch.nn.ModuleDict(
                {name: torch.nn.Linear(dim, out_dim) for name, dim in dims.items()})
        if strategy == "attention":
            self.attention_hidden = torch.nn.Linear(out_dim, out_dim)
            self.attention_vector = torch.nn.Linear(out_dim, 1, bias=False)
        if strategy == "gated":
            self.gates = torch.nn.ModuleDict({name: torch.nn.Linear(out_dim, out_dim) for name in dims})
        self.reset_parameters()

    @property
    def output_dim(self) -> int:
        return self.out_dim * len(self.names) if self.strategy == "late" else self.out_dim

    def reset_parameters(self) -> None:
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
        if self.strategy == "concat":
            for placeholder in self.placeholders.values():
                torch.nn.init.normal_(placeholder, std=0.1)
        self.last_weights = None

    def forward(self, inputs: Mapping[str, Tensor] | Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
        """Fuse ``inputs`` (by name, or in the order of :attr:`names`), each ``[N, F_m]``.

        ``mask`` ``[N, M]`` (bool, columns in the order of :attr:`names`) marks the
        modalities each row has; ``None`` means all of them.
        """
        xs = self._ordered(inputs)
        num_rows = xs[0].size(0)
        if mask is None:
            mask = torch.ones(num_rows, len(xs), dtype=torch.bool, device=xs[0].device)
        elif mask.shape != (num_rows, len(xs)):
            raise ValueError(f"mask must have shape ({num_rows}, {len(xs)}), got {tuple(mask.shape)}")
        mask = mask.to(torch.bool)

        if self.strategy == "concat":
            filled = [torch.where(mask[:, m:m + 1], x, self.placeholders[name])
                      for m, (name, x) in enumerate(zip(self.names, xs))]
            return self.projection(torch.cat(filled, dim=1))

        return self.combine(self.project(xs, mask), mask)

    def combine(self, projected: Tensor, mask: Tensor) -> Tensor:
        """Fuse projections from :meth:`project` ``[N, M, d]`` (every strategy but ``concat``)."""
        mask = mask.to(torch.bool)
        if self.strategy == "product":
            product = torch.where(mask.unsqueeze(-1), projected, 1.0).prod(1)
            return torch.where(mask.any(1, keepdim=True), product, 0.0)
        if self.strategy == "late":
            return projected.flatten(1)
        if self.strategy == "sum":
            return projected.sum(1)
        if self.strategy == "mean":
            return projected.sum(1) / mask.sum(1, keepdim=True).clamp(min=1).to(projected.dtype)
        if self.strategy == "gated":
            gates = torch.stack([torch.sigmoid(self.gates[name](projected[:, m]))
                                 for m, name in enumerate(self.names)], dim=1)
            return (gates * projected).sum(1)
        weights = self.attention_weights(projected, mask)
        return (weights.unsqueeze(-1) * projected).sum(1)

    def project(self, inputs: Mapping[str, Tensor] | Sequence[Tensor], mask: Tensor) -> Tensor:
        r"""The projections :math:`\mathbf{p}_m` ``[N, M, d]`` of every strategy but ``concat``, zeros
        where ``mask`` ``[N, M]`` says a row lacks the modality."""
        if self.strategy == "concat":
            raise ValueError("concat fusion projects the concatenated inputs, not each modality")
        xs = self._ordered(inputs)
        projected = torch.stack([self.projections[name](x) for name, x in zip(self.names, xs)], dim=1)
        # where() rather than a product with the mask, so nothing of a missing input leaks through
        return torch.where(mask.to(torch.bool).unsqueeze(-1), projected, 0.0)

    def attention_weights(self, projected: Tensor, mask: Tensor) -> Tensor:
        r"""The ``attention`` strategy's weights :math:`\alpha` ``[N, M]`` of projections from
        :meth:`project` (kept, detached, in :attr:`last_weights`)."""
        if self.strategy != "attention":
            raise ValueError(f"fusion {self.strategy!r} has no attention weights")
        scores = self.attention_vector(torch.tanh(self.attention_hidden(projected))).squeeze(-1)  # [N, M]
        weights = masked_softmax(scores, mask.to(torch.bool))
        self.last_weights = weights.detach()
        return weights

    def _ordered(self, inputs: Mapping[str, Tensor] | Sequence[Tensor]) -> list[Tensor]:
        if isinstance(inputs, Mapping):
            missing = [name for name in self.names if name not in inputs]
            if missing:
                raise ValueError(f"fusion inputs lack modality {missing}; expected {self.names}")
            xs = [inputs[name] for name in self.names]
        else:
            xs = list(inputs)
            if len(xs) != len(self.names):
                raise ValueError(f"expected {len(self.names)} fusion inputs, got {len(xs)}")
        for name, x in zip(self.names, xs):
            if x.dim() != 2 or x.size(1) != self.in_dims[name] or x.size(0) != xs[0].size(0):
                raise ValueError(f"fusion input {name!r} must have shape (N, {self.in_dims[name]}) "
                                 f"with the same N as the others, got {tuple(x.shape)}")
        return xs

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, in_dims={self.in_dims}, out_dim={self.out_dim}"

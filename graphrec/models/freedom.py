r"""FREEDOM: LightGCN on a denoised user–item graph plus a frozen item–item content graph.

From `"A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
Recommendation" <https://arxiv.org/abs/2211.06924>`_ (Zhou and Shen, ACM MM 2023).

**The frozen item–item graph.** For each modality :math:`m` with pretrained features
:math:`\mathbf{x}_{i,m}`, item :math:`i` keeps its :math:`k` most cosine-similar items, itself
among them (it is its own nearest neighbour, as in the authors' code):
:math:`S^m_{ij} = [\, j \in \mathrm{top}_k(i) \,]`, normalised
:math:`\tilde{S}^m = D^{-1/2} S^m D^{-1/2}` with :math:`D` the row sums, and the modalities
are combined by weight, :math:`\tilde{S} = \sum_m \alpha_m \tilde{S}^m`. With an image modality
and others, the image graph has weight :math:`\alpha_v` (``image_weight``) and the others share
:math:`1 - \alpha_v` equally; otherwise every modality weighs the same. The graph is built once,
before training, and never changes ("frozen"). An item without a modality has no edges in
that modality's graph.

**Degree-sensitive edge pruning.** Each training epoch draws a share :math:`1 - \rho` of the
training edges (``pruning`` :math:`\rho`) without replacement, edge :math:`(u, i)` with
probability proportional to :math:`1/\sqrt{d_u d_i}`, so edges between high-degree nodes, the
likeliest noise, are dropped most. The kept edges :math:`\mathcal{E}'` form the epoch's graph
:math:`\tilde{\mathbf{A}}'`, normalised by the kept degrees. Evaluation and serving use the full
training graph :math:`\tilde{\mathbf{A}}`.

**The representations.** With free id embeddings :math:`\mathbf{E}^{(0)} = [\mathbf{E}_U;
\mathbf{E}_I]`,

.. math::
    \mathbf{E}^{(l+1)} = \tilde{\mathbf{A}}' \mathbf{E}^{(l)}, \qquad
    [\bar{\mathbf{E}}_U; \bar{\mathbf{E}}_I] = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)}, \qquad
    \mathbf{H} = \tilde{S}^{L_S} \mathbf{E}_I,

and the user and item representations are :math:`\mathbf{u} = \bar{\mathbf{E}}_U` and
:math:`\mathbf{v} = \bar{\mathbf{E}}_I + \mathbf{H}`, scored by inner product (``layers`` is
:math:`L`, ``item_layers`` :math:`L_S`).

**The loss.** BPR on the fused score, plus BPR terms of each modality's projected features
:math:`\mathbf{t}^m_i = \mathbf{W}_m \mathbf{x}_{i,m} + \mathbf{b}_m` against the same users
(:meth:`FREEDOM.auxiliary_loss`), weighted by :math:`\lambda` (``modality_weight``):

.. math::
    \mathcal{L} = \mathrm{BPR}(\mathbf{u}_u^\top \mathbf{v}_p, \mathbf{u}_u^\top \mathbf{v}_n)
    + \lambda \sum_m \mathrm{BPR}(\mathbf{u}_u^\top \mathbf{t}^m_p, \mathbf{u}_u^\top \mathbf{t}^m_n).

The paper's loss has no L2 term on the embeddings: train with ``reg=0`` to match it.

**Hyperparameters.** The defaults are those of the authors' configuration (MMRec
``FREEDOM.yaml``): :math:`d = 64`, :math:`L = 2`, :math:`L_S = 1`, :math:`k = 10`,
:math:`\alpha_v = 0.1`. The paper tunes :math:`\rho \in \{0.8, 0.9\}` and
:math:`\lambda \in \{0, 10^{-5}, 10^{-4}, 10^{-3}\}`; ``benchmarks/mmrec_compare.py`` runs that
grid through the trainer (each point early-stopped on validation) and keeps the best
validation point; the defaults here are the middle of that grid.

Differences from the authors' code, and why: the pretrained features are fixed buffers (the
authors also fine-tune them through the modality BPR terms, but the item graph built from
them is frozen either way); the pruned edges are drawn with the Gumbel-top-:math:`k` trick
(the same distribution as ``torch.multinomial`` without replacement, which is limited to
:math:`2^{24}` edges), from a generator seeded by the model's seed and an epoch counter,
so that every process of a distributed run prunes the same edges and a resumed run the same
as an uninterrupted one. The item graph is not symmetric, so its product has its own
backward (:class:`~graphrec.graph.adjacency.SparseProduct`), the transposed product.

Neighbour sampling does not apply: the item–item convolution and the pruned graph are
whole-graph operations (``supports_subgraphs`` is off, so the trainer refuses it).

**User features.** The paper builds and freezes item–item graphs only; it has no user-side content,
and a user is its id embedding :math:`\mathbf{E}_U` alone. User attribute entities and user
modalities are therefore not read here (ModalityGAT and VBPR read them, and GF-CF and mmgf give a
cold user a pseudo-history from them): a user without training interactions has an untrained
embedding, as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError
from graphrec.graph.adjacency import normalized_adjacency, propagate, sparse_product, torch_csr
from graphrec.graph.content import knn_cosine_graph, symmetric_normalize, weighted_sum
from graphrec.graph.hetero import required_modalities
from graphrec.models.base import ModelOptions, Recommender, check_non_negative, check_positive
from graphrec.training.bpr import bpr_loss


@dataclass(frozen=True)
class FREEDOMOptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "width of the id embeddings and of the projected features"})
    layers: int = field(default=2, metadata={"help": "LightGCN layers L on the user–item graph"})
    item_layers: int = field(default=1, metadata={"help": "convolutions L_S of the id embeddings on the "
                                                          "frozen item–item graph"})
    knn_k: int = field(default=10, metadata={"help": "neighbours per item in the item–item graph, itself "
                                                     "included"})
    image_weight: float = field(default=0.1, metadata={
        "help": "weight of the image graph among the modalities' graphs (the others share the rest)"})
    pruning: float = field(default=0.9, metadata={
        "help": "share rho of training edges dropped each epoch, degree-sensitively (0: none)"})
    modality_weight: float = field(default=1e-4, metadata={
        "help": "weight lambda of the modality BPR terms"})
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})

    def __post_init__(self) -> None:
        check_positive(self, "dim", "knn_k")
        check_non_negative(self, "layers", "item_layers", "modality_weight")
        if not 0.0 <= self.image_weight <= 1.0:
            raise ConfigError(f"must lie in [0, 1], got {self.image_weight!r}", field="image_weight")
        if not 0.0 <= self.pruning < 1.0:
            raise ConfigError(f"must lie in [0, 1) (the share of edges dropped), got {self.pruning!r}",
                              field="pruning")


def modality_weights(names: Sequence[str], image_weight: float) -> dict[str, float]:
    """:math:`\\alpha_m` of each modality (see the module docstring)."""
    if "image" in names and len(names) > 1:
        rest = (1.0 - image_weight) / (len(names) - 1)
        return {name: image_weight if name == "image" else rest for name in names}
    return {name: 1.0 / len(names) for name in names}


def frozen_item_graph(features: Sequence[np.ndarray], masks: Sequence[np.ndarray], weights: Sequence[float],
                      knn_k: int) -> sp.csr_matrix:
    r""":math:`\tilde{S} = \sum_m \alpha_m D_m^{-1/2} S^m D_m^{-1/2}` (module docstring): each item's
    ``knn_k - 1`` most similar other items (:func:`~graphrec.graph.content.knn_cosine_graph`, not
    symmetrised) plus itself."""
    graphs, named_weights = {}, {}
    for index, (values, mask, weight) in enumerate(zip(features, masks, weights, strict=True)):
        have = np.asarray(mask, dtype=bool)
        none = np.zeros(0, dtype=np.int64)
        neighbours = (knn_cosine_graph(values, knn_k - 1, have, symmetric=False) if knn_k > 1
                      else sp.csr_matrix((np.zeros(0, np.float32), (none, none)), shape=(len(have), len(have))))
        self_loops = sp.diags(have.astype(np.float32), format="csr")
        graphs[str(index)] = symmetric_normalize((neighbours + self_loops).tocsr())
        named_weights[str(index)] = weight
    return weighted_sum(graphs, named_weights)


class FREEDOM(Recommender):
    """FREEDOM over the training edges ``users[k] -> items[k]`` and a frozen ``item_graph``
    ``[I, I]`` (:func:`frozen_item_graph`), with the pretrained ``features`` of each modality for
    the modality BPR terms.

    The graphs and features are non-persistent buffers, rebuilt from the same data to load a
    checkpoint; the epoch counter that seeds the pruning is saved with the weights.
    """

    name = "freedom"
    Options = FREEDOMOptions
    reads_features = True
    adjacency: Tensor  # buffers registered in __init__
    item_graph: Tensor
    item_graph_t: Tensor
    train_users: Tensor
    train_items: Tensor
    keep_weight: Tensor
    pruned: Tensor
    epochs_pruned: Tensor

    def __init__(self, num_users: int, num_items: int, users: Tensor, items: Tensor, item_graph: sp.csr_matrix,
                 features: Sequence[Tensor] = (), dim: int = 64, num_layers: int = 2, item_layers: int = 1,
                 pruning: float = 0.9, modality_weight: float = 1e-4, seed: int = 0) -> None:
        super().__init__(num_users, num_items)
        if tuple(item_graph.shape) != (num_items, num_items):
            raise ValueError(f"item_graph must be ({num_items}, {num_items}), got {tuple(item_graph.shape)}")
        for values in features:
            if values.dim() != 2 or values.size(0) != num_items:
                raise ValueError(f"features must be ({num_items}, F), got {tuple(values.shape)}")
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.item_layers = int(item_layers)
        self.pruning = float(pruning)
        self.modality_weight = float(modality_weight)
        self.seed = int(seed)
        pairs = torch.unique(users.to(torch.long) * num_items + items.to(torch.long))
        train_users, train_items = pairs // num_items, pairs % num_items
        self.register_buffer("train_users", train_users, persistent=False)
        self.register_buffer("train_items", train_items, persistent=False)
        user_degree = torch.bincount(train_users, minlength=num_users).to(torch.float32)
        item_degree = torch.bincount(train_items, minlength=num_items).to(torch.float32)
        # log of the sampling weight 1/sqrt(d_u d_i), for Gumbel-top-k draws
        self.register_buffer("keep_weight", -0.5 * (user_degree[train_users] * item_degree[train_items]).log(),
                             persistent=False)
        adjacency = normalized_adjacency(num_users, num_items, train_users, train_items)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.register_buffer("pruned", adjacency, persistent=False)
        self.register_buffer("item_graph", torch_csr(item_graph), persistent=False)
        self.register_buffer("item_graph_t", torch_csr(item_graph.T), persistent=False)
        self.register_buffer("epochs_pruned", torch.zeros((), dtype=torch.long))
        self.num_modalities = len(features)
        for index, value in enumerate(features):
            self.register_buffer(f"features_{index}", value.detach().to(torch.float32), persistent=False)
        self.user_embedding = torch.nn.Embedding(num_users, dim)
        self.item_embedding = torch.nn.Embedding(num_items, dim)
        self.projections = torch.nn.ModuleList([torch.nn.Linear(value.size(1), dim) for value in features])
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: FREEDOMOptions, seed: int = 0) -> FREEDOM:
        """FREEDOM over the dataset's training interactions and its chosen modalities (all by default)."""
        names = required_modalities(dataset, options.modalities, "freedom", "its item–item graph")
        chosen = [dataset.features[name] for name in names]
        weights = modality_weights(names, options.image_weight)
        item_graph = frozen_item_graph([feature.values for feature in chosen], [feature.mask for feature in chosen],
                                       [weights[name] for name in names], options.knn_k)
        users, items = dataset.pairs("train")
        return cls(dataset.num_users, dataset.num_items, torch.from_numpy(users), torch.from_numpy(items), item_graph,
                   [torch.from_numpy(feature.values) for feature in chosen], dim=options.dim,
                   num_layers=options.layers, item_layers=options.item_layers, pruning=options.pruning,
                   modality_weight=options.modality_weight, seed=seed)

    def reset_parameters(self) -> None:
        # Xavier-uniform id embeddings, as the authors' code initialises them.
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for projection in self.projections:
            cast(torch.nn.Linear, projection).reset_parameters()
        self.epochs_pruned.zero_()
        self.pruned = self.adjacency

    def train(self, mode: bool = True) -> FREEDOM:
        """Switch mode; switching to training (which the trainer does at the start of every epoch)
        draws that epoch's pruned graph."""
        super().train(mode)
        if mode:
            self.prune()
        return self

    @torch.no_grad()
    def prune(self) -> None:
        """Draw the next pruned graph :math:`\\tilde{\\mathbf{A}}'` (see the module docstring)."""
        keep = int(self.train_users.numel() * (1.0 - self.pruning))
        if self.pruning == 0.0 or keep == 0:
            self.pruned = self.adjacency
            return
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + int(self.epochs_pruned))
        self.epochs_pruned += 1
        uniform = torch.rand(self.keep_weight.shape, generator=generator).to(self.keep_weight.device)
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20)))
        kept = torch.topk(self.keep_weight + gumbel, keep).indices
        self.pruned = normalized_adjacency(self.num_users, self.num_items, self.train_users[kept].cpu(),
                                           self.train_items[kept].cpu()).to(self.adjacency.device)

    def _propagate(self, adjacency: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        total = x
        for _ in range(self.num_layers):
            x = propagate(adjacency, x)
            total = total + x
        final = total / (self.num_layers + 1)
        content = self.item_embedding.weight
        for _ in range(self.item_layers):
            content = sparse_product(self.item_graph, self.item_graph_t, content)
        return final[:self.num_users], final[self.num_users:] + content

    def embed(self) -> tuple[Tensor, Tensor]:
        """On the epoch's pruned graph while training, on the full training graph otherwise."""
        return self._propagate(self.pruned if self.training else self.adjacency)

    @torch.no_grad()
    def embed_layerwise(self) -> tuple[Tensor, Tensor]:
        """Inference: always on the full training graph."""
        return self._propagate(self.adjacency)

    @property
    def features(self) -> list[Tensor]:
        """The pretrained features ``[I, F_m]`` of each modality."""
        return [getattr(self, f"features_{index}") for index in range(self.num_modalities)]

    def projected(self) -> list[Tensor]:
        """:math:`\\mathbf{t}^m` ``[I, d]`` of each modality."""
        return [projection(values) for projection, values in zip(self.projections, self.features, strict=True)]

    def auxiliary_loss(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, positives: Tensor,
                       negatives: Tensor) -> Tensor | None:
        """:math:`\\lambda \\sum_m \\mathrm{BPR}` of the projected features (module docstring)."""
        if self.modality_weight == 0 or not self.features:
            return None
        total = user_emb.new_zeros(())
        chosen = user_emb[users]
        # the same terms either way: project the batch's items, or the catalogue when it has fewer rows
        whole = positives.numel() + negatives.numel() >= self.num_items
        for projection, values in zip(self.projections, self.features, strict=True):
            if whole:
                content = projection(values)
                positive, negative = content[positives], content[negatives]
            else:
                positive, negative = projection(values[positives]), projection(values[negatives])
            total = total + bpr_loss((chosen * positive).sum(-1), (chosen * negative).sum(-1))
        return self.modality_weight * total

    def user_ego(self, users: Tensor) -> Tensor:
        return self.user_embedding(users)

    def item_ego(self, items: Tensor) -> Tensor:
        return self.item_embedding(items)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, dim={self.dim}, num_layers={self.num_layers}, "
                f"item_layers={self.item_layers}, pruning={self.pruning}, modality_weight={self.modality_weight}")

r"""LGMRec: local graph embeddings of ids and modalities, plus a global hypergraph of learnt interests.

From `"LGMRec: Local and Global Graph Learning for Multimodal Recommendation"
<https://arxiv.org/abs/2312.16400>`_ (Guo, Li, Li, Wang, Shi and Ruan, AAAI 2024).

With :math:`N` users, :math:`M` items, the interaction matrix :math:`\mathbf{R} \in \{0,1\}^{N \times M}`,
its normalised bipartite adjacency :math:`\tilde{\mathbf{A}}` (:mod:`graphrec.graph.adjacency`) and,
for each modality :math:`m`, pretrained item features :math:`\mathbf{X}_m \in \mathbb{R}^{M \times F_m}`
(the row of an item without the modality is zero):

**Local graph embeddings.** The collaborative part is LightGCN over free id embeddings
:math:`\mathbf{E}^{(0)} = [\mathbf{E}_U; \mathbf{E}_I]`,

.. math::
    \mathbf{E}^{(l+1)} = \tilde{\mathbf{A}} \mathbf{E}^{(l)}, \qquad
    \mathbf{E}^c = [\mathbf{E}^c_U; \mathbf{E}^c_I] = \frac{1}{L+1} \sum_{l=0}^{L} \mathbf{E}^{(l)}.

Each modality has its own local embeddings, decoupled from the ids: the items' projected features
:math:`\mathbf{T}_m = \mathbf{X}_m \mathbf{W}_m`, the users' the mean over their items,
:math:`\mathbf{U}_m = \mathbf{D}_U^{-1} \mathbf{R} \mathbf{T}_m`, propagated :math:`L_m` times,
:math:`\mathbf{Z}_m = \tilde{\mathbf{A}}^{L_m} [\mathbf{U}_m; \mathbf{T}_m]`. The local embeddings
are :math:`\mathbf{E}^{loc} = \mathbf{E}^c + \sum_m \bar{\mathbf{Z}}_m`, where a bar normalises each
row to unit length.

**Global hypergraph embeddings.** Each modality has :math:`K` learnable hyperedges
:math:`\mathbf{V}_m \in \mathbb{R}^{K \times F_m}` in its feature space. An item depends on them by
its features, a user through the items it interacted with,

.. math::
    \mathbf{H}^m_I = \operatorname{softmax}\big((\mathbf{X}_m \mathbf{V}_m^\top + \mathbf{G}) / \tau_g\big),
    \qquad
    \mathbf{H}^m_U = \operatorname{softmax}\big((\mathbf{R} \mathbf{X}_m \mathbf{V}_m^\top + \mathbf{G}') / \tau_g\big),

row-wise over the hyperedges, with Gumbel noise :math:`\mathbf{G}, \mathbf{G}'` while training
(the Gumbel-softmax relaxation) and dropout (share :math:`p`) on the dependencies. An item without
the modality, and a user none of whose items has it, belongs to none of its hyperedges (a zero row).
Hypergraph propagation passes the collaborative item embeddings through the hyperedges,
:math:`\mathbf{X}^{(0)} = \mathbf{E}^c_I`,

.. math::
    \mathbf{Y}^{(h)} = \mathbf{H}^{m\top}_I \mathbf{X}^{(h-1)}, \qquad
    \mathbf{X}^{(h)} = \mathbf{H}^m_I \mathbf{Y}^{(h)}, \qquad
    \mathbf{\Gamma}_m = [\mathbf{H}^m_U \mathbf{Y}^{(L_H)}; \mathbf{X}^{(L_H)}],

so that every user and item hears the interests that a hyperedge gathers across the whole catalogue
and user base, not only from its graph neighbours. The global embeddings are
:math:`\mathbf{E}^{glob} = \sum_m \mathbf{\Gamma}_m`.

**Fusion and score.** :math:`\mathbf{E} = \mathbf{E}^{loc} + \alpha\, \bar{\mathbf{E}}^{glob}`
(``global_weight`` :math:`\alpha`); users and items score by inner product of their rows of
:math:`\mathbf{E}`.

**The loss.** BPR on the fused score plus the hypergraph contrastive term
(:meth:`LGMRec.auxiliary_loss`, weight :math:`\lambda_c`, ``cl_weight``): each pair of modalities
:math:`m < m'` contrasts a batch user's global embedding in :math:`m` with its own in :math:`m'`
against every user's, and a positive item's likewise against every item's,

.. math::
    \mathcal{L} = \mathrm{BPR} + \lambda_c \sum_{m < m'} \big( \ell(\mathbf{\Gamma}_{m,U}, \mathbf{\Gamma}_{m',U})
    + \ell(\mathbf{\Gamma}_{m,I}, \mathbf{\Gamma}_{m',I}) \big), \qquad
    \ell = -\frac{1}{B} \sum_{b} \log \frac{\exp(\cos(\mathbf{a}_b, \mathbf{p}_b) / \tau_c)}
    {\sum_{c} \exp(\cos(\mathbf{a}_b, \mathbf{p}_c) / \tau_c)},

with :math:`c` over all users (all items). One modality has no pair, hence no contrastive term.

**Hyperparameters.** The defaults are the authors' (MMRec ``LGMRec.yaml``, its Amazon Baby setting):
:math:`d = 64`, :math:`L = 2`, :math:`L_m = 2`, :math:`K = 4`, :math:`L_H = 1`, keep rate 0.5
(``hyperedge_dropout`` :math:`p = 0.5`), :math:`\alpha = 0.3`, :math:`\tau_g = \tau_c = 0.2`. The authors'
:math:`\lambda_c = 10^{-4}` weighs a sum over the batch's 2048 rows; here the term is a mean over the
batch, whatever its size, so the same weight is :math:`2048 \cdot 10^{-4} \approx 0.2`. Their L2 term
(:math:`10^{-6}` on the norms of the batch's final embeddings) is the trainer's ``reg`` here, on the id
embeddings as for every graphrec model.

Differences from the authors' code, and why: evaluation and serving are deterministic (the
dependencies without Gumbel noise or dropout; the authors' code draws noise at test time too); the
noise is drawn from a generator seeded by the model's seed and a counter of training forwards,
saved with the weights, so that every process of a distributed run draws the same and a resumed run
the same as an uninterrupted one; any number of modalities works, and items missing one (the
authors' code needs exactly image and text).

**Why LGMRec.** MGCN and SMORE refine each user's and item's local neighbourhood (MGCN with
behaviour-purified modality features on item–item graphs, SMORE with modality features fused in the
spectral domain); LGMRec adds what neither has, global interests: a few hyperedges per modality pool
the interests of users who share no item, so that a user with a handful of interactions still
borrows from the whole population, which is what sparse data rewards. MMRec's own LGMRec led the
comparison on the sparse synthetic set of ``benchmarks/mmrec_compare.py`` (10,000 users, density
0.15%, one seed): test Recall@20 0.3117, against 0.3089 for MMRec's LightGCN and 0.3083 for its
FREEDOM; on Amazon Baby the paper reports 0.1002, against 0.0992 for FREEDOM and 0.0754 for LightGCN.

Neighbour sampling does not apply: the hypergraph couples every user and item
(``supports_subgraphs`` is off, so the trainer refuses it). User features are not read: as in the
paper, a user is its id embedding, its items' features and its hyperedges.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from graphrec.data.dataset import Dataset
from graphrec.graph.adjacency import normalized_adjacency, propagate, sparse_product, torch_csr
from graphrec.graph.hetero import required_modalities
from graphrec.models.base import ModelOptions, Recommender, check_dropout, check_non_negative, check_positive


@dataclass(frozen=True)
class LGMRecOptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "width of the id embeddings and of the projected features",
                                           "space": {"choices": (32, 64, 128)}})
    layers: int = field(default=2, metadata={"help": "LightGCN layers L of the id embeddings"})
    modality_layers: int = field(default=2, metadata={
        "help": "propagations L_m of each modality's local embeddings on the user–item graph"})
    hyperedges: int = field(default=4, metadata={"help": "learnable hyperedges K per modality",
                                                 "space": {"choices": (4, 16, 64)}})
    hyper_layers: int = field(default=1, metadata={"help": "hypergraph propagation layers L_H",
                                                   "space": {"choices": (1, 2)}})
    hyperedge_dropout: float = field(default=0.5, metadata={
        "help": "share p of the hyperedge dependencies dropped while training (1 - the authors' keep rate)",
        "space": {"low": 0.5, "high": 0.8}})
    global_weight: float = field(default=0.3, metadata={"help": "weight alpha of the global hypergraph embeddings",
                                                        "space": {"low": 0.2, "high": 0.6}})
    cl_weight: float = field(default=0.2, metadata={
        "help": "weight of the hypergraph contrastive term (a mean over the batch)"})
    gumbel_temperature: float = field(default=0.2, metadata={
        "help": "temperature of the Gumbel-softmax over each modality's hyperedges"})
    cl_temperature: float = field(default=0.2, metadata={"help": "temperature of the contrastive term"})
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})

    def __post_init__(self) -> None:
        check_positive(self, "dim", "hyperedges", "hyper_layers", "gumbel_temperature", "cl_temperature")
        check_non_negative(self, "layers", "modality_layers", "global_weight", "cl_weight")
        check_dropout(self, "hyperedge_dropout")


def hypergraph_contrast(anchors: Tensor, positives: Tensor, candidates: Tensor, temperature: float) -> Tensor:
    r""":math:`\ell` of the module docstring: InfoNCE of ``anchors`` ``[B, d]`` against their
    ``positives`` ``[B, d]``, each over all ``candidates`` ``[C, d]`` (the positives among them),
    by cosine at ``temperature``; the mean over the batch."""
    anchors = F.normalize(anchors, dim=-1)
    positive = (anchors * F.normalize(positives, dim=-1)).sum(-1) / temperature
    everything = torch.logsumexp(anchors @ F.normalize(candidates, dim=-1).t() / temperature, dim=-1)
    return (everything - positive).mean()


class LGMRec(Recommender):
    """LGMRec over the training edges ``users[k] -> items[k]``, with the pretrained ``features``
    ``[I, F_m]`` of each modality and their ``masks`` ``[I]`` (False: the item lacks the modality).

    The graphs and features are non-persistent buffers, rebuilt from the same data to load a
    checkpoint; the counter that seeds the training noise is saved with the weights.
    """

    name = "lgmrec"
    Options = LGMRecOptions
    reads_features = True
    adjacency: Tensor  # buffers registered in __init__
    interactions: Tensor
    interactions_t: Tensor
    inverse_degree: Tensor
    draws: Tensor

    def __init__(self, num_users: int, num_items: int, users: Tensor, items: Tensor, features: Sequence[Tensor],
                 masks: Sequence[Tensor], dim: int = 64, num_layers: int = 2, modality_layers: int = 2,
                 hyperedges: int = 4, hyper_layers: int = 1, hyperedge_dropout: float = 0.5, global_weight: float = 0.3,
                 cl_weight: float = 0.2, gumbel_temperature: float = 0.2, cl_temperature: float = 0.2,
                 seed: int = 0) -> None:
        super().__init__(num_users, num_items)
        if not features:
            raise ValueError("LGMRec needs at least one modality's item features")
        if len(masks) != len(features):
            raise ValueError(f"need one mask per modality, got {len(masks)} masks for {len(features)} modalities")
        for values, mask in zip(features, masks, strict=True):
            if values.dim() != 2 or values.size(0) != num_items:
                raise ValueError(f"features must be ({num_items}, F), got {tuple(values.shape)}")
            if tuple(mask.shape) != (num_items,):
                raise ValueError(f"masks must be ({num_items},), got {tuple(mask.shape)}")
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.modality_layers = int(modality_layers)
        self.num_hyperedges = int(hyperedges)
        self.hyper_layers = int(hyper_layers)
        self.hyperedge_dropout = float(hyperedge_dropout)
        self.global_weight = float(global_weight)
        self.cl_weight = float(cl_weight)
        self.gumbel_temperature = float(gumbel_temperature)
        self.cl_temperature = float(cl_temperature)
        self.seed = int(seed)

        users, items = users.to(torch.long), items.to(torch.long)
        self.register_buffer("adjacency", normalized_adjacency(num_users, num_items, users, items), persistent=False)
        interactions = sp.csr_matrix((np.ones(users.numel(), np.float32), (users.numpy(), items.numpy())),
                                     shape=(num_users, num_items))
        interactions.data[:] = 1.0  # repeated interactions count once
        self.register_buffer("interactions", torch_csr(interactions), persistent=False)
        self.register_buffer("interactions_t", torch_csr(interactions.T), persistent=False)
        degree = np.asarray(interactions.sum(axis=1)).ravel()
        self.register_buffer("inverse_degree", torch.from_numpy(1.0 / np.maximum(degree, 1.0)).to(torch.float32),
                             persistent=False)
        self.num_modalities = len(features)
        for index, (values, mask) in enumerate(zip(features, masks, strict=True)):
            have = mask.to(torch.bool)
            zeroed = torch.where(have.unsqueeze(1), values.detach().to(torch.float32), 0.0)
            user_has = np.asarray(interactions @ have.numpy().astype(np.float32)).ravel() > 0
            self.register_buffer(f"features_{index}", zeroed, persistent=False)
            self.register_buffer(f"item_mask_{index}", have.to(torch.float32), persistent=False)
            self.register_buffer(f"user_mask_{index}", torch.from_numpy(user_has.astype(np.float32)),
                                 persistent=False)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))

        self.user_embedding = torch.nn.Embedding(num_users, dim)
        self.item_embedding = torch.nn.Embedding(num_items, dim)
        self.projections = torch.nn.ModuleList([torch.nn.Linear(values.size(1), dim, bias=False)
                                                for values in features])
        self.hyperedges = torch.nn.ParameterList([torch.nn.Parameter(torch.empty(hyperedges, values.size(1)))
                                                  for values in features])
        #: Per-modality global embeddings of the last training forward, for :meth:`auxiliary_loss`.
        self._last_global: list[Tensor] | None = None
        self.reset_parameters()

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: LGMRecOptions, seed: int = 0) -> LGMRec:
        """LGMRec over the dataset's training interactions and its chosen modalities (all by default)."""
        names = required_modalities(dataset, options.modalities, "lgmrec", "its modality embeddings and hyperedges")
        chosen = [dataset.features[name] for name in names]
        users, items = dataset.pairs("train")
        return cls(dataset.num_users, dataset.num_items, torch.from_numpy(users), torch.from_numpy(items),
                   [torch.from_numpy(feature.values) for feature in chosen],
                   [torch.from_numpy(np.asarray(feature.mask, dtype=bool)) for feature in chosen],
                   dim=options.dim, num_layers=options.layers, modality_layers=options.modality_layers,
                   hyperedges=options.hyperedges, hyper_layers=options.hyper_layers,
                   hyperedge_dropout=options.hyperedge_dropout, global_weight=options.global_weight,
                   cl_weight=options.cl_weight,
                   gumbel_temperature=options.gumbel_temperature, cl_temperature=options.cl_temperature, seed=seed)

    def reset_parameters(self) -> None:
        # Xavier-uniform everywhere, as the authors' code initialises the embeddings, projections and hyperedges.
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)
        for projection in self.projections:
            torch.nn.init.xavier_uniform_(cast(torch.nn.Linear, projection).weight)
        for hyperedges in self.hyperedges:
            torch.nn.init.xavier_uniform_(hyperedges)
        self.draws.zero_()
        self._last_global = None

    @property
    def features(self) -> list[Tensor]:
        """The pretrained features ``[I, F_m]`` of each modality (zero rows where an item lacks it)."""
        return [getattr(self, f"features_{index}") for index in range(self.num_modalities)]

    def _collaborative(self) -> Tensor:
        """:math:`\\mathbf{E}^c` ``[N + M, d]``."""
        x = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        total = x
        for _ in range(self.num_layers):
            x = propagate(self.adjacency, x)
            total = total + x
        return total / (self.num_layers + 1)

    def _modality_local(self, index: int) -> Tensor:
        """:math:`\\mathbf{Z}_m` ``[N + M, d]`` of modality ``index``."""
        items = self.projections[index](self.features[index])
        users = sparse_product(self.interactions, self.interactions_t, items) * self.inverse_degree.unsqueeze(1)
        x = torch.cat([users, items])
        for _ in range(self.modality_layers):
            x = propagate(self.adjacency, x)
        return x

    def _dependencies(self, logits: Tensor, mask: Tensor, generator: torch.Generator | None) -> Tensor:
        """Rows of :math:`\\mathbf{H}^m` from their hyperedge ``logits`` ``[n, K]``: a Gumbel-softmax with
        dropout when a ``generator`` draws the noise (training), a plain softmax otherwise."""
        if generator is not None:
            uniform = torch.rand(logits.shape, generator=generator, device=logits.device)
            logits = logits - torch.log(-torch.log(uniform.clamp(min=1e-20)))
        weights = torch.softmax(logits / self.gumbel_temperature, dim=1) * mask.unsqueeze(1)
        if generator is not None and self.hyperedge_dropout > 0:
            kept = torch.rand(logits.shape, generator=generator, device=logits.device) >= self.hyperedge_dropout
            weights = weights * kept / (1.0 - self.hyperedge_dropout)
        return weights

    def _hypergraph(self, index: int, items: Tensor, generator: torch.Generator | None) -> Tensor:
        """:math:`\\mathbf{\\Gamma}_m` ``[N + M, d]`` of modality ``index`` from the collaborative item
        embeddings ``items`` ``[M, d]``."""
        item_logits = self.features[index] @ self.hyperedges[index].t()
        user_logits = sparse_product(self.interactions, self.interactions_t, item_logits)
        item_hyper = self._dependencies(item_logits, getattr(self, f"item_mask_{index}"), generator)
        user_hyper = self._dependencies(user_logits, getattr(self, f"user_mask_{index}"), generator)
        x = items
        for _ in range(self.hyper_layers):
            hyperedges = item_hyper.t() @ x
            x = item_hyper @ hyperedges
        return torch.cat([user_hyper @ hyperedges, x])

    def _embed(self, stochastic: bool) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``(users, items, [Γ_m])``: the fused representations and each modality's global embeddings."""
        generator = None
        if stochastic:
            generator = torch.Generator(device=self.draws.device)
            generator.manual_seed(self.seed * 1_000_003 + int(self.draws))
            with torch.no_grad():
                self.draws += 1
        collaborative = self._collaborative()
        local = collaborative
        for index in range(self.num_modalities):
            local = local + F.normalize(self._modality_local(index), dim=1)
        parts = [self._hypergraph(index, collaborative[self.num_users:], generator)
                 for index in range(self.num_modalities)]
        fused = local + self.global_weight * F.normalize(torch.stack(parts).sum(0), dim=1)
        return fused[:self.num_users], fused[self.num_users:], parts

    def embed(self) -> tuple[Tensor, Tensor]:
        """With Gumbel noise and dropout on the hyperedge dependencies while training, without otherwise."""
        user_emb, item_emb, parts = self._embed(stochastic=self.training)
        self._last_global = parts if torch.is_grad_enabled() else None
        return user_emb, item_emb

    @torch.no_grad()
    def embed_layerwise(self) -> tuple[Tensor, Tensor]:
        """Inference: always deterministic."""
        user_emb, item_emb, _ = self._embed(stochastic=False)
        return user_emb, item_emb

    def auxiliary_loss(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, positives: Tensor,
                       negatives: Tensor) -> Tensor | None:
        """:math:`\\lambda_c` times the hypergraph contrastive terms (module docstring), on the global
        embeddings of the :meth:`embed` that gave ``user_emb`` and ``item_emb``."""
        if self.cl_weight == 0 or self.num_modalities < 2:
            return None
        parts = self._last_global if self._last_global is not None else self._embed(stochastic=self.training)[2]
        self._last_global = None
        total = user_emb.new_zeros(())
        for first, second in itertools.combinations(parts, 2):
            first_users, first_items = first[:self.num_users], first[self.num_users:]
            second_users, second_items = second[:self.num_users], second[self.num_users:]
            total = total + hypergraph_contrast(first_users[users], second_users[users], second_users,
                                                self.cl_temperature)
            total = total + hypergraph_contrast(first_items[positives], second_items[positives], second_items,
                                                self.cl_temperature)
        return self.cl_weight * total

    def user_ego(self, users: Tensor) -> Tensor:
        return self.user_embedding(users)

    def item_ego(self, items: Tensor) -> Tensor:
        return self.item_embedding(items)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, dim={self.dim}, num_layers={self.num_layers}, "
                f"modality_layers={self.modality_layers}, hyperedges={self.num_hyperedges}, "
                f"hyper_layers={self.hyper_layers}, hyperedge_dropout={self.hyperedge_dropout}, "
                f"global_weight={self.global_weight}, cl_weight={self.cl_weight}")


__all__ = ["LGMRec", "LGMRecOptions", "hypergraph_contrast"]

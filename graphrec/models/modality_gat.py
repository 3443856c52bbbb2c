r"""ModalityGAT: modality attention on items, attentive propagation over the user–item graph, and
content channels that keep each source in the score after propagation.

**Item representation.** Each item :math:`i` has an id embedding :math:`\mathbf{e}_i` and
a set :math:`\mathcal{S}_i` of available *sources*: the pretrained features
:math:`\mathbf{x}_{i,m}` of each modality it has (text, image, ...) and, per side-entity
type it has (genre, category, brand), the mean of its entities' learned embeddings. With a
projection :math:`\mathbf{z}_{i,s} = \mathbf{W}_s \mathbf{x}_{i,s} + \mathbf{b}_s` per source,

.. math::
    \mathbf{h}_i = \mathbf{e}_i + \sum_{s \in \mathcal{S}_i} \alpha_{i,s} \mathbf{z}_{i,s},
    \qquad \alpha_{i,s} = \frac{\exp \mathbf{a}^\top \tanh(\mathbf{W}_a \mathbf{z}_{i,s} + \mathbf{b})}
    {\sum_{t \in \mathcal{S}_i} \exp \mathbf{a}^\top \tanh(\mathbf{W}_a \mathbf{z}_{i,t} + \mathbf{b})}.

Missing sources are out of the softmax; an item with no source at all has
:math:`\alpha_i = \mathbf{0}` and :math:`\mathbf{h}_i = \mathbf{e}_i`. An item with no
training interaction has no trained :math:`\mathbf{e}_i`, so it uses
:math:`\mathbf{h}_i = \sum_s \alpha_{i,s} \mathbf{z}_{i,s}`: the item tower from content alone. The weights of the
last forward are kept for explanations (:meth:`ModalityGAT.modality_attention`). The
attention can be swapped for another :class:`~graphrec.models.fusion.Fusion` strategy
(``fusion=``) for ablations; with ``concat``, learned placeholders stand in for missing sources.

**User representation**, symmetric to the item's (``user_entities``, ``user_modalities``). A user
:math:`u` has its id embedding :math:`\mathbf{e}_u` and its own sources :math:`\mathcal{S}_u`: per
attribute column (age bucket, gender, occupation, ...) the mean learned embedding of its entities,
per user modality its features (:mod:`graphrec.models.user_side`), each projected by its own
:math:`\mathbf{W}_s`; a second attention, with its own parameters, weighs them,

.. math::
    \mathbf{e}'_u = w_u \mathbf{e}_u + (1 - w_u) \bar{\mathbf{e}}
    + \sum_{s \in \mathcal{S}_u} \alpha_{u,s} \mathbf{z}_{u,s},
    \qquad \alpha_{u,s} = \operatorname{softmax}_{s \in \mathcal{S}_u}
    \mathbf{a}_U^\top \tanh(\mathbf{W}_{a,U} \mathbf{z}_{u,s} + \mathbf{b}_U),

and :math:`\mathbf{e}'_u` replaces :math:`\mathbf{e}_u` in :math:`\mathbf{x}^{(0)}`. :math:`w_u = 0` for a
user without training interactions (its :math:`\mathbf{e}_u` never trained), which is then placed by
its sources and :math:`\bar{\mathbf{e}}`, the mean id embedding of the warm users, held fixed (its
expected id embedding): it receives no message, so its final vector is :math:`\mathbf{e}'_u / (L + 1)`,
and each source's share of a score is :math:`\langle \alpha_{u,s} \mathbf{z}_{u,s}, \mathbf{x}_i \rangle
/ (L + 1)` (:meth:`ModalityGAT.user_source_parts`, which explanations show with the weights
:math:`\alpha_{u,s}`). Otherwise :math:`w_u = 1`, or, in training with ``user_id_dropout`` :math:`p`,
0 with probability :math:`p` per warm user and forward (DropoutNet, Volkovs et al., NeurIPS 2017),
so that the sources also learn to place a user alone. With content channels, a cold user's free
preferences :math:`\boldsymbol{\theta}_{u,s}` are left out too.

**Propagation.** On the homogeneous graph of users and items joined by the training
interactions in both directions, :math:`\mathbf{x}^{(0)} = [\mathbf{e}_u ; \mathbf{h}_i]` and
:math:`L` graph attention layers (:class:`GraphAttention`)

.. math::
    \mathbf{x}^{(l+1)}_v = \sum_{w \in \mathcal{N}(v)} \beta^{(l)}_{vw} \mathbf{x}^{(l)}_w, \qquad
    \beta^{(l)}_{vw} = \frac{d_v}{\sqrt{d_v d_w}} \operatorname{softmax}_{w \in \mathcal{N}(v)}
    \Big(b \tanh \frac{s^{(l)}_{vw}}{b}\Big), \qquad
    s^{(l)}_{vw} = \operatorname{LeakyReLU}\big(\mathbf{c}^\top [\boldsymbol{\Theta}^{(l)} \mathbf{x}^{(l)}_v \|
    \boldsymbol{\Theta}^{(l)} \mathbf{x}^{(l)}_w]\big),

with :math:`d_v = |\mathcal{N}(v)|`, combined as in LightGCN, :math:`\mathbf{x}_v = \frac{1}{L+1}
\sum_{l=0}^{L} \mathbf{x}^{(l)}_v`, and :math:`\hat{y}_{ui} = \langle \mathbf{x}_u, \mathbf{x}_i \rangle`.
With equal scores the softmax is :math:`1/d_v` and :math:`\beta_{vw} = 1/\sqrt{d_v d_w}`: exactly
LightGCN's normalised adjacency. The attention *re-weights* a node's neighbours around that, each
by at most a factor :math:`e^{2b}` relative to another (``attention_bound`` :math:`b`; ``0`` gives
LightGCN itself). There is no non-linearity between layers and no transformation of the messages:
LightGCN showed that both only hurt collaborative filtering; :math:`\boldsymbol{\Theta}` serves the
attention scores only.

Why not the plain GAT? ``normalization="softmax", attention_bound=None, transform_messages=True``
gives the maths of :class:`~torch_geometric.nn.conv.GATConv` (each node the attention-weighted
*mean* of its transformed neighbours). On MovieLens-100K validation it reached only about 0.83
of LightGCN's Recall@20: a mean forgets how many neighbours a node has, which the
:math:`1/\sqrt{d_v d_w}` weights keep. Unbounded, the learned re-weighting still cost accuracy
against LightGCN's fixed weights; bounded, it gains a little over them
(``benchmarks/results/multimodal.md`` has the comparison, one change at a time). Items
without training interactions receive no messages and keep :math:`\mathbf{h}_i / (L + 1)`,
so content still places cold items.

**Content channels** (``channels``, the default). Propagation alone averages a warm item's content
away: with :math:`L = 0` the model above is close to VBPR, with three layers close to LightGCN. So,
as MMGCN and GRCN keep a channel per modality, each source :math:`s` also enters the score directly,
*after* propagation: item :math:`i` shows :math:`\mathbf{c}_{i,s} = \alpha_{i,s} \mathbf{z}_{i,s}`
(the same attention weights and projections as above, not propagated) and user :math:`u` has a
preference per source,

.. math::
    \mathbf{p}_{u,s} = \boldsymbol{\theta}_{u,s} + \frac{1}{|\mathcal{N}(u)|} \sum_{i \in \mathcal{N}(u)}
    \mathbf{c}_{i,s}, \qquad
    \hat{y}_{ui} = \langle \mathbf{x}_u, \mathbf{x}_i \rangle
    + \sum_{s} \beta_{u,s} \langle \mathbf{p}_{u,s}, \mathbf{c}_{i,s} \rangle,

a free vector :math:`\boldsymbol{\theta}_{u,s}` (``own_preferences``) plus (``channel_propagation``)
the mean content of the user's training items: one hop of propagation over the user–item graph, which leaves the items'
content as it is. With ``user_attention``, :math:`\beta_{u,s} = \operatorname{softmax}_s
\mathbf{a}_u^\top \tanh(\mathbf{W}_u \mathbf{p}_{u,s} + \mathbf{b}_u)`, else :math:`\beta_{u,s} = 1`;
the channels are then fused per user–item pair by :math:`\beta_{u,s} \alpha_{i,s}`. The score stays
one inner product, of :math:`[\mathbf{x}_u \| \beta_{u,1} \mathbf{p}_{u,1} \| \dots]` and
:math:`[\mathbf{x}_i \| \mathbf{c}_{i,1} \| \dots]` (:math:`(1 + S)` ``dim`` wide), so export,
indexing and full ranking work unchanged. Because :math:`\alpha_{i,s}` now scales a source's share of
the score, it has to say which source predicts the item's users, which is what explanations show.

**Item–item content graph** (``item_graph_neighbours`` :math:`k > 0`, as in LATTICE and FREEDOM):
:math:`\tilde{\mathbf{A}}`, the mean over modalities of the symmetric-normalised :math:`k`-NN cosine
graphs of the pretrained features (:mod:`graphrec.graph.content`), frozen, adds
:math:`\sum_j \tilde{A}_{ij} \mathbf{h}_j` to :math:`\mathbf{x}_i`.

**Alignment** (``--contrastive-weight``, :meth:`ModalityGAT.alignment_loss`): InfoNCE between the fused
content and the id embedding (SLMRec), or BM3's bootstrapped, negative-free version. The defaults are
the configuration best on the validation splits of the synthetic set and MovieLens-100K
(``benchmarks/results/multimodal_ablation.md`` has every component on and off).

:meth:`~graphrec.models.base.Recommender.regularization` penalises the id embeddings
:math:`\mathbf{e}_u, \mathbf{e}_i` and the user preferences :math:`\boldsymbol{\theta}_u` of the
batch; projections and attention are shared weights (use weight decay for them if needed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn.inits import glorot
from torch_geometric.utils import scatter, softmax

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError, GraphrecError
from graphrec.graph.adjacency import propagate_weighted, symmetric_csr_pattern
from graphrec.graph.content import knn_cosine_graph, symmetric_normalize, weighted_sum
from graphrec.graph.hetero import (
    INTERACTS,
    REV_INTERACTS,
    GraphConfig,
    build_graph,
    item_entities,
    item_modalities,
)
from graphrec.models.base import (
    EMBEDDING_INIT_STD,
    ModelOptions,
    Recommender,
    check_both_directions,
    check_dropout,
    check_non_negative,
    check_positive,
    edges_within_hops,
    info_nce,
    layerwise_mean,
)
from graphrec.models.fusion import FUSION_STRATEGIES, Fusion
from graphrec.models.user_side import (
    AVERAGE_USER,
    Attributes,
    UserAttributes,
    UserSources,
    average_user,
    subset_positions,
    warm_users,
)

#: The entity columns the GAT uses unless told otherwise: whichever of them a dataset has (chosen
#: columns must all exist).
DEFAULT_ENTITIES = ("genres", "categories", "brand")
#: The fusions the GAT offers: every strategy but ``late``, which fuses scores, not sources.
GAT_FUSIONS = tuple(strategy for strategy in FUSION_STRATEGIES if strategy != "late")
#: What :meth:`ModalityGAT.alignment_loss` computes.
ALIGNMENTS = ("infonce", "bootstrap")
#: Dropout on the stop-gradient targets of the bootstrapped alignment (BM3's setting).
BOOTSTRAP_DROPOUT = 0.3


@dataclass(frozen=True)
class ModalityGATOptions(ModelOptions):
    dim: int = field(default=64, metadata={"help": "embedding width", "space": {"choices": (32, 64, 128)}})
    layers: int = field(default=3, metadata={"help": "propagation layers L", "space": {"low": 1, "high": 3}})
    heads: int = field(default=1, metadata={"help": "attention heads per layer", "space": {"choices": (1, 2, 4)}})
    dropout: float = field(default=0.0, metadata={"help": "dropout on the attention coefficients",
                                                  "space": {"low": 0.0, "high": 0.5}})
    fusion: str = field(default="attention", metadata={"help": "how an item's sources combine: "
                                                                + ", ".join(GAT_FUSIONS),
                                                        "space": {"choices": GAT_FUSIONS}})
    entities: tuple[str, ...] = field(default=DEFAULT_ENTITIES, metadata={
        "help": "item columns that become side-entity nodes"})
    modalities: tuple[str, ...] | None = field(default=None, metadata={
        "help": "modalities to read, comma-separated (all: every one the dataset has)"})
    channels: bool = field(default=False, metadata={
        "help": "score each source's content against the user's preference for it, beside the propagated "
                "embeddings (the content channels; off by default: at 3 layers they lost on the validation "
                "splits of ml-100k and the synthetic set, benchmarks/results/multimodal_ablation.md)"})
    channel_propagation: bool = field(default=True, metadata={
        "help": "a user's preference per source adds the mean content of the user's training items"})
    own_preferences: bool = field(default=True, metadata={
        "help": "a user's preference per source includes a free vector of its own (else only the mean content)"})
    regularize_content: bool = field(default=False, metadata={
        "help": "the L2 term also penalises the batch items' content channels (as VBPR's does its content)"})
    user_attention: bool = field(default=False, metadata={
        "help": "user-side attention over the content channels (beside the item-side attention)"})
    item_graph_neighbours: int = field(default=0, metadata={
        "help": "k of the frozen k-NN cosine item-item content graph added to the items (0: none)"})
    alignment: str = field(default="infonce", metadata={
        "help": "what --contrastive-weight trains: infonce (content vs id, in-batch negatives) or "
                "bootstrap (BM3-style, no negatives)"})
    user_entities: bool = field(default=True, metadata={
        "help": "the user attribute columns (age bucket, gender, ...) become user sources, weighed by a user-side "
                "attention beside the user's id embedding"})
    user_modalities: bool = field(default=True, metadata={
        "help": "the user modalities (encoded user text, ...) become user sources"})
    user_id_dropout: float = field(default=0.0, metadata={
        "help": "in training, drop a warm user's id embedding with this probability, so that its sources learn "
                "to place it alone, as they place a cold user", "space": {"low": 0.0, "high": 0.5}})

    #: Runs saved before the content channels were trained without them.
    added_later: ClassVar[Mapping[str, Any]] = {"channels": False, "channel_propagation": False,
                                                "own_preferences": True, "regularize_content": False,
                                                "user_attention": False,
                                                "item_graph_neighbours": 0,
                                                "alignment": "infonce", "user_entities": False,
                                                "user_modalities": False, "user_id_dropout": 0.0}

    def __post_init__(self) -> None:
        check_positive(self, "dim", "heads")
        check_non_negative(self, "layers", "item_graph_neighbours")
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"unknown alignment {self.alignment!r}; choose one of {', '.join(ALIGNMENTS)}",
                              field="alignment")
        if self.channels and not (self.own_preferences or self.channel_propagation):
            raise ConfigError("content channels need own preferences, channel propagation or both",
                              field="own_preferences")
        if self.channels and self.fusion == "concat":
            raise ConfigError("content channels need a fusion that projects each source; concat does not "
                              "(leave --channels off with it)", field="fusion")
        check_dropout(self, "dropout", "user_id_dropout")
        if self.fusion not in GAT_FUSIONS:
            raise ConfigError(f"unknown fusion {self.fusion!r}; choose one of {', '.join(GAT_FUSIONS)}",
                              field="fusion")


class GraphAttention(torch.nn.Module):
    r"""One graph attention layer, :math:`\mathbf{x}'_v = \frac{1}{H} \sum_{h=1}^{H} \sum_{w \in
    \mathcal{N}(v)} \beta^{h}_{vw} \boldsymbol{\Theta}^{h} \mathbf{x}_w` with :math:`\beta^h_{vw} =
    \operatorname{softmax}_w \operatorname{LeakyReLU}(\mathbf{c}_{\text{dst}}^{h\top}
    \boldsymbol{\Theta}^h \mathbf{x}_v + \mathbf{c}_{\text{src}}^{h\top} \boldsymbol{\Theta}^h \mathbf{x}_w)`.

    By default, the same parameters (``lin``, ``att_src``, ``att_dst``) and the same output as
    :class:`~torch_geometric.nn.conv.GATConv` with ``concat=False, add_self_loops=False,
    bias=False``, but the aggregation is a sparse CSR product whose values are the attention
    coefficients (:func:`~graphrec.graph.adjacency.propagate_weighted`): GATConv gathers and
    scatters ``[E, d]`` messages, which on ml-100k makes a layer's forward and backward pass
    more than ten times slower on CPU. The graph must be symmetric (user–item edges both ways).
    :meth:`forward`'s options give :class:`ModalityGAT`'s variant (see the module docstring).
    """

    def __init__(self, dim: int, heads: int = 1, dropout: float = 0.0, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.dim = int(dim)
        self.heads = int(heads)
        self.dropout = float(dropout)
        self.negative_slope = float(negative_slope)
        self.lin = torch.nn.Linear(dim, heads * dim, bias=False)
        self.att_src = torch.nn.Parameter(torch.empty(1, heads, dim))
        self.att_dst = torch.nn.Parameter(torch.empty(1, heads, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        glorot(self.lin.weight)
        glorot(self.att_src)
        glorot(self.att_dst)

    def forward(self, x: Tensor, crow_indices: Tensor, col_indices: Tensor, row_indices: Tensor,
                transpose: Tensor, edge_scale: Tensor | None = None, bound: float | None = None,
                transform_messages: bool = True) -> Tensor:
        """``x`` ``[N, dim]`` on the pattern of :func:`~graphrec.graph.adjacency.symmetric_csr_pattern`.

        ``edge_scale`` ``[E]`` multiplies each edge's coefficient after the softmax; ``bound``
        squashes the scores into ``[-bound, bound]`` (``0``: equal weights); without
        ``transform_messages`` the neighbours' ``x`` is summed as it is, ``lin`` scoring only.
        """
        h, score_src, score_dst = self.node_scores(x, bound)
        weights = self.edge_weights(score_src, score_dst, col_indices, row_indices, x.size(0), edge_scale, bound)
        if not transform_messages:
            return propagate_weighted(weights.mean(1), x, crow_indices, col_indices, transpose)
        h = self.lin(x).view(-1, self.heads, self.dim) if h is None else h
        out = propagate_weighted(weights[:, 0], h[:, 0], crow_indices, col_indices, transpose)
        for head in range(1, self.heads):
            out = out + propagate_weighted(weights[:, head], h[:, head], crow_indices, col_indices, transpose)
        return out / self.heads

    def forward_edges(self, x: Tensor, source: Tensor, target: Tensor, num_targets: int,
                      edge_scale: Tensor | None = None, bound: float | None = None,
                      transform_messages: bool = True, target_offset: int = 0) -> Tensor:
        """The same layer on an edge list (a sampled subgraph, or a chunk of rows): edge ``e``
        sends ``x[source[e]]`` to output row ``target[e] - target_offset`` of ``num_targets``.
        The softmax runs over the edges present, so each target must come with all of its
        (sampled) incoming edges. Plain autograd: meant for subgraphs, not the whole graph."""
        h, score_src, score_dst = self.node_scores(x, bound)
        local = target - target_offset
        weights = self.edge_weights(score_src, score_dst, source, target, num_targets, edge_scale, bound,
                                    segment=local)
        messages = x.index_select(0, source).unsqueeze(1) if not transform_messages else (
            (self.lin(x).view(-1, self.heads, self.dim) if h is None else h).index_select(0, source))
        if not transform_messages:
            weights = weights.mean(1, keepdim=True)
        weighted = (messages * weights.unsqueeze(-1)).mean(1)
        return x.new_zeros(num_targets, x.size(1)).index_add(0, local, weighted)

    def node_scores(self, x: Tensor, bound: float | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(h, s_src, s_dst)``: the transformed nodes ``[N, heads, dim]`` and each node's two
        halves of the attention score ``[N, heads]``; all ``None`` when ``bound == 0``."""
        if bound == 0:
            return None, None, None
        h = self.lin(x).view(-1, self.heads, self.dim)
        return h, (h * self.att_src).sum(-1), (h * self.att_dst).sum(-1)

    def edge_weights(self, score_src: Tensor | None, score_dst: Tensor | None, source: Tensor, target: Tensor,
                     num_nodes: int, edge_scale: Tensor | None, bound: float | None,
                     segment: Tensor | None = None) -> Tensor:
        """Attention coefficients ``[E, heads]``, normalised over the edges of each ``segment``
        (default: each target); ``score_*`` from :meth:`node_scores`."""
        segment = target if segment is None else segment
        if score_src is None or score_dst is None:
            scores = torch.zeros(source.numel(), self.heads, device=source.device)
        else:
            # index_select, whose backward is index_add_: indexing's index_put_ is several times slower on CPU
            scores = F.leaky_relu(score_src.index_select(0, source) + score_dst.index_select(0, target),
                                  self.negative_slope)
        if bound is None:
            weights = softmax(scores, segment, num_nodes=num_nodes)  # [E, heads]
        else:
            # Bounded scores cannot overflow exp(), so the softmax needs no running maximum.
            unnormalised = torch.exp(bound * torch.tanh(scores / bound)) if bound > 0 else torch.ones_like(scores)
            totals = unnormalised.new_zeros(num_nodes, self.heads).index_add(0, segment, unnormalised)
            weights = unnormalised / totals.index_select(0, segment)
        if edge_scale is not None:
            weights = weights * edge_scale.unsqueeze(1)
        return F.dropout(weights, p=self.dropout, training=self.training)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, heads={self.heads}, dropout={self.dropout}"


class ModalityGAT(Recommender):
    r"""Modality attention and graph attention (see the module docstring).

    Args:
        num_users, num_items: node counts.
        edge_index: ``(2, E)`` training interactions, user index then item index.
        modality_features: per modality, item-aligned features ``[num_items, F_m]``.
        modality_masks: per modality, ``[num_items]`` bool, which items have it.
        entity_index: per entity type, ``(2, E_t)`` item index then entity index.
        num_entities: per entity type, how many entities there are.
        dim: embedding width; num_layers: GAT layers; heads: attention heads per layer
        (averaged); dropout: dropout on the GAT attention coefficients.
        fusion: how sources combine, one of :data:`~graphrec.models.fusion.FUSION_STRATEGIES`
        but ``late`` (default ``attention``, the model above).
        normalization: ``symmetric`` (the :math:`d_v / \sqrt{d_v d_w}` factor above) or ``softmax``
        (none: each node an attention-weighted mean of its neighbours, as GATConv).
        attention_bound: :math:`b` above; ``None`` leaves the scores unbounded (GATConv), ``0``
        makes every weight equal (LightGCN propagation).
        transform_messages: pass messages through :math:`\boldsymbol{\Theta}` (GATConv) rather
        than as they are.

    Features, masks and graph are non-persistent buffers: not saved in the ``state_dict``.
    """

    name = "gat"
    Options = ModalityGATOptions
    supports_subgraphs = True
    supports_alignment = True
    reads_features = True
    scores_new_users = True
    # buffers registered in __init__ (and per source: features_*, mask_*, entity_index_*)
    crow_indices: Tensor
    col_indices: Tensor
    row_indices: Tensor
    transpose: Tensor
    degree: Tensor
    edge_scale: Tensor
    warm_items: Tensor
    warm_users: Tensor
    mean_scale: Tensor
    item_graph_rows: Tensor  # with an item graph only
    item_graph_columns: Tensor
    item_graph_values: Tensor

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor,
                 modality_features: Mapping[str, Tensor] | None = None,
                 modality_masks: Mapping[str, Tensor] | None = None,
                 entity_index: Mapping[str, Tensor] | None = None,
                 num_entities: Mapping[str, int] | None = None,
                 dim: int = 64, num_layers: int = 2, heads: int = 1, dropout: float = 0.0,
                 fusion: str = "attention", *, normalization: str = "symmetric",
                 attention_bound: float | None = 1.0, transform_messages: bool = False,
                 channels: bool = False, channel_propagation: bool = True, own_preferences: bool = True,
                 user_attention: bool = False, item_graph: tuple[Tensor, Tensor, Tensor] | None = None,
                 alignment: str = "infonce", regularize_content: bool = False,
                 user_sources: UserSources | None = None, user_id_dropout: float = 0.0,
                 user_attributes: UserAttributes | None = None) -> None:
        super().__init__(num_users, num_items)
        modality_features = dict(modality_features or {})
        modality_masks = dict(modality_masks or {})
        entity_index = dict(entity_index or {})
        num_entities = dict(num_entities or {})
        if fusion not in GAT_FUSIONS:
            raise ValueError(f"fusion must be one of {list(GAT_FUSIONS)}, got {fusion!r}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if normalization not in ("symmetric", "softmax"):
            raise ValueError(f"normalization must be 'symmetric' or 'softmax', got {normalization!r}")
        if attention_bound is not None and not attention_bound >= 0:
            raise ValueError(f"attention_bound must be None or >= 0, got {attention_bound}")
        if channels and fusion == "concat":
            raise ValueError("content channels need a fusion that projects each source; concat does not")
        if channels and not (own_preferences or channel_propagation):
            raise ValueError("content channels need own_preferences, channel_propagation or both")
        if alignment not in ALIGNMENTS:
            raise ValueError(f"alignment must be one of {list(ALIGNMENTS)}, got {alignment!r}")
        if set(modality_masks) != set(modality_features):
            raise ValueError(f"modality_masks {sorted(modality_masks)} must name the same modalities as "
                             f"modality_features {sorted(modality_features)}")
        if set(num_entities) != set(entity_index):
            raise ValueError(f"num_entities {sorted(num_entities)} must name the same entity types as "
                             f"entity_index {sorted(entity_index)}")
        self.dim = int(dim)
        self.num_layers = int(num_layers)
        self.heads = int(heads)
        self.attention_heads = self.heads
        self.dropout = float(dropout)
        self.fusion_strategy = fusion
        self.normalization = normalization
        self.attention_bound = None if attention_bound is None else float(attention_bound)
        self.transform_messages = bool(transform_messages)
        self.modality_names: list[str] = list(modality_features)
        self.entity_names: list[str] = list(entity_index)
        self.source_names: list[str] = self.modality_names + self.entity_names
        clashes = set(self.modality_names) & set(self.entity_names)
        if clashes:
            raise ValueError(f"source name(s) {sorted(clashes)} are both a modality and an entity type")

        crow_indices, col_indices, row_indices, transpose = symmetric_csr_pattern(
            self._bipartite_edges(edge_index), num_users + num_items)
        self.register_buffer("crow_indices", crow_indices, persistent=False)
        self.register_buffer("col_indices", col_indices, persistent=False)
        self.register_buffer("row_indices", row_indices, persistent=False)
        self.register_buffer("transpose", transpose, persistent=False)
        degree = (crow_indices[1:] - crow_indices[:-1]).to(torch.float32)
        self.register_buffer("degree", degree, persistent=False)
        # d_v / sqrt(d_v d_w) = sqrt(d_v / d_w) for the edge w -> v (both degrees >= 1 on an edge)
        self.register_buffer("edge_scale", (degree[row_indices] / degree[col_indices]).sqrt(), persistent=False)
        for name in self.modality_names:
            features, mask = modality_features[name], modality_masks[name].to(torch.bool).reshape(-1)
            if features.dim() != 2 or features.size(0) != num_items or mask.numel() != num_items:
                raise ValueError(f"modality {name!r}: features must be ({num_items}, F) and the mask "
                                 f"({num_items},), got {tuple(features.shape)} and {tuple(mask.shape)}")
            self.register_buffer(f"features_{name}", features.detach().to(torch.float32), persistent=False)
            self.register_buffer(f"mask_{name}", mask, persistent=False)
        for name in self.entity_names:
            index = entity_index[name].to(torch.long)
            if index.dim() != 2 or index.size(0) != 2:
                raise ValueError(f"entity type {name!r}: entity_index must be (2, E), got {tuple(index.shape)}")
            if index.numel() and (int(index[0].max()) >= num_items or int(index[1].max()) >= num_entities[name]
                                  or int(index.min()) < 0):
                raise ValueError(f"entity type {name!r}: entity_index has an item index outside "
                                 f"[0, {num_items}) or an entity index outside [0, {num_entities[name]})")
            self.register_buffer(f"entity_index_{name}", index, persistent=False)
            self.register_buffer(f"mask_{name}", torch.bincount(index[0], minlength=num_items) > 0,
                                 persistent=False)

        self.user_embedding = torch.nn.Embedding(num_users, dim)
        self.item_embedding = torch.nn.Embedding(num_items, dim)
        self.entity_embeddings = torch.nn.ModuleDict(
            {name: torch.nn.Embedding(max(int(num_entities[name]), 1), dim) for name in self.entity_names})
        in_dims = {name: int(modality_features[name].size(1)) for name in self.modality_names}
        in_dims.update({name: self.dim for name in self.entity_names})
        self.fusion = Fusion(fusion, in_dims, dim) if in_dims else None
        self.convs = torch.nn.ModuleList(
            [GraphAttention(dim, heads=heads, dropout=dropout) for _ in range(num_layers)])
        self.alignment = alignment
        # BM3's predictor: the online branch of the bootstrapped alignment
        self.alignment_predictor = torch.nn.Linear(dim, dim) if alignment == "bootstrap" else None
        # Without a source there is no content to give a channel.
        self.channels = bool(channels) and bool(self.source_names)
        self.channel_propagation = bool(channel_propagation) and self.channels
        self.user_attention = bool(user_attention) and self.channels
        self.regularize_content = bool(regularize_content) and self.channels
        num_channels = len(self.source_names) if self.channels else 0
        self.user_preference = (torch.nn.Embedding(num_users, num_channels * dim)
                                if self.channels and own_preferences else None)
        self.user_attention_hidden = torch.nn.Linear(dim, dim) if self.user_attention else None
        self.user_attention_vector = torch.nn.Linear(dim, 1, bias=False) if self.user_attention else None
        # 1 / d_v on the edges of row v: a user's row of the propagation is the mean of their items
        self.register_buffer("mean_scale", 1.0 / degree[row_indices], persistent=False)
        self.has_item_graph = item_graph is not None
        if item_graph is not None:
            graph_rows, graph_columns, graph_values = (t.reshape(-1) for t in item_graph)
            if graph_rows.numel() and (int(torch.cat([graph_rows, graph_columns]).max()) >= num_items
                                       or int(torch.cat([graph_rows, graph_columns]).min()) < 0):
                raise ValueError(f"item_graph has an item index outside [0, {num_items})")
            self.register_buffer("item_graph_rows", graph_rows.to(torch.long), persistent=False)
            self.register_buffer("item_graph_columns", graph_columns.to(torch.long), persistent=False)
            self.register_buffer("item_graph_values", graph_values.to(torch.float32), persistent=False)
        # An item without training interactions has an id embedding that was never trained:
        # it is left out, so cold items are placed by their content alone.
        warm = torch.zeros(num_items, dtype=torch.bool)
        warm[edge_index[1].to(torch.long)] = True
        self.register_buffer("warm_items", warm, persistent=False)
        self.register_buffer("warm_users", warm_users(num_users, edge_index), persistent=False)
        if user_sources is not None and user_sources.dim != self.dim:
            raise ValueError(f"user_sources must be dim = {self.dim} wide, got {user_sources.dim}")
        self.user_sources = user_sources if user_sources else None
        self.user_fusion = (Fusion(fusion, user_sources.in_dims, dim)
                            if self.user_sources is not None and user_sources else None)
        self.user_attributes = user_attributes
        self.user_id_dropout = float(user_id_dropout)
        self._last_attention: Tensor | None = None
        self._last_user_attention: Tensor | None = None
        self._last_sources: Tensor | None = None
        self.reset_parameters()

    def _bipartite_edges(self, edge_index: Tensor) -> Tensor:
        edge_index = edge_index.to(torch.long)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must be (2, E) user -> item, got {tuple(edge_index.shape)}")
        users, items = edge_index
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.num_users
                              or int(items.min()) < 0 or int(items.max()) >= self.num_items):
            raise ValueError(f"edge_index has a user outside [0, {self.num_users}) or an item outside "
                             f"[0, {self.num_items})")
        pairs = torch.unique(users * self.num_items + items)
        users, items = pairs // self.num_items, pairs % self.num_items + self.num_users
        return torch.stack([torch.cat([users, items]), torch.cat([items, users])])

    @classmethod
    def from_dataset(cls, dataset: Dataset, options: ModalityGATOptions, seed: int = 0) -> ModalityGAT:
        """ModalityGAT over the graph of ``dataset``'s training interactions, its chosen modalities
        and entity columns (the default columns are used where the dataset has them)."""
        unknown = [column for column in options.entities if column not in dataset.items.columns]
        if options.entities != DEFAULT_ENTITIES and unknown:
            columns = [c for c in dataset.items.columns if c not in ("item", "item_id")]
            raise GraphrecError(f"entities {unknown} are not item columns of dataset {dataset.name!r}; its columns "
                                f"are {columns}")
        graph = build_graph(dataset, GraphConfig(entities=options.entities, modalities=options.modalities,
                                                 user_entities=None if options.user_entities else (),
                                                 user_modalities=None if options.user_modalities else ()))
        attributes = UserAttributes.from_dataset(dataset, None if options.user_entities else ())
        return cls.from_graph(graph, dim=options.dim, num_layers=options.layers, heads=options.heads,
                              dropout=options.dropout, fusion=options.fusion, channels=options.channels,
                              channel_propagation=options.channel_propagation,
                              own_preferences=options.own_preferences, user_attention=options.user_attention,
                              regularize_content=options.regularize_content,
                              item_graph_neighbours=options.item_graph_neighbours, alignment=options.alignment,
                              user_sources=options.user_entities or options.user_modalities,
                              user_id_dropout=options.user_id_dropout, user_attributes=attributes)

    @classmethod
    def from_graph(cls, data: HeteroData, dim: int = 64, num_layers: int = 2, heads: int = 1,
                   dropout: float = 0.0, fusion: str = "attention", *, normalization: str = "symmetric",
                   attention_bound: float | None = 1.0, transform_messages: bool = False,
                   channels: bool = False, channel_propagation: bool = True, own_preferences: bool = True,
                   user_attention: bool = False, item_graph_neighbours: int = 0,
                   alignment: str = "infonce", regularize_content: bool = False, user_sources: bool = False,
                   user_id_dropout: float = 0.0, user_attributes: UserAttributes | None = None) -> ModalityGAT:
        """ModalityGAT over a graph from :func:`~graphrec.graph.build_graph`: its training
        interactions, every modality node type and every entity node type (with ``user_sources``, the
        user-side ones too; ``user_attributes`` maps new users' attribute values to the graph's user
        entities); with ``item_graph_neighbours`` > 0, the mean of its modalities' k-NN cosine item graphs."""
        modalities = item_modalities(data)
        entities = item_entities(data)
        item_graph = None
        if item_graph_neighbours > 0 and modalities:
            graphs = {name: symmetric_normalize(knn_cosine_graph(values.numpy(), item_graph_neighbours, mask.numpy()))
                      for name, (values, mask) in modalities.items()}
            combined = weighted_sum(graphs, {name: 1.0 / len(graphs) for name in graphs}).tocoo()
            item_graph = (torch.from_numpy(combined.row.astype(np.int64)),
                          torch.from_numpy(combined.col.astype(np.int64)),
                          torch.from_numpy(combined.data.astype(np.float32)))
        return cls(data["user"].num_nodes, data["item"].num_nodes, data[INTERACTS].edge_index,
                   modality_features={name: values for name, (values, _) in modalities.items()},
                   modality_masks={name: mask for name, (_, mask) in modalities.items()},
                   entity_index={name: index for name, (index, _) in entities.items()},
                   num_entities={name: count for name, (_, count) in entities.items()},
                   dim=dim, num_layers=num_layers, heads=heads, dropout=dropout, fusion=fusion,
                   normalization=normalization, attention_bound=attention_bound,
                   transform_messages=transform_messages, channels=channels,
                   channel_propagation=channel_propagation, own_preferences=own_preferences,
                   user_attention=user_attention, item_graph=item_graph, alignment=alignment,
                   regularize_content=regularize_content,
                   user_sources=UserSources.from_graph(data, dim) if user_sources else None,
                   user_id_dropout=user_id_dropout, user_attributes=user_attributes)

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.user_embedding.weight, std=EMBEDDING_INIT_STD)
        torch.nn.init.normal_(self.item_embedding.weight, std=EMBEDDING_INIT_STD)
        for embedding in self.entity_embeddings.values():
            torch.nn.init.normal_(cast(torch.nn.Embedding, embedding).weight, std=EMBEDDING_INIT_STD)
        if self.fusion is not None:
            self.fusion.reset_parameters()
        for conv in self.convs:
            cast(GraphAttention, conv).reset_parameters()
        if self.user_preference is not None:
            torch.nn.init.normal_(self.user_preference.weight, std=EMBEDDING_INIT_STD)
        for linear in (self.user_attention_hidden, self.user_attention_vector, self.alignment_predictor):
            if linear is not None:
                torch.nn.init.xavier_uniform_(linear.weight)
                if linear.bias is not None:
                    torch.nn.init.zeros_(linear.bias)
        if self.user_sources is not None:
            self.user_sources.reset_parameters()
        if self.user_fusion is not None:
            self.user_fusion.reset_parameters()
        self._last_attention = None
        self._last_user_attention = None

    def source_mask(self) -> Tensor:
        """``[num_items, S]`` bool: which sources (in :attr:`source_names` order) each item has."""
        if not self.source_names:
            return torch.zeros(self.num_items, 0, dtype=torch.bool, device=self.item_embedding.weight.device)
        return torch.stack([getattr(self, f"mask_{name}") for name in self.source_names], dim=1)

    def item_sources(self, items: Tensor | None = None) -> Tensor:
        r"""Fused sources :math:`\sum_s \alpha_{i,s} \mathbf{z}_{i,s}` ``[len(items), dim]`` of
        ``items`` (default: every item)."""
        return self._content(items)[0]

    def _content(self, items: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        r"""``(fused, channels)`` of the distinct ``items`` (default: every item): the fused sources ``[n, dim]`` and,
        with content channels, :math:`\alpha_{i,s} \mathbf{z}_{i,s}` ``[n, S, dim]`` (``None`` without)."""
        count = self.num_items if items is None else items.numel()
        if self.fusion is None:
            return self.item_embedding.weight.new_zeros(count, self.dim), None
        inputs = {name: getattr(self, f"features_{name}") if items is None
                  else getattr(self, f"features_{name}").index_select(0, items) for name in self.modality_names}
        position = subset_positions(items, self.num_items) if items is not None and self.entity_names else None
        for name in self.entity_names:
            item_index, entities = getattr(self, f"entity_index_{name}")
            if position is not None:
                local = position[item_index]
                keep = local >= 0
                item_index, entities = local[keep], entities[keep]
            inputs[name] = scatter(self.entity_embeddings[name](entities), item_index, dim=0,
                                   dim_size=count, reduce="mean")
        mask = self.source_mask() if items is None else self.source_mask().index_select(0, items)
        if not self.channels:
            fused = self.fusion(inputs, mask)
            if self.fusion.last_weights is not None and items is None:
                self._last_attention = self.fusion.last_weights
            return fused, None
        projected = self.fusion.project(inputs, mask)
        if self.fusion_strategy == "attention":
            weights = self.fusion.attention_weights(projected, mask)
            if items is None:
                self._last_attention = weights.detach()
            channels = weights.unsqueeze(-1) * projected
            return channels.sum(1), channels
        return self.fusion.combine(projected, mask), projected

    def _layer_options(self) -> dict:
        return {"bound": self.attention_bound, "transform_messages": self.transform_messages}

    def _layer0(self, user_ids: Tensor | None = None,
                item_ids: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        r"""``(x, sources, channels)``: :math:`\mathbf{x}^{(0)} = [\mathbf{e}_u ; \mathbf{h}_i]` of the
        given users then items (default: all of them), and the items' fused sources and content channels."""
        sources, channels = self._content(item_ids)
        return torch.cat([self._user_layer0(user_ids), self._item_layer0(item_ids, sources)]), sources, channels

    def _user_layer0(self, user_ids: Tensor | None) -> Tensor:
        r""":math:`\mathbf{e}'_u` of the distinct ``user_ids`` (default: every user): the id embedding
        (warm users only; dropped at random in training with ``user_id_dropout``) plus the fused user sources."""
        users = self.user_embedding.weight if user_ids is None else self.user_embedding(user_ids)
        if self.user_sources is None or self.user_fusion is None:
            return users
        keep = self.warm_users if user_ids is None else self.warm_users.index_select(0, user_ids)
        if self.training and self.user_id_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.user_id_dropout)
        fused = self.user_fusion(*self.user_sources.inputs(user_ids))
        if user_ids is None and self.user_fusion.last_weights is not None:
            self._last_user_attention = self.user_fusion.last_weights
        prior = average_user(self.user_embedding.weight, self.warm_users)
        return torch.where(keep.unsqueeze(1), users, prior) + fused

    def _new_user_inputs(self, users: Tensor | None,
                         attributes: Sequence[Attributes] | None) -> tuple[dict[str, Tensor], Tensor]:
        if self.user_sources is None or self.user_attributes is None:
            raise GraphrecError("this gat was trained without user sources (user_entities and user_modalities off, "
                                "or a dataset without user features): it cannot place a user by them")
        if attributes is not None:
            return self.user_sources.new_inputs(self.user_attributes.entity_edges(attributes), len(attributes))
        return self.user_sources.inputs(users)

    def _widen(self, users: Tensor) -> Tensor:
        """Final vectors of users placed by their sources alone (no message, no channel preference)."""
        users = users / (self.num_layers + 1)
        if not self.channels:
            return users
        return torch.cat([users, users.new_zeros(users.size(0), len(self.source_names) * self.dim)], 1)

    @torch.no_grad()
    def new_user_embeddings(self, attributes: Sequence[Attributes]) -> Tensor:
        inputs, mask = self._new_user_inputs(None, attributes)
        assert self.user_fusion is not None
        prior = average_user(self.user_embedding.weight, self.warm_users)
        return self._widen(prior + self.user_fusion(inputs, mask))

    @torch.no_grad()
    def user_source_parts(self, users: Tensor | None = None,
                          attributes: Sequence[Attributes] | None = None) -> tuple[list[str], Tensor] | None:
        """See :meth:`~graphrec.models.base.Recommender.user_source_parts`; ``None`` for a fusion whose
        result is not a sum over the sources (``product``, ``gated``, ``concat``)."""
        inputs, mask = self._new_user_inputs(users, attributes)
        assert self.user_sources is not None and self.user_fusion is not None
        if self.fusion_strategy not in ("attention", "sum", "mean"):
            return None
        projected = self.user_fusion.project(inputs, mask)
        if self.fusion_strategy == "attention":
            projected = self.user_fusion.attention_weights(projected, mask).unsqueeze(-1) * projected
        elif self.fusion_strategy == "mean":
            projected = projected / mask.sum(1, keepdim=True).clamp(min=1).unsqueeze(-1).to(projected.dtype)
        prior = average_user(self.user_embedding.weight, self.warm_users).expand(projected.size(0), -1)
        parts = torch.stack([self._widen(prior)] + [self._widen(projected[:, s]) for s in range(projected.size(1))],
                            dim=1)
        return [AVERAGE_USER, *self.user_sources.names], parts

    @torch.no_grad()
    def user_source_attention(self, users: Tensor | None = None,
                              attributes: Sequence[Attributes] | None = None) -> tuple[list[str], Tensor] | None:
        """The user-side attention weights :math:`\alpha_{u,s}` ``[B, S]`` of ``users`` (all: those of the
        last forward) or of new users given by ``attributes``; ``None`` without attention fusion."""
        if self.fusion_strategy != "attention":
            return None
        if users is None and attributes is None and self._last_user_attention is not None:
            assert self.user_sources is not None
            return list(self.user_sources.names), self._last_user_attention
        inputs, mask = self._new_user_inputs(users, attributes)
        assert self.user_sources is not None and self.user_fusion is not None
        return list(self.user_sources.names), self.user_fusion.attention_weights(self.user_fusion.project(inputs, mask),
                                                                               mask)

    def _item_layer0(self, item_ids: Tensor | None, sources: Tensor) -> Tensor:
        r""":math:`\mathbf{h}_i`: the id embedding (warm items only) plus the fused sources."""
        if item_ids is None:
            items, warm = self.item_embedding.weight, self.warm_items
        else:
            items, warm = self.item_embedding(item_ids), self.warm_items.index_select(0, item_ids)
        return items * warm.unsqueeze(1) + sources

    def _item_graph_term(self, item_ids: Tensor | None, layer0: Tensor) -> Tensor:
        r""":math:`\sum_j \tilde{A}_{ij} \mathbf{h}_j` over the item–item content graph, for ``item_ids``
        (default: every item; ``layer0`` their :math:`\mathbf{h}`). For a subset, the neighbours'
        :math:`\mathbf{h}_j` are computed here: they need not be among ``item_ids``."""
        rows, columns, values = self.item_graph_rows, self.item_graph_columns, self.item_graph_values
        if item_ids is None:
            messages = values.unsqueeze(1) * layer0.index_select(0, columns)
            return torch.zeros_like(layer0).index_add(0, rows, messages)
        local = subset_positions(item_ids, self.num_items)[rows]
        keep = local >= 0
        local, columns, values = local[keep], columns[keep], values[keep]
        neighbours, inverse = torch.unique(columns, return_inverse=True)
        neighbour_layer0 = self._item_layer0(neighbours, self._content(neighbours)[0])
        messages = values.unsqueeze(1) * neighbour_layer0.index_select(0, inverse)
        return torch.zeros_like(layer0).index_add(0, local, messages)

    def _preferences(self, user_ids: Tensor | None, mean_content: Tensor | None) -> Tensor:
        r"""The users' preference per content channel, :math:`\mathbf{p}_{u,s} = \boldsymbol{\theta}_{u,s}
        (+ \text{the mean channel } s \text{ of their items})`, weighted by the user-side attention
        :math:`\beta_{u,s}`: ``[n, S * dim]``."""
        if self.user_preference is None:
            assert mean_content is not None  # channels need own preferences, propagation or both
            preferences = mean_content
        else:
            own = self.user_preference.weight if user_ids is None else self.user_preference(user_ids)
            preferences = own if mean_content is None else own + mean_content
        if self.user_attention_hidden is None or self.user_attention_vector is None:
            return preferences
        per_channel = preferences.view(preferences.size(0), len(self.source_names), self.dim)
        scores = self.user_attention_vector(torch.tanh(self.user_attention_hidden(per_channel))).squeeze(-1)
        return (torch.softmax(scores, dim=1).unsqueeze(-1) * per_channel).flatten(1)

    def _full_preferences(self, channels: Tensor) -> Tensor:
        """:meth:`_preferences` of every user, the mean over each user's training items."""
        mean_content = None
        if self.channel_propagation:
            flat = channels.flatten(1)
            padded = torch.cat([flat.new_zeros(self.num_users, flat.size(1)), flat])
            mean_content = propagate_weighted(self.mean_scale, padded, self.crow_indices, self.col_indices,
                                              self.transpose)[:self.num_users]
        return self._preferences(None, mean_content)

    def _finish(self, users: Tensor, items: Tensor, preferences: Tensor | None,
                channels: Tensor | None) -> tuple[Tensor, Tensor]:
        """The final vectors: the propagated embeddings, then the content channels beside them."""
        if preferences is None or channels is None:
            return users, items
        return torch.cat([users, preferences], 1), torch.cat([items, channels.flatten(1)], 1)

    def embed(self) -> tuple[Tensor, Tensor]:
        x, self._last_sources, channels = self._layer0()
        layer0_items = x[self.num_users:]
        total = x
        for conv in self.convs:
            x = conv(x, self.crow_indices, self.col_indices, self.row_indices, self.transpose,
                     edge_scale=self.edge_scale if self.normalization == "symmetric" else None,
                     **self._layer_options())
            total = total + x
        final = total / (self.num_layers + 1)
        return self._final(final, layer0_items, channels)

    def _final(self, final: Tensor, layer0_items: Tensor, channels: Tensor | None) -> tuple[Tensor, Tensor]:
        users, items = final[:self.num_users], final[self.num_users:]
        if self.has_item_graph:
            items = items + self._item_graph_term(None, layer0_items)
        preferences = self._full_preferences(channels) if channels is not None else None
        if preferences is not None and self.user_sources is not None:  # a cold user's own preferences never trained
            preferences = preferences * self.warm_users.unsqueeze(1)
        return self._finish(users, items, preferences, channels)

    @torch.no_grad()
    def embed_layerwise(self, chunk_size: int = 65_536) -> tuple[Tensor, Tensor]:
        """:meth:`embed` without autograd, one layer at a time over chunks of target rows: the
        per-edge attention tensors exist for one chunk at a time, never for the whole graph."""
        x, _, channels = self._layer0()
        scale = self.edge_scale if self.normalization == "symmetric" else None

        def layer(index: int, x: Tensor, start: int, stop: int, lo: int, hi: int) -> Tensor:
            return cast(GraphAttention, self.convs[index]).forward_edges(
                x, self.col_indices[lo:hi], self.row_indices[lo:hi], stop - start,
                edge_scale=None if scale is None else scale[lo:hi], target_offset=start, **self._layer_options())

        final = layerwise_mean(x, self.num_layers, self.crow_indices, chunk_size, layer)
        return self._final(final, x[self.num_users:], channels)

    def embed_subgraph(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        r"""Final embeddings of every node of a sampled subgraph, users then items in local order, seeds
        first (``data[t].n_id`` global ids; edges ``(user, interacts, item)`` and
        ``(item, rev_interacts, user)`` in local ids); only the seeds' rows are complete.

        Each node attends over its *sampled* neighbours, with the full graph's degrees in the
        :math:`d_v / \sqrt{d_v d_w}` factor: the softmax over a uniform sample of the neighbours
        estimates the softmax over all of them, and with equal scores this is LightGCN's sampled
        estimator. With every neighbour sampled it equals :meth:`embed` on the seed nodes."""
        check_both_directions(data)
        user_ids, item_ids = data["user"].n_id, data["item"].n_id
        num_local_users = user_ids.numel()
        x, _, channels = self._layer0(user_ids, item_ids)
        layer0_items = x[num_local_users:]
        global_ids = torch.cat([user_ids, item_ids + self.num_users])
        num_nodes = x.size(0)
        total = x
        for layer, conv in enumerate(self.convs):
            # Layer l only has to update nodes within L - l hops of the seeds (as PyG's trim_to_layer).
            source, target = self._subgraph_edges(data, self.num_layers - layer, num_local_users)
            scale = None
            if self.normalization == "symmetric":
                scale = (self.degree[global_ids[target]] / self.degree[global_ids[source]]).sqrt()
            x = cast(GraphAttention, conv).forward_edges(x, source, target, num_nodes, edge_scale=scale,
                                                         **self._layer_options())
            total = total + x
        final = total / (self.num_layers + 1)
        users, items = final[:num_local_users], final[num_local_users:]
        if self.has_item_graph:
            items = items + self._item_graph_term(item_ids, layer0_items)
        preferences = None
        if channels is not None:
            mean_content = None
            if self.channel_propagation:
                # each user's mean over the items sampled for it (its first hop), as LightGCN's sampled estimate
                flat = channels.flatten(1)
                to_user = edges_within_hops(data, REV_INTERACTS, 1)
                mean_content = flat.new_zeros(num_local_users, flat.size(1))
                if to_user is not None:
                    mean_content = scatter(flat.index_select(0, to_user[0]), to_user[1], dim=0,
                                           dim_size=num_local_users, reduce="mean")
            preferences = self._preferences(user_ids, mean_content)
        return self._finish(users, items, preferences, channels)

    @staticmethod
    def _subgraph_edges(data: HeteroData, hops: int, num_local_users: int) -> tuple[Tensor, Tensor]:
        """Homogeneous ``(source, target)`` of a subgraph's first ``hops`` hops, users first."""
        sources, targets = [], []
        to_item = edges_within_hops(data, INTERACTS, hops)
        if to_item is not None:
            sources.append(to_item[0])
            targets.append(to_item[1] + num_local_users)
        to_user = edges_within_hops(data, REV_INTERACTS, hops)
        if to_user is not None:
            sources.append(to_user[0] + num_local_users)
            targets.append(to_user[1])
        if not sources:
            empty = torch.empty(0, dtype=torch.long, device=data["user"].n_id.device)
            return empty, empty
        return torch.cat(sources), torch.cat(targets)

    def alignment_loss(self, items: Tensor, temperature: float = 0.2) -> Tensor:
        r"""Alignment of the fused content :math:`\mathbf{c}_i` of ``items`` with their id embeddings
        :math:`\mathbf{e}_i` (uses the sources of the last :meth:`embed`):

        * ``infonce`` (SLMRec-style): :func:`~graphrec.models.base.info_nce` with in-batch negatives
          at ``temperature``;
        * ``bootstrap`` (BM3, Zhou et al., WWW 2023): no negatives; a predictor :math:`g` maps each
          side onto the other, held fixed (stop-gradient, dropout 0.3 as in BM3),
          :math:`\mathcal{L} = 2 - \cos(g(\mathbf{e}_i), \operatorname{sg}(\mathbf{c}_i))
          - \cos(g(\mathbf{c}_i), \operatorname{sg}(\mathbf{e}_i))`, averaged over ``items``;
          ``temperature`` is unused.
        """
        sources = self._last_sources if self._last_sources is not None else self.item_sources()
        content, ids = sources[items], self.item_embedding(items)
        if self.alignment_predictor is None:
            return info_nce(content, ids, temperature)
        predict = self.alignment_predictor

        def target(x: Tensor) -> Tensor:
            return F.dropout(x.detach(), p=BOOTSTRAP_DROPOUT, training=self.training)

        return (2 - F.cosine_similarity(predict(ids), target(content), dim=-1)
                - F.cosine_similarity(predict(content), target(ids), dim=-1)).mean()

    def modality_attention(self) -> tuple[list[str], Tensor]:
        """Source names and the ``[num_items, S]`` attention weights of the last forward (detached;
        computed now if there was none). Rows sum to 1 over an item's available sources."""
        if self.fusion_strategy != "attention":
            raise ValueError(f"modality attention exists only with fusion='attention', this model uses "
                             f"{self.fusion_strategy!r}")
        if self.fusion is None:
            return [], torch.zeros(self.num_items, 0)
        if self._last_attention is None:
            with torch.no_grad():
                self.item_sources()
        # not None: item_sources() over all items sets it (attention fusion always records its weights)
        return list(self.source_names), cast(Tensor, self._last_attention)

    def user_ego(self, users: Tensor) -> Tensor:
        if self.user_preference is None:
            return self.user_embedding(users)
        return torch.cat([self.user_embedding(users), self.user_preference(users)], 1)


    def item_ego(self, items: Tensor) -> Tensor:
        if not self.regularize_content:
            return self.item_embedding(items)
        # _content takes distinct items (entity means are gathered per distinct item)
        distinct, inverse = torch.unique(items.reshape(-1), return_inverse=True)
        channels = self._content(distinct)[1]
        assert channels is not None  # regularize_content needs channels
        return torch.cat([self.item_embedding(items.reshape(-1)), channels.flatten(1)[inverse]], 1)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, dim={self.dim}, num_layers={self.num_layers}, heads={self.heads}, "
                f"normalization={self.normalization!r}, attention_bound={self.attention_bound}, "
                f"transform_messages={self.transform_messages}, sources={self.source_names}"
                + (f", user_sources={self.user_sources.names}" if self.user_sources is not None else ""))

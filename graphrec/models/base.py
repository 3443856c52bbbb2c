r"""The interface every graphrec recommender implements.

A recommender computes final user and item representations
:math:`\mathbf{U} \in \mathbb{R}^{N \times d}`, :math:`\mathbf{V} \in \mathbb{R}^{M \times d}`
once per step with :meth:`Recommender.embed`, and scores by inner product,

.. math::
    \hat{y}_{ui} = \langle \mathbf{u}_u, \mathbf{v}_i \rangle,

so that one :meth:`~Recommender.embed` serves a whole batch of BPR triples or a
full ranking. :meth:`~Recommender.regularization` is the batch L2 term of the
LightGCN reference implementation, taken on the layer-0 ("ego") parameters
:math:`\mathbf{e}^{(0)}` of the batch's users, positive and negative items:

.. math::
    \mathcal{R} = \frac{1}{2B} \sum_{b=1}^{B} \left( \|\mathbf{e}^{(0)}_{u_b}\|^2
    + \|\mathbf{e}^{(0)}_{p_b}\|^2 + \|\mathbf{e}^{(0)}_{n_b}\|^2 \right).

Models know nothing of files or training loops: they take tensors and return tensors.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError, GraphrecError
from graphrec.graph.hetero import INTERACTS, REV_INTERACTS

#: Standard deviation of the normal initialisation of id embeddings (as the LightGCN reference).
EMBEDDING_INIT_STD = 0.1


@dataclass(frozen=True)
class ModelOptions:
    """Base of every model's options dataclass: its hyperparameters, checked in ``__post_init__``
    (raising :class:`~graphrec.errors.ConfigError` with the field's name). A field's
    ``metadata["help"]`` is the one-line description that the CLI and the docs show.

    A model that chooses hyperparameters on the validation split itself (``selects_on_validation``)
    marks each such field with ``metadata["grid"]``, the values it tries, and defaults it to
    ``None``: ``None`` means "choose from the grid on validation", a value fixes it.

    ``metadata["space"]`` is the documented range that ``graphrec tune`` searches for a field:
    ``{"low": L, "high": H}`` (``"log": True`` for a log scale; ints stay ints) or
    ``{"choices": (...)}``; a field with a grid is searched over its grid (see
    :mod:`graphrec.training.tune`)."""

    #: Options added after runs of the model were saved, with the value that a saved run lacking
    #: one was trained with (:meth:`~graphrec.models.registry.ModelConfig.from_dict` fills them in).
    added_later: ClassVar[Mapping[str, Any]] = {}

    def searched(self) -> dict[str, tuple[Any, ...]]:
        """The fields left to choose on validation (``None`` and with a grid), with their grids."""
        return {option.name: tuple(option.metadata["grid"]) for option in fields(self)
                if "grid" in option.metadata and getattr(self, option.name) is None}

    def settings(self) -> list[dict[str, Any]]:
        """Every combination of the searched fields' grids (one empty setting when none is searched)."""
        searched = self.searched()
        return [dict(zip(searched, values, strict=True)) for values in itertools.product(*searched.values())]


def check_positive(options: ModelOptions, *names: str) -> None:
    """A :class:`~graphrec.errors.ConfigError` for the first of ``names`` that is not positive."""
    for name in names:
        value = getattr(options, name)
        if not value > 0:
            raise ConfigError(f"must be positive, got {value!r}", field=name)


def check_non_negative(options: ModelOptions, *names: str) -> None:
    """A :class:`~graphrec.errors.ConfigError` for the first of ``names`` that is negative."""
    for name in names:
        value = getattr(options, name)
        if value < 0:
            raise ConfigError(f"must be >= 0, got {value!r}", field=name)


def check_dropout(options: ModelOptions, *names: str) -> None:
    """A :class:`~graphrec.errors.ConfigError` for the first of ``names`` outside ``[0, 1)``."""
    for name in names:
        value = getattr(options, name)
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"must lie in [0, 1), got {value!r}", field=name)


#: ``score_fn(users)``: scores ``[B, num_items]`` of the int64 user indices ``users`` ``[B]``.
ScoreFn = Callable[[Tensor], Tensor]


class Recommender(torch.nn.Module, abc.ABC):
    """Base class of every model; :data:`graphrec.models.MODELS` registers the subclasses.

    A subclass declares:

    * ``name``, the registry key (``graphrec train --model NAME``), and ``Options``, its
      :class:`ModelOptions` dataclass;
    * :meth:`from_dataset`, which builds it from a dataset's training split and its options;
    * :meth:`reset_parameters`, and, when it has embeddings, :meth:`embed`; when it is trained
      by gradient descent, also :meth:`user_ego` and :meth:`item_ego` (what
      :meth:`regularization` penalises).

    The capability flags say what else it offers: the trainer, the evaluator and serving read
    them and nothing else (no attribute probing).
    """

    #: The registry key.
    name: ClassVar[str]
    #: The options dataclass :meth:`from_dataset` takes.
    Options: ClassVar[type[ModelOptions]]
    #: Trained with BPR by :func:`~graphrec.training.trainer.fit`. ``False``: the model is fixed
    #: once :meth:`from_dataset` returns (popularity, closed-form graph filters); training only
    #: evaluates it.
    trained_by_gradient: ClassVar[bool] = True
    #: Scores are inner products of :meth:`embed`'s user and item vectors, which serving exports
    #: and indexes. ``False``: the model scores users directly through :meth:`scorer`.
    has_embeddings: ClassVar[bool] = True
    #: Trains on neighbour-sampled subgraphs (:meth:`embed_subgraph`).
    supports_subgraphs: ClassVar[bool] = False
    #: Has item content to align with the collaborative embeddings (:meth:`alignment_loss`).
    supports_alignment: ClassVar[bool] = False
    #: Reads the dataset's modality features (its ``Options`` has a ``modalities`` field).
    reads_features: ClassVar[bool] = False
    #: Chooses the options its ``Options`` leave ``None`` on the validation split, through
    #: :meth:`setting_scorer` and :meth:`select` (closed-form models, which nothing else tunes).
    selects_on_validation: ClassVar[bool] = False
    #: Scores are a linear function of the user's interaction row: :meth:`score_histories` scores
    #: any rows (a new user folded in without retraining), and an item's score is a sum of
    #: contributions of the user's items, which explanations show.
    linear_in_history: ClassVar[bool] = False
    #: Scores a user from its own features alone: a user of the dataset without training interactions
    #: (a cold user) from the features the dataset holds, a new user from attribute values
    #: (:meth:`score_new_users`), when the model is built with user sources.
    scores_new_users: ClassVar[bool] = False

    #: Width of the layer-0 embeddings (0: none), for memory planning.
    dim: int = 0
    #: Propagation layers, which neighbour sampling needs one fan-out for (0: no propagation).
    num_layers: int = 0
    #: Attention heads per layer, which keep per-edge tensors (0: no attention).
    attention_heads: int = 0

    def __init__(self, num_users: int, num_items: int) -> None:
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError(f"need at least one user and one item, got {num_users} users and "
                             f"{num_items} items")
        self.num_users = int(num_users)
        self.num_items = int(num_items)

    @classmethod
    @abc.abstractmethod
    def from_dataset(cls, dataset: Dataset, options: Any, seed: int = 0) -> Self:
        """The model for ``dataset``'s training split (never its validation or test edges).

        Torch's global generator is seeded with ``seed`` before this is called (see
        :func:`~graphrec.models.registry.build_model`); ``seed`` is for models that draw from a
        generator of their own."""

    @abc.abstractmethod
    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter."""

    def embed(self) -> tuple[Tensor, Tensor]:
        """Final user ``[num_users, d]`` and item ``[num_items, d]`` representations (with grad)."""
        raise GraphrecError(f"model {self.name!r} has no user and item embeddings: it scores users directly")

    @torch.no_grad()
    def embed_layerwise(self) -> tuple[Tensor, Tensor]:
        """:meth:`embed` without autograd, for evaluation and serving. Propagating models
        override it to work one layer at a time, in bounded memory."""
        return self.embed()

    def embed_subgraph(self, data: HeteroData) -> tuple[Tensor, Tensor]:
        """Final embeddings of the seed nodes of a neighbour-sampled subgraph (when
        :attr:`supports_subgraphs`)."""
        raise GraphrecError(f"model {self.name!r} does not train on sampled subgraphs")

    def user_ego(self, users: Tensor) -> Tensor:
        """Layer-0 parameters of ``users`` ``[B, d0]``, the ones :meth:`regularization` penalises."""
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def item_ego(self, items: Tensor) -> Tensor:
        """Layer-0 parameters of ``items`` (any shape, e.g. ``(B, K)``), which
        :meth:`regularization` penalises."""
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def forward(self, subgraph: HeteroData | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`embed`, or :meth:`embed_subgraph` for a sampled mini-batch (so that
        :class:`~torch.nn.parallel.DistributedDataParallel` can wrap either)."""
        if subgraph is None:
            return self.embed()
        return self.embed_subgraph(subgraph)

    @staticmethod
    def score(user_emb: Tensor, item_emb: Tensor, users: Tensor, items: Tensor) -> Tensor:
        """Scores ``[B]`` of the pairs ``(users[b], items[b])``."""
        return (user_emb[users] * item_emb[items]).sum(dim=-1)

    @staticmethod
    def full_scores(user_emb: Tensor, item_emb: Tensor, users: Tensor) -> Tensor:
        """Scores ``[B, num_items]`` of ``users`` against every item."""
        return user_emb[users] @ item_emb.t()

    @torch.no_grad()
    def scorer(self) -> ScoreFn:
        """The full-ranking score function of the model as it is now, for evaluation and serving.
        By default :meth:`full_scores` over :meth:`embed_layerwise`, computed once; models without
        embeddings override it."""
        user_emb, item_emb = self.embed_layerwise()
        return lambda users: self.full_scores(user_emb, item_emb, users)

    def setting_scorer(self, settings: Sequence[Mapping[str, Any]]) -> Callable[[Tensor], Iterable[Tensor | int]]:
        """``users -> scores under settings[0], scores under settings[1], ...``, each ``[B, num_items]``
        or the index of an earlier setting with the same scores, computed in one pass over the users
        (sharing what the settings have in common), so that selection on validation costs about one
        scoring pass (when :attr:`selects_on_validation`). It is read as
        :func:`~graphrec.evaluation.evaluate_many` reads its ``score_fn``: each matrix is used up before
        the next is drawn, so a generator may reuse one buffer."""
        raise GraphrecError(f"model {self.name!r} does not choose its options on the validation split")

    def select(self, setting: Mapping[str, Any]) -> None:
        """Fix the searched options to ``setting`` (one of ``options.settings()``); :meth:`scorer`
        then scores with them."""
        raise GraphrecError(f"model {self.name!r} does not choose its options on the validation split")

    def score_histories(self, rows: sp.csr_matrix) -> Tensor:
        """Scores ``[B, num_items]`` of the interaction rows ``rows`` ``[B, num_items]`` (sparse, of any
        users, new ones too), when :attr:`linear_in_history`."""
        raise GraphrecError(f"model {self.name!r} scores only the users it was built for")

    def new_user_embeddings(self, attributes: Sequence[Mapping[str, Any]]) -> Tensor:
        """Final vectors ``[B, d]`` of new users given by attribute values (column -> value), for a model
        with embeddings and :attr:`scores_new_users`; a cold user of the dataset with the same
        attributes (and no user modality) has the same vector."""
        raise GraphrecError(f"model {self.name!r} cannot place a user by its attributes; models that can: "
                            f"gat and vbpr with user_entities on, gfcf and mmgf")

    @torch.no_grad()
    def score_new_users(self, attributes: Sequence[Mapping[str, Any]]) -> Tensor:
        """Scores ``[B, num_items]`` of new users given by attribute values (see :meth:`new_user_embeddings`)."""
        return self.new_user_embeddings(attributes) @ self.embed_layerwise()[1].t()

    def user_source_parts(self, users: Tensor | None = None,
                          attributes: Sequence[Mapping[str, Any]] | None = None) -> tuple[list[str], Tensor] | None:
        """For users placed by their own sources (cold ``users`` of the dataset, or new users given by
        ``attributes``): the source names and ``[B, S, d]`` parts of their final vectors, one per source,
        which sum to the vectors, so that ``<part_s, item>`` is source ``s``'s share of the score.
        ``None`` for a model without user sources."""
        return None

    def user_source_attention(self, users: Tensor | None = None,
                              attributes: Sequence[Mapping[str, Any]] | None = None) -> tuple[list[str], Tensor] | None:
        """Source names and ``[B, S]`` attention weights over the users' own sources (as
        :meth:`modality_attention` over an item's); ``None`` for a model without such attention."""
        return None

    def selection_stage(self, options: ModelOptions, stage: int,
                        best: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The settings to try at ``stage`` of the selection on validation, given the ``best`` setting
        of the stages before (``{}`` at stage 0), or ``None`` when the search is done. The default is
        one stage: every combination of ``options.settings()``, which suits a few options. A model
        whose search would multiply out (a weight per modality of the dataset) searches in stages."""
        return options.settings() if stage == 0 else None

    def regularization(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """Batch L2 of the layer-0 parameters (see the module docstring)."""
        squares = (self.user_ego(users).pow(2).sum() + self.item_ego(pos_items).pow(2).sum()
                   + self.item_ego(neg_items).pow(2).sum())
        return 0.5 * squares / max(users.numel(), 1)

    def auxiliary_loss(self, user_emb: Tensor, item_emb: Tensor, users: Tensor, positives: Tensor,
                       negatives: Tensor) -> Tensor | None:
        """Training terms of the model's own added to a batch's BPR loss (``None``: none), from the
        batch's final embeddings and its rows (as :meth:`score` takes them), e.g. FREEDOM's modality
        BPR terms. Already weighted: the trainer adds it as it is."""
        return None

    def alignment_loss(self, items: Tensor, temperature: float = 0.2) -> Tensor:
        """Contrastive (InfoNCE) loss aligning ``items``' content with their collaborative embedding."""
        raise GraphrecError(f"model {self.name!r} has no item content to align")

    def modality_attention(self) -> tuple[list[str], Tensor] | None:
        """Source names and ``[num_items, S]`` attention weights over each item's sources, which
        explanations show; ``None`` for a model without such attention."""
        return None

    def extra_repr(self) -> str:
        return f"num_users={self.num_users}, num_items={self.num_items}"


def info_nce(anchors: Tensor, positives: Tensor, temperature: float = 0.2) -> Tensor:
    r"""Symmetric InfoNCE with in-batch negatives, as in SLMRec and BM3:

    .. math::
        \mathcal{L} = -\frac{1}{2B} \sum_{b} \left[ \log \frac{\exp(s_{bb}/\tau)}{\sum_{c} \exp(s_{bc}/\tau)}
        + \log \frac{\exp(s_{bb}/\tau)}{\sum_{c} \exp(s_{cb}/\tau)} \right],
        \qquad s_{bc} = \cos(\mathbf{a}_b, \mathbf{p}_c).
    """
    anchors = torch.nn.functional.normalize(anchors, dim=-1)
    positives = torch.nn.functional.normalize(positives, dim=-1)
    logits = anchors @ positives.t() / temperature
    target = torch.arange(logits.size(0), device=logits.device)
    return 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                  + torch.nn.functional.cross_entropy(logits.t(), target))


def check_both_directions(data: HeteroData) -> None:
    """Propagation over a sampled subgraph needs the interactions both ways (users hear from items
    and items from users); a graph built without reverse edges would silently lose half of them."""
    missing = [edge_type for edge_type in (INTERACTS, REV_INTERACTS) if edge_type not in data.edge_types]
    if missing:
        raise GraphrecError(f"the sampled subgraph has no {missing} edges: sample from a graph with the "
                            f"interactions in both directions (build_graph with GraphConfig(reverse_edges=True), "
                            f"the default)")


def edges_within_hops(data: HeteroData, edge_type: tuple[str, str, str], hops: int) -> Tensor | None:
    """The ``edge_index`` of ``edge_type`` in a sampled subgraph, cut to the edges drawn in its
    first ``hops`` hops; ``None`` when the subgraph has no such edges.

    Samplers (PyG's and :class:`~graphrec.sampling.TorchNeighborSampler`) list edges hop by hop
    and count them per hop in ``num_sampled_edges``, which is how PyG's ``trim_to_layer`` works:
    layer :math:`l` of :math:`L` only has to update nodes within :math:`L - l` hops of the seeds,
    and every node draws all its in-edges in one hop, so a hop prefix keeps each kept node's
    in-edges complete. Without per-hop counts every edge is kept.
    """
    if edge_type not in data.edge_types:
        return None
    edge_index = data[edge_type].edge_index
    counts = getattr(data[edge_type], "num_sampled_edges", None)
    if counts is not None and hops < len(counts):
        edge_index = edge_index[:, :int(sum(int(c) for c in list(counts)[:hops]))]
    return edge_index if edge_index.numel() else None


def nodes_within_hops(data: HeteroData, node_type: str, hops: int) -> int:
    """How many of a sampled subgraph's ``node_type`` nodes lie at most ``hops`` hops from the
    seeds. Samplers number nodes hop by hop (seeds first), so these are the first local ids;
    without per-hop counts (``num_sampled_nodes``) every node counts."""
    counts = getattr(data[node_type], "num_sampled_nodes", None)
    if counts is None or hops + 1 >= len(counts):
        return int(data[node_type].num_nodes)
    return int(sum(int(c) for c in list(counts)[:hops + 1]))


@torch.no_grad()
def layerwise_mean(x: Tensor, num_layers: int, crow_indices: Tensor, chunk_size: int,
                   layer: Callable[[int, Tensor, int, int, int, int], Tensor]) -> Tensor:
    r""":math:`\frac{1}{L+1} \sum_{l=0}^{L} \mathbf{x}^{(l)}` without autograd, one layer at a time over
    chunks of target rows, so that memory holds two layers of activations and one chunk's work.

    ``layer(l, x, start, stop, lo, hi)`` returns rows ``start:stop`` of layer ``l + 1`` from the whole
    layer ``l`` ``x``; the rows' edges occupy positions ``lo:hi`` of the CSR pattern ``crow_indices``.
    """
    total = x.clone()
    num_nodes = x.size(0)
    for index in range(num_layers):
        out = torch.empty_like(x)
        for start in range(0, num_nodes, chunk_size):
            stop = min(start + chunk_size, num_nodes)
            out[start:stop] = layer(index, x, start, stop, int(crow_indices[start]), int(crow_indices[stop]))
        x = out
        total += x
    return total / (num_layers + 1)

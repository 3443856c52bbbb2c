r"""User-side sources of the content models, and users without training interactions.

A user :math:`u` may have, beside its interactions, *user sources* (see
:func:`~graphrec.graph.build_graph`): per attribute column that became entity nodes (age
bucket, gender, occupation, ...) the set :math:`\mathcal{E}_{u,t}` of its entities of type
:math:`t`, and per user modality :math:`m` (an encoded self-description) a feature row
:math:`\mathbf{x}_{u,m}`. The content models read them as the item side reads its own:

.. math::
    \mathbf{z}_{u,t} = \frac{1}{|\mathcal{E}_{u,t}|} \sum_{e \in \mathcal{E}_{u,t}} \mathbf{w}_e,
    \qquad \mathbf{z}_{u,m} = \mathbf{x}_{u,m} \text{ (projected by the model)},

learned entity embeddings :math:`\mathbf{w}_e` averaged per type (:class:`UserSources`). A source
the user lacks is masked out.

**Cold users.** A user with no training interaction has an id embedding that no gradient ever
reached; the models leave it out, as they leave out a cold item's, and put in its place the
expected id embedding, the mean over warm users :math:`\bar{\mathbf{e}}` (held fixed,
:func:`average_user`), so such a user is placed by the average user and its own sources.
A *new* user, one the dataset does not have, is described by a
mapping from attribute column to value; :class:`UserAttributes` turns the values into the same
entities (a numeric value into the quantile bucket whose range holds it, or the nearest one), so
a new user with the attributes of a cold user of the dataset is scored exactly as that user.

**Pseudo-histories** (for the graph filters, whose scores are linear in a user's interaction row,
Shen et al., CIKM 2021). A cold user's row is empty and filters to nothing. Its stand-in is the
mean of the training rows of the :math:`k` warm users most similar to it by their user features,

.. math::
    \tilde{\mathbf{r}}_u = \frac{1}{k} \sum_{v \in \operatorname{top}_k \cos(\mathbf{f}_u, \mathbf{f}_v)}
    \mathbf{r}_v,

where :math:`\mathbf{f}_u` concatenates, each block with unit norm, the one-hot of each entity type
(spread evenly over a user's entities of that type) and each user modality's row
(:func:`user_profile_matrix`): every source weighs the same in the cosine. Warm users keep their rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import scatter

from graphrec.data.dataset import Dataset
from graphrec.errors import GraphrecError
from graphrec.graph.hetero import (
    USER_NUMERIC_BUCKETS,
    USER_PREFIX,
    default_user_entity_columns,
    user_entities,
    user_entity_values,
    user_modalities,
)
from graphrec.models.base import EMBEDDING_INIT_STD

#: One new user's attributes: column -> value (a list for a multi-valued column; ``None``: unknown).
Attributes = Mapping[str, Any]


@dataclass(frozen=True)
class UserColumn:
    """One attribute column that became entity nodes: its node type, the entities' names in node
    order and, for a numeric column cut into buckets, the lowest and highest value of each bucket."""

    column: str
    node_type: str
    names: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...] | None = None
    numeric: bool = False

    def entity(self, value: Any) -> int:
        """The entity index of one value (raises a GraphrecError naming the column and the value)."""
        if self.ranges is not None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise GraphrecError(f"user attribute {self.column!r} is numeric, got {value!r}") from None
            if math.isnan(number):
                raise GraphrecError(f"user attribute {self.column!r} is numeric, got {value!r}")
            # the bucket whose range holds the value, else (between or beyond buckets) the nearest one
            distances = [max(low - number, number - high, 0.0) for low, high in self.ranges]
            return int(np.argmin(distances))
        text = str(value).strip()
        if text in self.names:
            return self.names.index(text)
        if self.numeric:
            try:
                number = float(text)
                return next(index for index, name in enumerate(self.names) if float(name) == number)
            except (ValueError, StopIteration):
                pass
        shown = ", ".join(repr(name) for name in self.names[:12]) + (" ..." if len(self.names) > 12 else "")
        raise GraphrecError(f"unknown value {value!r} of user attribute {self.column!r}; known values: {shown}")


class UserAttributes:
    """The vocabulary of the user attribute columns a model reads: maps new users' attribute values
    to their entities (see the module docstring)."""

    def __init__(self, columns: Sequence[UserColumn]) -> None:
        self.columns = {column.column: column for column in columns}

    @classmethod
    def from_dataset(cls, dataset: Dataset, columns: Sequence[str] | None = None) -> UserAttributes:
        """The columns of ``dataset.users`` that :func:`~graphrec.graph.build_graph` turns into
        entities (``None``: its default choice), named as it names them."""
        chosen = default_user_entity_columns(dataset) if columns is None else list(columns)
        out = []
        for column in chosen:
            raw = dataset.users[column]
            values = user_entity_values(raw)
            cells = pd.Series(values.to_numpy(dtype=object)).explode().dropna().astype(str).str.strip()
            names = tuple(sorted(set(cells[cells != ""])))
            if not names:
                continue
            numeric = bool(pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw))
            ranges = None
            if numeric and raw.nunique() > USER_NUMERIC_BUCKETS:  # bucketed as user_entity_values does
                numbers = raw.astype("float64")
                ranges = tuple((float(numbers[values == name].min()), float(numbers[values == name].max()))
                               for name in names)
            out.append(UserColumn(column, USER_PREFIX + column, names, ranges, numeric))
        return cls(out)

    @property
    def node_types(self) -> list[str]:
        return [column.node_type for column in self.columns.values()]

    def entity_edges(self, attributes: Sequence[Attributes]) -> dict[str, Tensor]:
        """Per node type, the ``(2, E)`` (row of ``attributes``, entity) pairs of the given users.

        Raises:
            GraphrecError: a column the model does not read, or a value it does not know (named).
        """
        for row in attributes:
            unknown = [str(column) for column in row if column not in self.columns]
            if unknown:
                known = ", ".join(repr(c) for c in self.columns) or "none"
                raise GraphrecError(f"unknown user attribute{'s' if len(unknown) > 1 else ''} "
                                    f"{', '.join(repr(c) for c in unknown)}; this model reads {known}")
        out: dict[str, Tensor] = {}
        for name, column in self.columns.items():
            pairs: set[tuple[int, int]] = set()
            for index, row in enumerate(attributes):
                value = row.get(name)
                values = list(value) if isinstance(value, (list, tuple, set, np.ndarray)) else [value]
                for one in values:
                    if one is None or (isinstance(one, float) and math.isnan(one)) or str(one).strip() == "":
                        continue
                    pairs.add((index, column.entity(one)))
            ordered = sorted(pairs)
            out[column.node_type] = torch.tensor(ordered, dtype=torch.long).reshape(-1, 2).t().contiguous()
        return out

    def of_users(self, dataset: Dataset, users: Sequence[int]) -> list[dict[str, Any]]:
        """The attribute mappings of some users of ``dataset`` (what a new user would be given as)."""
        rows = []
        for user in users:
            record = dataset.users.iloc[int(user)]
            rows.append({name: (None if _missing(record[name]) else record[name]) for name in self.columns})
        return rows


def _missing(value: Any) -> bool:
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    return bool(pd.isna(value))


def subset_positions(subset: Tensor, total: int) -> Tensor:
    """Where each of ``total`` rows stands in the distinct indices ``subset`` (-1: not in it), to
    restrict edges to the subset's rows and number them locally."""
    position = torch.full((total,), -1, dtype=torch.long, device=subset.device)
    position[subset] = torch.arange(subset.numel(), device=subset.device)
    return position


class UserSources(torch.nn.Module):
    """The users' sources as model inputs: the mean learned embedding of each entity type (``dim``
    wide) and each user modality's features as they are (see the module docstring).

    ``entity_index`` per node type is ``(2, E)`` user then entity; features ``[num_users, F]`` with a
    ``[num_users]`` mask. Graph and features are non-persistent buffers (rebuilt from the dataset).
    """

    def __init__(self, num_users: int, entity_index: Mapping[str, Tensor], num_entities: Mapping[str, int],
                 modality_features: Mapping[str, Tensor], modality_masks: Mapping[str, Tensor], dim: int) -> None:
        super().__init__()
        self.num_users = int(num_users)
        self.dim = int(dim)
        self.modality_names = list(modality_features)
        self.entity_names = list(entity_index)
        self.names = self.modality_names + self.entity_names
        for name in self.modality_names:
            features, mask = modality_features[name], modality_masks[name].to(torch.bool).reshape(-1)
            if features.dim() != 2 or features.size(0) != num_users or mask.numel() != num_users:
                raise ValueError(f"user modality {name!r}: features must be ({num_users}, F) and the mask "
                                 f"({num_users},), got {tuple(features.shape)} and {tuple(mask.shape)}")
            self.register_buffer(f"features_{name}", features.detach().to(torch.float32), persistent=False)
            self.register_buffer(f"mask_{name}", mask, persistent=False)
        for name in self.entity_names:
            index = entity_index[name].to(torch.long)
            if index.dim() != 2 or index.size(0) != 2:
                raise ValueError(f"user entity type {name!r}: entity_index must be (2, E), got {tuple(index.shape)}")
            self.register_buffer(f"entity_index_{name}", index, persistent=False)
            self.register_buffer(f"mask_{name}", torch.bincount(index[0], minlength=num_users) > 0,
                                 persistent=False)
        self.embeddings = torch.nn.ModuleDict(
            {name: torch.nn.Embedding(max(int(num_entities[name]), 1), dim) for name in self.entity_names})
        self.in_dims = {name: int(modality_features[name].size(1)) for name in self.modality_names}
        self.in_dims.update({name: self.dim for name in self.entity_names})
        self.reset_parameters()

    @classmethod
    def from_graph(cls, data: HeteroData, dim: int, entities: bool = True, modalities: bool = True) -> UserSources:
        """The user entity and user modality node types of ``data`` (those switched on)."""
        chosen_entities = user_entities(data) if entities else {}
        chosen_modalities = user_modalities(data) if modalities else {}
        return cls(int(data["user"].num_nodes), {name: index for name, (index, _) in chosen_entities.items()},
                   {name: count for name, (_, count) in chosen_entities.items()},
                   {name: values for name, (values, _) in chosen_modalities.items()},
                   {name: mask for name, (_, mask) in chosen_modalities.items()}, dim)

    def reset_parameters(self) -> None:
        for embedding in self.embeddings.values():
            torch.nn.init.normal_(embedding.weight, std=EMBEDDING_INIT_STD)  # type: ignore[arg-type]

    def __bool__(self) -> bool:
        return bool(self.names)

    def mask(self, users: Tensor | None = None) -> Tensor:
        """``[n, S]`` bool: which sources (in :attr:`names` order) each of ``users`` (default: all) has."""
        if not self.names:
            count = self.num_users if users is None else users.numel()
            return torch.zeros(count, 0, dtype=torch.bool)
        full = torch.stack([getattr(self, f"mask_{name}") for name in self.names], dim=1)
        return full if users is None else full.index_select(0, users)

    def inputs(self, users: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
        """``(inputs, mask)`` of the distinct ``users`` (default: all): per source ``[n, width]``."""
        count = self.num_users if users is None else users.numel()
        inputs = {name: getattr(self, f"features_{name}") if users is None
                  else getattr(self, f"features_{name}").index_select(0, users) for name in self.modality_names}
        position = subset_positions(users, self.num_users) if users is not None and self.entity_names else None
        for name in self.entity_names:
            user_index, entities = getattr(self, f"entity_index_{name}")
            if position is not None:
                local = position[user_index]
                keep = local >= 0
                user_index, entities = local[keep], entities[keep]
            inputs[name] = self._mean(name, user_index, entities, count)
        return inputs, self.mask(users)

    def new_inputs(self, entity_edges: Mapping[str, Tensor], count: int) -> tuple[dict[str, Tensor], Tensor]:
        """``(inputs, mask)`` of ``count`` new users from their entities (``(2, E)`` row, entity per node
        type, as :meth:`UserAttributes.entity_edges` gives them); they have no user modality."""
        device = next(iter(self.buffers()), torch.empty(0)).device
        inputs = {name: getattr(self, f"features_{name}").new_zeros(count, self.in_dims[name])
                  for name in self.modality_names}
        masks = [torch.zeros(count, dtype=torch.bool, device=device) for _ in self.modality_names]
        for name in self.entity_names:
            edges = entity_edges.get(name, torch.empty(2, 0, dtype=torch.long)).to(device)
            inputs[name] = self._mean(name, edges[0], edges[1], count)
            masks.append(torch.bincount(edges[0], minlength=count) > 0)
        mask = torch.stack(masks, dim=1) if masks else torch.zeros(count, 0, dtype=torch.bool, device=device)
        return inputs, mask

    def _mean(self, name: str, rows: Tensor, entities: Tensor, count: int) -> Tensor:
        embedding = self.embeddings[name]
        return scatter(embedding(entities), rows, dim=0, dim_size=count, reduce="mean")

    def extra_repr(self) -> str:
        return f"sources={self.names}"


#: The name of the part of a cold user's vector that stands in for its id embedding (explanations).
AVERAGE_USER = "average user"


def average_user(weight: Tensor, warm: Tensor) -> Tensor:
    """The mean id embedding of the warm users ``[d]``, held fixed (a statistic of the trained
    embeddings, not a parameter): a cold user's expected id embedding, where its own never trained."""
    rows = weight.detach()[warm]
    return rows.mean(0) if rows.numel() else weight.new_zeros(weight.size(1))


def warm_users(num_users: int, edge_index: Tensor) -> Tensor:
    """``[num_users]`` bool: the users with at least one training interaction (``edge_index`` user -> item)."""
    warm = torch.zeros(num_users, dtype=torch.bool)
    warm[edge_index[0].to(torch.long)] = True
    return warm


# ------------------------------------------------------------------------------- pseudo-histories
def user_profile_matrix(dataset: Dataset, attributes: UserAttributes) -> sp.csr_matrix:
    """``[num_users, D]`` user features for cosine similarity (see the module docstring): one unit-norm
    block per entity type and per user modality."""
    rows = [attributes.of_users(dataset, range(dataset.num_users))]
    blocks = [_entity_block(attributes.entity_edges(rows[0]), attributes, dataset.num_users)]
    for feature in dataset.user_features.values():
        values = np.where(np.asarray(feature.mask, dtype=bool)[:, None], feature.values, 0.0).astype(np.float64)
        norms = np.linalg.norm(values, axis=1, keepdims=True)
        blocks.append(sp.csr_matrix(np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)))
    return sp.hstack(blocks, format="csr")


def profile_of_new_users(attributes: UserAttributes, new: Sequence[Attributes], width: int) -> sp.csr_matrix:
    """:func:`user_profile_matrix` rows of new users given by attributes (their modality blocks are zero)."""
    block = _entity_block(attributes.entity_edges(new), attributes, len(new))
    return sp.hstack([block, sp.csr_matrix((len(new), width - block.shape[1]))], format="csr")


def _entity_block(edges: Mapping[str, Tensor], attributes: UserAttributes, count: int) -> sp.csr_matrix:
    parts = []
    for column in attributes.columns.values():
        pairs = edges[column.node_type].numpy()
        width = len(column.names)
        ones = sp.csr_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(count, width))
        norms = np.sqrt(np.asarray(ones.multiply(ones).sum(axis=1)).ravel())
        parts.append(sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ ones)
    return sp.hstack(parts, format="csr") if parts else sp.csr_matrix((count, 0))


#: Largest ``rows x warm users`` block of similarities computed at once (floats).
_SIMILARITY_BLOCK = 1 << 24


def pseudo_histories(profiles: sp.csr_matrix, train: sp.csr_matrix, neighbours: int,
                     rows: np.ndarray | None = None) -> sp.csr_matrix:
    r"""The pseudo-histories :math:`\tilde{\mathbf{r}}` ``[len(rows), num_items]`` of the profiles
    ``profiles[rows]`` (default: every row), from the binary training rows ``train`` of the warm
    users (see the module docstring). A profile of zeros gets an empty row."""
    profiles = sp.csr_matrix(profiles, dtype=np.float64)
    norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ profiles
    binary = sp.csr_matrix(train, dtype=np.float32, copy=True)
    binary.data[:] = 1.0
    warm = np.flatnonzero(np.diff(binary.indptr) > 0)
    count = profiles.shape[0] if rows is None else len(rows)
    if len(warm) == 0 or neighbours <= 0:
        return sp.csr_matrix((count, int(train.shape[1]))).astype(np.float32)
    take = min(neighbours, len(warm))
    warm_unit = unit[warm].T.tocsc()
    chosen = np.arange(count) if rows is None else np.asarray(rows)
    parts = []
    chunk = max(1, _SIMILARITY_BLOCK // len(warm))
    for start in range(0, count, chunk):
        block = chosen[start:start + chunk]
        sims = np.asarray((unit[block] @ warm_unit).todense())
        nearest = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        has_profile = norms[block] > 0
        weights = sp.csr_matrix((np.repeat(has_profile / take, take).astype(np.float32),
                                 (np.repeat(np.arange(len(block)), take), nearest.ravel())),
                                shape=(len(block), len(warm)))
        parts.append(weights @ binary[warm])
    return sp.vstack(parts, format="csr").astype(np.float32)


class PseudoHistories:
    """The pseudo-histories of a dataset's cold users and of new users given by attributes (see the
    module docstring), for the graph filters."""

    def __init__(self, dataset: Dataset, neighbours: int) -> None:
        self.neighbours = int(neighbours)
        self.attributes = UserAttributes.from_dataset(dataset, None if self.neighbours > 0 else ())
        self.train = dataset.csr("train")
        self.profiles = (user_profile_matrix(dataset, self.attributes) if self.neighbours > 0
                         else sp.csr_matrix((dataset.num_users, 0)))

    @property
    def usable(self) -> bool:
        """Whether there is anything to find neighbours by (a user feature, and neighbours to take)."""
        return self.neighbours > 0 and self.profiles.shape[1] > 0

    def cold_rows(self) -> sp.csr_matrix | None:
        """``[num_users, num_items]``: the cold users' pseudo-histories, empty rows for warm users
        (``None`` when there is no cold user or nothing to find neighbours by)."""
        cold = np.flatnonzero(np.diff(self.train.indptr) == 0)
        if not self.usable or len(cold) == 0:
            return None
        pseudo = pseudo_histories(self.profiles, self.train, self.neighbours, rows=cold).tocoo()
        return sp.csr_matrix((pseudo.data, (cold[pseudo.row], pseudo.col)), shape=self.train.shape,
                             dtype=np.float32)

    def of_new_users(self, attributes: Sequence[Attributes]) -> sp.csr_matrix:
        """``[len(attributes), num_items]`` pseudo-histories of new users given by their attributes."""
        if not self.usable:
            raise GraphrecError("this model was built without user features to place a new user by (its dataset "
                                "has no user attribute column or user modality, or cold_user_neighbours is 0)")
        new = profile_of_new_users(self.attributes, attributes, self.profiles.shape[1])
        stacked = sp.vstack([new, self.profiles], format="csr")
        return pseudo_histories(stacked, sp.vstack([sp.csr_matrix((len(attributes), self.train.shape[1])),
                                                    self.train], format="csr"),
                                self.neighbours, rows=np.arange(len(attributes)))


__all__ = [
    "Attributes",
    "PseudoHistories",
    "UserAttributes",
    "UserColumn",
    "UserSources",
    "profile_of_new_users",
    "pseudo_histories",
    "user_profile_matrix",
    "warm_users",
]

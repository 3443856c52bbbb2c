"""Recommenders: MF-BPR, LightGCN, VBPR and the modality-attention GAT, plus fusion strategies.

Every model is a :class:`~graphrec.models.base.Recommender`: ``embed()`` returns the final
user and item representations and scores are inner products. ``MODELS`` maps the
names used in configurations and on the command line to the classes; each class has
``from_graph(data, **hyperparameters)`` to build it from a :func:`~graphrec.graph.build_graph` graph.
"""

from graphrec.models.base import EMBEDDING_INIT_STD, Recommender
from graphrec.models.fusion import FUSION_STRATEGIES, Fusion, masked_softmax
from graphrec.models.lightgcn import LightGCN
from graphrec.models.mf import MF
from graphrec.models.modality_gat import ModalityGAT
from graphrec.models.vbpr import VBPR

MODELS: dict[str, type[Recommender]] = {"mf": MF, "lightgcn": LightGCN, "vbpr": VBPR, "gat": ModalityGAT}

__all__ = [
    "EMBEDDING_INIT_STD",
    "FUSION_STRATEGIES",
    "MODELS",
    "MF",
    "Fusion",
    "LightGCN",
    "ModalityGAT",
    "Recommender",
    "VBPR",
    "masked_softmax",
]

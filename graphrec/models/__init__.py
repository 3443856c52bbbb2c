"""Recommenders: MF-BPR, LightGCN, VBPR and the modality-attention GAT, the training-free graph filters
GF-CF and BSPM, the popularity and random floors, and the fusion strategies.

Every model is a :class:`~graphrec.models.base.Recommender` registered in :data:`MODELS`, which
maps the names used in configurations and on the command line to the classes. Each class
declares its options dataclass (``Options``) and builds itself from a dataset with
``from_dataset(dataset, options, seed)``; :class:`ModelConfig` and :func:`build_model` do both by name.
"""

from graphrec.models.base import EMBEDDING_INIT_STD, ModelOptions, Recommender, ScoreFn
from graphrec.models.baselines import Popularity, PopularityOptions, RandomOptions, RandomScores
from graphrec.models.bspm import BSPM, BSPMOptions
from graphrec.models.fusion import FUSION_STRATEGIES, Fusion, masked_softmax
from graphrec.models.gfcf import GFCF, GFCFOptions
from graphrec.models.lightgcn import LightGCN, LightGCNOptions
from graphrec.models.mf import MF, MFOptions
from graphrec.models.mmgf import MultimodalGraphFilter, MultimodalGraphFilterOptions
from graphrec.models.modality_gat import DEFAULT_ENTITIES, ModalityGAT, ModalityGATOptions
from graphrec.models.registry import MODELS, ModelConfig, ModelRegistry, build_model, make_options
from graphrec.models.vbpr import VBPR, VBPROptions

__all__ = [
    "BSPM",
    "DEFAULT_ENTITIES",
    "EMBEDDING_INIT_STD",
    "FUSION_STRATEGIES",
    "GFCF",
    "MF",
    "MODELS",
    "VBPR",
    "BSPMOptions",
    "Fusion",
    "GFCFOptions",
    "LightGCN",
    "LightGCNOptions",
    "MFOptions",
    "ModalityGAT",
    "ModalityGATOptions",
    "ModelConfig",
    "ModelOptions",
    "ModelRegistry",
    "MultimodalGraphFilter",
    "MultimodalGraphFilterOptions",
    "Popularity",
    "PopularityOptions",
    "RandomOptions",
    "RandomScores",
    "Recommender",
    "ScoreFn",
    "VBPROptions",
    "build_model",
    "make_options",
    "masked_softmax",
]

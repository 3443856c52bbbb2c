"""Leak-free full-ranking evaluation from scores or embeddings.

Evaluation never sees a model: it takes a score function (user indices -> a score
for every item) or user and item embeddings, and reads ground truth, masks and
popularity from a :class:`graphrec.data.dataset.Dataset`.
"""

from graphrec.evaluation.beyond import BEYOND_METRICS, BeyondAccuracy, gini_index
from graphrec.evaluation.metrics import RANKING_METRICS, ranking_metrics, reciprocal_rank
from graphrec.evaluation.ranking import (
    EvalConfig,
    EvaluationResult,
    ScoreFn,
    cold_items,
    cold_users,
    evaluate,
    evaluate_embeddings,
    evaluate_many,
    evaluate_splits,
    metric_names,
    top_k,
)

__all__ = [
    "BEYOND_METRICS",
    "RANKING_METRICS",
    "BeyondAccuracy",
    "EvalConfig",
    "EvaluationResult",
    "ScoreFn",
    "cold_items",
    "cold_users",
    "evaluate",
    "evaluate_embeddings",
    "evaluate_many",
    "evaluate_splits",
    "gini_index",
    "metric_names",
    "ranking_metrics",
    "reciprocal_rank",
    "top_k",
]

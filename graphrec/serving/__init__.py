"""Using a trained run: top-k recommendations with explanations, embedding export and an ANN index.

* :func:`recommend` / :func:`new_user_recommend`: ranked original item ids for known users,
  or for a new user folded in from a few items, never repeating what the user has seen;
  :func:`attributes_recommend`: for a new user given by attribute values (age, gender, ...).
* :class:`Explanation`: the user's training items nearest to a recommendation, and the
  modality attention of models that have one.
* :func:`export_embeddings` / :func:`load_embeddings`: final embeddings with original ids
  (parquet or npy).
* :class:`EmbeddingIndex` / :func:`build_index`: faiss (IVF or flat) or exact top-k search
  over item embeddings, with its recall against exact search measured.
"""

from graphrec.serving.explain import Explanation, explain_items, modality_weights, nearest_history_items
from graphrec.serving.export import EMBEDDING_FORMATS, Embeddings, export_embeddings, load_embeddings
from graphrec.serving.index import INDEX_BACKENDS, INDEX_METRICS, EmbeddingIndex, build_index, faiss_available
from graphrec.serving.recommend import Recommendation, attributes_recommend, new_user_recommend, recommend

__all__ = [
    "EMBEDDING_FORMATS",
    "INDEX_BACKENDS",
    "INDEX_METRICS",
    "EmbeddingIndex",
    "Embeddings",
    "Explanation",
    "Recommendation",
    "attributes_recommend",
    "build_index",
    "explain_items",
    "export_embeddings",
    "faiss_available",
    "load_embeddings",
    "modality_weights",
    "nearest_history_items",
    "new_user_recommend",
    "recommend",
]

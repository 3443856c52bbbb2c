"""Pretrained encoders that turn item text and images into modality features.

:func:`encode` adds a modality to a dataset directory; :func:`encode_text` and
:func:`encode_images` return the features of an in-memory dataset. Embeddings are
cached by content (:mod:`graphrec.encoders.cache`), so re-running only encodes what
changed.
"""

from graphrec.encoders.cache import EmbeddingCache, EncodingStats
from graphrec.encoders.encode import MODALITIES, encode
from graphrec.encoders.image import ImageEncoder, ImageEncoderConfig, encode_images
from graphrec.encoders.text import TextEncoder, TextEncoderConfig, assemble_text, encode_text

__all__ = ["MODALITIES", "EmbeddingCache", "EncodingStats", "ImageEncoder", "ImageEncoderConfig", "TextEncoder",
           "TextEncoderConfig", "assemble_text", "encode", "encode_images", "encode_text"]

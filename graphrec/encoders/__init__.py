"""Pretrained encoders that turn item (or user) text, images, audio and video into modality features.

:func:`encode` adds a modality to a dataset directory; :func:`encode_text`,
:func:`encode_images`, :func:`encode_audio` and :func:`encode_video` return the features of an
in-memory dataset. Embeddings are cached by content (:mod:`graphrec.encoders.cache`), so
re-running only encodes what changed.
"""

from graphrec.encoders.audio import AudioEncoder, AudioEncoderConfig, encode_audio
from graphrec.encoders.cache import EmbeddingCache, EncodingStats
from graphrec.encoders.encode import MODALITIES, encode
from graphrec.encoders.image import ImageEncoder, ImageEncoderConfig, encode_images
from graphrec.encoders.text import TextEncoder, TextEncoderConfig, assemble_text, encode_text
from graphrec.encoders.video import VIDEO_MODELS, VideoEncoder, VideoEncoderConfig, encode_video

__all__ = ["MODALITIES", "VIDEO_MODELS", "AudioEncoder", "AudioEncoderConfig", "EmbeddingCache", "EncodingStats",
           "ImageEncoder", "ImageEncoderConfig", "TextEncoder", "TextEncoderConfig", "VideoEncoder",
           "VideoEncoderConfig", "assemble_text", "encode", "encode_audio", "encode_images", "encode_text",
           "encode_video"]

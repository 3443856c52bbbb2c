r"""Audio features: time-averaged hidden states of a pretrained speech or sound transformer.

A self-supervised audio transformer (wav2vec 2.0, Baevski et al., NeurIPS 2020; HuBERT,
Hsu et al., TASLP 2021; WavLM) or an audio classifier's encoder (AST, Gong et al.,
Interspeech 2021) maps a waveform to hidden states :math:`\mathbf{h}_1, \dots, \mathbf{h}_T`
over time; a clip's embedding is their mean, normalised to unit length,

.. math::
    \mathbf{e} = \frac{\bar{\mathbf{h}}}{\lVert \bar{\mathbf{h}} \rVert_2}, \qquad
    \bar{\mathbf{h}} = \frac{1}{T} \sum_{t=1}^{T} \mathbf{h}_t,

as for the text encoder. A CLAP model (Elizalde et al., ICASSP 2023) contributes its audio
tower's projected embedding (``get_audio_features``), normalised the same way; its clips may be
no longer than its feature extractor's window (10 s), which cuts longer ones at random.

The model is any Hugging Face audio model loaded with ``AutoFeatureExtractor`` and
``AutoModel`` from a Hub name or a local directory (``save_pretrained``); the tests use a
tiny ``Wav2Vec2Config`` model with seeded random weights, since no weights can be downloaded.

Files are read with ``soundfile`` (WAV, FLAC, OGG, MP3 through libsndfile), bounded like
images (a regular file under a size cap), mixed to mono and resampled to the feature
extractor's rate with :func:`scipy.signal.resample_poly` (a polyphase filter: torchaudio is
not a dependency, and SciPy, already one, is exact for the integer rate ratios of audio
rates). Only the first ``max_seconds`` are decoded and kept (a crop); with ``tile`` a
shorter clip is repeated to fill ``max_seconds``, so every clip has the same length.

Clips are batched only with clips of the same length, so no clip is padded: a padded batch
changes the output of models whose feature encoder uses group normalisation (wav2vec 2.0
base), and an embedding must not depend on which other clips shared its batch, since the
cache reuses it across runs. A missing, unreadable, empty or silent clip (root mean square
below ``silence_rms``) makes its row a missing modality, reported by row, file and reason.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
import transformers
from scipy.signal import resample_poly
from tqdm.auto import tqdm

from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.data.storage import DEFAULT_MAX_BYTES, read_regular_file
from graphrec.device import fp16_on_cuda, resolve_device
from graphrec.encoders.cache import ENCODER_FORMAT_VERSION, EmbeddingCache, identity_digest
from graphrec.encoders.media import check_has_files, default_cache_root, encode_media_files, media_column
from graphrec.encoders.text import load_hub_model
from graphrec.errors import ConfigError, GraphrecError


@dataclass(frozen=True)
class AudioEncoderConfig:
    """Which audio model embeds the clips, and how the clips are cut.

    ``model`` is a Hugging Face Hub name or a local directory holding the model and its
    feature extractor. Only a clip's first ``max_seconds`` are used; ``tile`` repeats a
    shorter clip up to ``max_seconds``. A file larger than ``max_file_bytes`` is not read,
    and a clip whose root mean square amplitude (full scale 1) is below ``silence_rms`` counts
    as silent; both are reported and marked missing.
    """

    model: str
    max_seconds: float = 10.0
    tile: bool = False
    batch_size: int = 8
    device: str = "auto"
    max_file_bytes: int = DEFAULT_MAX_BYTES
    silence_rms: float = 1e-4

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_seconds) or self.max_seconds <= 0:
            raise ConfigError(f"must be a positive number of seconds, got {self.max_seconds}", field="max_seconds")
        if self.batch_size < 1:
            raise ConfigError(f"must be >= 1, got {self.batch_size}", field="batch_size")
        if self.max_file_bytes < 1:
            raise ConfigError(f"must be positive, got {self.max_file_bytes}", field="max_file_bytes")
        if not math.isfinite(self.silence_rms) or self.silence_rms < 0:
            raise ConfigError(f"must be >= 0, got {self.silence_rms}", field="silence_rms")


# ------------------------------------------------------------------ waveforms
def resample(waveform: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A mono ``float32`` waveform at ``rate`` Hz resampled to ``target`` Hz (polyphase filter)."""
    if rate == target:
        return waveform.astype(np.float32, copy=False)
    divisor = math.gcd(rate, target)
    return resample_poly(waveform, target // divisor, rate // divisor).astype(np.float32)


def fit_length(waveform: np.ndarray, length: int, tile: bool) -> np.ndarray:
    """Crop a waveform to ``length`` samples; with ``tile``, repeat a shorter one up to ``length``."""
    if len(waveform) >= length:
        return waveform[:length]
    if not tile or not len(waveform):
        return waveform
    return np.resize(waveform, length)  # np.resize repeats the array cyclically


def load_waveform(data: bytes, target_rate: int, max_seconds: float, tile: bool) -> np.ndarray:
    """Decode an audio file's bytes to a mono waveform at ``target_rate``, cut to ``max_seconds``.

    Only the frames within ``max_seconds`` are decoded, so a long file costs no more than a short one.
    """
    with soundfile.SoundFile(io.BytesIO(data)) as audio:
        rate = int(audio.samplerate)
        # read() stops at the end of a shorter file, also where the header does not give its length
        frames = audio.read(math.ceil(max_seconds * rate), dtype="float32", always_2d=True)
    mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
    return fit_length(resample(mono, rate, target_rate), round(max_seconds * target_rate), tile)


# ------------------------------------------------------------------- encoder
class AudioEncoder:
    """A loaded Hugging Face audio model and its feature extractor, ready to embed clips.

    :attr:`identity` names everything that changes the output (the cache key's encoder
    part); :meth:`provenance` is what ``manifest.json`` records.
    """

    def __init__(self, config: AudioEncoderConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        (self.extractor, self.model), self.source = load_hub_model(config.model, "audio", "the feature extractor",
                                                                   _load)
        if getattr(self.model.config, "is_encoder_decoder", False):
            self.model = self.model.get_encoder()  # Whisper-style models: embed with the encoder half
        self.model.to(self.device).eval()
        rate = getattr(self.extractor, "sampling_rate", None)
        if not isinstance(rate, int) or rate < 1:
            raise GraphrecError(f"audio model {config.model!r}: its feature extractor names no sampling rate; "
                                "is it an audio model?")
        self.sampling_rate = rate
        self.pooling = "projection" if hasattr(self.model, "get_audio_features") else "mean"
        longest = getattr(self.extractor, "nb_max_samples", None)
        if isinstance(longest, int) and config.max_seconds * rate > longest:
            # CLAP's extractor cuts a longer input at a random place: the embedding would not be reproducible.
            raise ConfigError(f"audio model {config.model!r} takes at most {longest / rate:g} s per clip; got "
                              f"{config.max_seconds:g}", field="max_seconds")
        self.identity: dict[str, Any] = {
            "kind": "audio", **self.source["identity"], "sampling_rate": rate, "max_seconds": config.max_seconds,
            "tile": config.tile, "pooling": self.pooling, "normalised": True, "resampler": "scipy.resample_poly",
            "precision": "fp16" if self.device.type == "cuda" else "fp32", "format": ENCODER_FORMAT_VERSION,
        }
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode([np.zeros(self.sampling_rate, dtype=np.float32)]).shape[1])
        return self._dim

    def forward(self, waveforms: Sequence[np.ndarray]) -> torch.Tensor:
        """Unit-norm embeddings of same-length mono waveforms at :attr:`sampling_rate`, on the CPU."""
        inputs = self.extractor([np.asarray(w, dtype=np.float32) for w in waveforms],
                                sampling_rate=self.sampling_rate, return_tensors="pt")
        inputs = {name: value.to(self.device) for name, value in inputs.items() if isinstance(value, torch.Tensor)}
        if "is_longer" in inputs:
            # CLAP's fusion extractor flags one clip of a batch at random as longer than its window when
            # none is; none is (max_seconds is checked against the window), and the flag must not be random.
            inputs["is_longer"] = torch.zeros_like(inputs["is_longer"])
        autocast = fp16_on_cuda(self.device)
        with torch.inference_mode(), autocast:
            if self.pooling == "projection":
                output = self.model.get_audio_features(**inputs)
                pooled = output if isinstance(output, torch.Tensor) else output.pooler_output
            else:
                pooled = self.model(**inputs).last_hidden_state.float().mean(dim=1)
        return F.normalize(pooled.float(), dim=-1).cpu()

    def encode(self, waveforms: Sequence[np.ndarray], progress: bool | None = None) -> np.ndarray:
        """Embed mono waveforms (at :attr:`sampling_rate`) as ``float32`` unit-norm rows, in order.

        Waveforms are batched with others of the same length only (see the module docstring).
        """
        out: np.ndarray | None = None
        by_length: dict[int, list[int]] = {}
        for position, waveform in enumerate(waveforms):
            by_length.setdefault(len(waveform), []).append(position)
        size = self.config.batch_size
        with tqdm(total=len(waveforms), unit="clip", desc="encoding audio",
                  disable=None if progress is None else not progress) as bar:
            for positions in by_length.values():
                for start in range(0, len(positions), size):
                    batch = positions[start:start + size]
                    rows = self.forward([waveforms[i] for i in batch]).numpy()
                    if out is None:
                        out = np.zeros((len(waveforms), rows.shape[1]), dtype=np.float32)
                        self._dim = rows.shape[1]
                    out[batch] = rows
                    bar.update(len(batch))
        return out if out is not None else np.zeros((0, self.dim), dtype=np.float32)

    def load(self, path: Path) -> np.ndarray:
        """A file's waveform, ready for :meth:`encode`; ``ValueError`` saying why when it is unusable."""
        waveform = load_waveform(read_regular_file(path, self.config.max_file_bytes), self.sampling_rate,
                                 self.config.max_seconds, self.config.tile)
        if not len(waveform):
            raise ValueError("is empty (no samples)")
        rms = float(np.sqrt(np.mean(np.square(waveform, dtype=np.float64))))
        if not math.isfinite(rms):
            raise ValueError("holds non-finite samples")
        if rms <= self.config.silence_rms:
            raise ValueError(f"is silent (root mean square {rms:.2g} <= {self.config.silence_rms:g})")
        return waveform

    def encode_files(self, paths: Sequence[Path], progress: bool | None = None
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Embeddings of audio files: ``(values, ok, failures)``; a file that cannot be used gets a
        zero row, ``ok`` False and a ``(position, reason)`` failure."""
        waveforms: list[np.ndarray] = []
        good: list[int] = []
        failures: list[tuple[int, str]] = []
        for position, path in enumerate(tqdm(paths, unit="file", desc="decoding audio",
                                             disable=None if progress is None else not progress)):
            try:
                waveforms.append(self.load(path))
                good.append(position)
            except ValueError as exc:  # our own reasons: empty, silent
                failures.append((position, str(exc)))
            except (OSError, RuntimeError, TypeError) as exc:  # libsndfile's errors are RuntimeErrors
                failures.append((position, f"{type(exc).__name__}: {exc}"))
        values = np.zeros((len(paths), self.dim if not waveforms else 0), dtype=np.float32)
        ok = np.zeros(len(paths), dtype=bool)
        if waveforms:
            rows = self.encode(waveforms, progress=progress)
            values = np.zeros((len(paths), rows.shape[1]), dtype=np.float32)
            values[good] = rows
            ok[good] = True
        return values, ok, failures

    def provenance(self) -> dict[str, Any]:
        return {
            "kind": "audio",
            "model": self.config.model,
            "model_sha256": self.source["identity"].get("model_sha256"),
            "revision": self.source["identity"].get("revision"),
            "architecture": type(self.model).__name__,
            "dim": self.dim,
            "sampling_rate": self.sampling_rate,
            "max_seconds": self.config.max_seconds,
            "tile": self.config.tile,
            "pooling": self.pooling,
            "normalised": True,
            "precision": self.identity["precision"],
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "cache_identity": identity_digest(self.identity),
        }


def _load(target: str, local_files_only: bool) -> tuple[Any, Any]:
    extractor = transformers.AutoFeatureExtractor.from_pretrained(target, local_files_only=local_files_only)
    model = transformers.AutoModel.from_pretrained(target, local_files_only=local_files_only)
    return extractor, model


# ------------------------------------------------------------------- dataset
def encode_audio(dataset: Dataset, config: AudioEncoderConfig | AudioEncoder, cache_dir: str | Path | None = None,
                 log: Callable[[str], None] | None = print, side: str = "item",
                 column: str | None = None) -> ModalityFeatures:
    """Embed every item's (``side="user"``: user's) audio clip, named in ``column`` (default ``audio``).

    Rows without a usable clip get a zero row and ``mask`` False and are reported through
    ``log``. Embeddings are cached by the file's content under ``cache_dir`` (default
    ``DATASET/features/.cache/audio``). ``config`` may be an already loaded :class:`AudioEncoder`.
    """
    column = media_column("audio", side, column)
    check_has_files(dataset, "audio", side, column)  # before a model is loaded
    encoder = config if isinstance(config, AudioEncoder) else AudioEncoder(config)
    root = default_cache_root(dataset, "audio", cache_dir)
    cache = EmbeddingCache(root if root is not None else ".", encoder.identity)
    return encode_media_files(dataset, "audio", side, column, encoder.encode_files, lambda: encoder.dim, cache,
                              root is not None, encoder.config.max_file_bytes, encoder.provenance(), log)


__all__ = ["AudioEncoder", "AudioEncoderConfig", "encode_audio", "fit_length", "load_waveform", "resample"]

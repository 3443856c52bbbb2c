r"""Video features: a headless torchvision video classifier, or key frames through an image encoder.

**Clip models.** A video classifier :math:`f = g \circ \phi` over a clip of :math:`N` frames
(R3D-18, MC3-18 and R(2+1)D-18, Tran et al., CVPR 2018; S3D, Xie et al., ECCV 2018; MViTv2-S,
Li et al., CVPR 2022; Video Swin-T, Liu et al., CVPR 2022) ends with a linear head :math:`g`
over spatio-temporally pooled features :math:`\phi(x)`; replacing :math:`g` by the identity
(as :mod:`graphrec.encoders.image` does for images) returns :math:`\phi(x)`: 512-d for the
ResNet-3D family, 1024-d for S3D, 768-d for MViTv2-S and Swin3D-T. Clips are preprocessed with
the weights' own ``transforms()`` (resize, center crop, Kinetics mean/std; the same preset is
used for a weights file or a random initialisation).

**Key frames.** The cheaper path embeds :math:`K` frames with an image classifier of
:mod:`graphrec.encoders.image` and averages them,
:math:`\mathbf{e} = \frac{1}{K}\sum_{k=1}^{K} \phi_{\text{image}}(x_{t_k})`.

**Frames.** Files are decoded with PyAV (FFmpeg), read bounded like images (a regular file
under a size cap). Without ``fps``, the :math:`N` frames are spread uniformly over the whole
video, at times :math:`t_k = (k + \tfrac12)\, D / N` for a video of duration :math:`D`;
with ``fps``, they form a clip of :math:`N / \text{fps}` seconds at that rate, centred in the
video (a shorter video repeats its last frame). The frame shown at :math:`t_k` (the last one
that starts at or before it) is taken, and frames are decoded in one pass without keeping
the others, so a long video needs no more memory than a short one; frames larger than
:data:`MAX_SHORT_SIDE` on their shorter side are scaled down when decoded.

Weights come from a torchvision weights name (``"DEFAULT"``, ``"KINETICS400_V1"``), a file
holding a ``state_dict``, or none (a seeded random initialisation, logged as carrying no
pretrained signal; the tests save a random ``r3d_18`` to a file and load it with
``weights=FILE``). A missing, unreadable, undecodable, frameless or black video makes its row a
missing modality, reported by row, file and reason.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.data.storage import DEFAULT_MAX_BYTES, read_regular_file
from graphrec.device import fp16_on_cuda, resolve_device
from graphrec.encoders.cache import ENCODER_FORMAT_VERSION, EmbeddingCache, identity_digest
from graphrec.encoders.image import (
    ImageEncoder,
    ImageEncoderConfig,
    build_torchvision,
    classification_models,
    remove_classification_head,
)
from graphrec.encoders.media import check_has_files, default_cache_root, encode_media_files, media_column
from graphrec.errors import ConfigError

#: The torchvision video classifiers that can serve as clip encoders.
VIDEO_MODELS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "swin3d_t")
#: Decoded frames are scaled down to this shorter side first: every preset resizes to 342 or less.
MAX_SHORT_SIDE = 384
#: What PyAV raises for a file it cannot demux or decode (FFmpegError is neither an OSError nor a ValueError).
_UNDECODABLE = (av.FFmpegError, OSError, ValueError, RuntimeError, IndexError)


@dataclass(frozen=True)
class VideoEncoderConfig:
    """Which network embeds the videos, and which frames it sees.

    ``model`` is one of :data:`VIDEO_MODELS`, or, with ``key_frames``, any torchvision
    image classifier (``resnet18``, ...) that embeds ``frames`` key frames one by one.
    ``weights`` is a ``state_dict`` file, a torchvision weights name, or None (random
    initialisation). ``frames`` frames are sampled uniformly over the video, or at ``fps``
    frames per second from its middle. A file larger than ``max_file_bytes`` is not read,
    and a video whose sampled frames have no pixel brighter than ``black_level`` (of 255)
    counts as black; both are reported and marked missing.
    """

    model: str = "r3d_18"
    weights: str | None = None
    frames: int = 16
    fps: float | None = None
    key_frames: bool = False
    batch_size: int = 4
    device: str = "auto"
    max_file_bytes: int = DEFAULT_MAX_BYTES
    black_level: int = 4

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"must be >= 1, got {self.frames}", field="frames")
        if self.fps is not None and (not math.isfinite(self.fps) or self.fps <= 0):
            raise ConfigError(f"must be a positive number of frames per second, got {self.fps}", field="fps")
        if self.batch_size < 1:
            raise ConfigError(f"must be >= 1, got {self.batch_size}", field="batch_size")
        if self.max_file_bytes < 1:
            raise ConfigError(f"must be positive, got {self.max_file_bytes}", field="max_file_bytes")
        if not 0 <= self.black_level < 255:
            raise ConfigError(f"must be in [0, 255), got {self.black_level}", field="black_level")
        if not self.key_frames and self.model not in VIDEO_MODELS:
            hint = (" (an image model: pass key_frames, --key-frames K, to embed key frames with it)"
                    if self.model in classification_models() else "")
            raise ConfigError(f"unknown video model {self.model!r}{hint}; choose one of {', '.join(VIDEO_MODELS)}",
                              field="model")


# -------------------------------------------------------------------- frames
def sample_times(duration: float, frames: int, fps: float | None) -> np.ndarray:
    """The times (seconds from the first frame) of the frames to take (see the module docstring)."""
    k = np.arange(frames, dtype=np.float64)
    if fps is None:
        return (k + 0.5) * max(duration, 0.0) / frames
    start = max(0.0, (duration - frames / fps) / 2)
    return start + k / fps


def read_frames(data: bytes, frames: int, fps: float | None, short_side: int | None = None) -> np.ndarray:
    """Decode a video file's bytes and return the sampled frames as ``uint8`` ``[N, H, W, 3]`` RGB.

    With ``short_side``, larger frames are scaled down (aspect kept) until their shorter side is
    ``short_side``, so that a 4K video's frames take no more memory than the model needs.
    ``ValueError`` says why a file has nothing to give (no video stream, no frames).
    """
    duration = _duration(data)
    if duration is None:  # the container does not say: find out by decoding once
        times = [time for time in _frame_times(data)]
        if not times:
            raise ValueError("has no video frames")
        duration = times[-1] - times[0]
    targets = sample_times(duration, frames, fps)
    picked: list[np.ndarray] = []
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = _video_stream(container)
        first: float | None = None
        previous: Any = None
        previous_array: np.ndarray | None = None
        k = 0
        size: dict[str, int] = {}
        if short_side is not None and min(stream.width, stream.height) > short_side:
            scale = short_side / min(stream.width, stream.height)
            size = {"width": max(1, round(stream.width * scale)), "height": max(1, round(stream.height * scale))}
        for index, frame in enumerate(container.decode(stream)):
            time = frame.time if frame.time is not None else index / float(stream.average_rate or 25)
            first = time if first is None else first
            while k < frames and time - first > targets[k] + 1e-6:
                if previous_array is None:
                    previous_array = (previous if previous is not None else frame).to_ndarray(format="rgb24", **size)
                picked.append(previous_array)
                k += 1
            if k == frames:
                break
            previous, previous_array = frame, None
        if previous is None:
            raise ValueError("has no video frames")
        while k < frames:  # targets after the last frame's start: it is still showing
            if previous_array is None:
                previous_array = previous.to_ndarray(format="rgb24", **size)
            picked.append(previous_array)
            k += 1
    return np.stack(picked)


def _video_stream(container: Any) -> Any:
    if not container.streams.video:
        raise ValueError("has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _duration(data: bytes) -> float | None:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = _video_stream(container)
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    return None


def _frame_times(data: bytes) -> list[float]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = _video_stream(container)
        return [float(frame.time) if frame.time is not None else index / float(stream.average_rate or 25)
                for index, frame in enumerate(container.decode(stream))]


# ------------------------------------------------------------------- encoder
class VideoEncoder:
    """A headless torchvision video classifier (or an image encoder over key frames), ready to embed videos."""

    def __init__(self, config: VideoEncoderConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.image_encoder: ImageEncoder | None = None
        if config.key_frames:
            self.image_encoder = ImageEncoder(ImageEncoderConfig(
                config.model, weights=config.weights, batch_size=max(config.batch_size, config.frames),
                device=config.device))
            self.model: nn.Module = self.image_encoder.model
            self.transform: Callable[[Tensor], Tensor] = self.image_encoder.transform
            self.source: dict[str, Any] = self.image_encoder.source
            self.head = self.image_encoder.head
        else:
            self.model, self.transform, self.source = _build(config)
            self.head = remove_classification_head(self.model)
            self.model.to(self.device).eval()
        self.identity: dict[str, Any] = {
            "kind": "video", "model": config.model, **self.source["identity"], "head": self.head,
            "key_frames": config.key_frames, "frames": config.frames, "fps": config.fps,
            "transform": repr(self.transform), "black_level": config.black_level,
            "precision": "fp16" if self.device.type == "cuda" else "fp32", "format": ENCODER_FORMAT_VERSION,
        }
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode_clips([np.zeros((self.config.frames, 32, 32, 3), dtype=np.uint8)]).shape[1])
        return self._dim

    def forward(self, clips: Tensor) -> Tensor:
        """Features of a preprocessed ``[B, C, T, H, W]`` batch, as ``float32`` on the CPU."""
        autocast = fp16_on_cuda(self.device)
        with torch.inference_mode(), autocast:
            features = self.model(clips.to(self.device, non_blocking=True))
        return features.flatten(1).float().cpu()

    def encode_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Features of clips given as ``uint8`` ``[N, H, W, 3]`` frames, one row each."""
        if self.image_encoder is not None:
            rows = [self.image_encoder.encode([Image.fromarray(frame) for frame in clip]).mean(axis=0)
                    for clip in clips]
            return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.image_encoder.dim), np.float32)
        size = self.config.batch_size
        batches = [self.forward(torch.stack([self.preprocess(clip) for clip in clips[start:start + size]]))
                   for start in range(0, len(clips), size)]
        return torch.cat(batches).numpy() if batches else np.zeros((0, self.dim), dtype=np.float32)

    def preprocess(self, clip: np.ndarray) -> Tensor:
        """``[N, H, W, 3]`` uint8 frames to the model's ``[C, T, H, W]`` input."""
        return self.transform(torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2))

    def load(self, path: Path) -> np.ndarray:
        """A file's sampled frames; ``ValueError`` saying why when the video is unusable."""
        clip = read_frames(read_regular_file(path, self.config.max_file_bytes), self.config.frames, self.config.fps,
                           short_side=MAX_SHORT_SIDE)
        if int(clip.max()) <= self.config.black_level:
            raise ValueError(f"is black (no sampled frame has a pixel above {self.config.black_level} of 255)")
        return clip

    def encode_files(self, paths: Sequence[Path], progress: bool | None = None
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Features of video files: ``(values, ok, failures)``; a video that cannot be used gets a
        zero row, ``ok`` False and a ``(position, reason)`` failure."""
        values: np.ndarray | None = None
        ok = np.zeros(len(paths), dtype=bool)
        failures: list[tuple[int, str]] = []
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            nonlocal values
            rows = self.encode_clips([clip for _, clip in pending])
            if values is None:
                values = np.zeros((len(paths), rows.shape[1]), dtype=np.float32)
                self._dim = rows.shape[1]
            positions = [position for position, _ in pending]
            values[positions] = rows
            ok[positions] = True
            pending.clear()

        with tqdm(total=len(paths), unit="video", desc="encoding video",
                  disable=None if progress is None else not progress) as bar:
            for position, path in enumerate(paths):
                try:
                    pending.append((position, self.load(path)))
                except ValueError as exc:  # our own reasons (no stream, no frames, black) and FFmpeg's
                    failures.append((position, str(exc) if type(exc) is ValueError else f"{type(exc).__name__}: {exc}"))
                except _UNDECODABLE as exc:
                    failures.append((position, f"{type(exc).__name__}: {exc}"))
                if len(pending) >= self.config.batch_size:
                    flush()
                bar.update(1)
            if pending:
                flush()
        if values is None:
            values = np.zeros((len(paths), self.dim), dtype=np.float32)
        return values, ok, failures

    def provenance(self) -> dict[str, Any]:
        weights = self.source["weights"]
        return {
            "kind": "video",
            "model": self.config.model,
            "weights": weights,
            "weights_sha256": self.source["identity"].get("weights_sha256"),
            "pretrained": weights is not None,
            "dim": self.dim,
            "features": (f"mean over {self.config.frames} key frames of the image model's penultimate layer "
                         f"({self.head} replaced by identity)" if self.config.key_frames
                         else f"penultimate layer ({self.head} replaced by identity)"),
            "frames": self.config.frames,
            "fps": self.config.fps,
            "key_frames": self.config.key_frames,
            "preprocessing": repr(self.transform),
            "normalised": False,
            "precision": self.identity["precision"],
            "torchvision_version": torchvision.__version__,
            "pyav_version": av.__version__,
            "torch_version": torch.__version__,
            "cache_identity": identity_digest(self.identity),
        }


def _build(config: VideoEncoderConfig) -> tuple[nn.Module, Callable[[Tensor], Tensor], dict[str, Any]]:
    """The full video classifier, its preprocessing, and where its weights come from."""
    # Without a weights name, the preset of the default weights (built without downloading them).
    preset = torchvision.models.get_model_weights(config.model).DEFAULT.transforms()
    return build_torchvision(config.model, config.weights, "video", preset)


# ------------------------------------------------------------------- dataset
def encode_video(dataset: Dataset, config: VideoEncoderConfig | VideoEncoder, cache_dir: str | Path | None = None,
                 log: Callable[[str], None] | None = print, side: str = "item",
                 column: str | None = None) -> ModalityFeatures:
    """Embed every item's (``side="user"``: user's) video, named in ``column`` (default ``video``).

    Rows without a usable video get a zero row and ``mask`` False and are reported through
    ``log``. Embeddings are cached by the file's content under ``cache_dir`` (default
    ``DATASET/features/.cache/video``). ``config`` may be an already loaded :class:`VideoEncoder`.
    """
    column = media_column("video", side, column)
    check_has_files(dataset, "video", side, column)  # before a model is loaded
    encoder = config if isinstance(config, VideoEncoder) else VideoEncoder(config)
    if encoder.source["weights"] is None and log is not None:
        log(f"video: {encoder.config.model} is randomly initialised (no weights): its features carry no "
            "pretrained signal; pass weights for real use")
    root = default_cache_root(dataset, "video", cache_dir)
    cache = EmbeddingCache(root if root is not None else ".", encoder.identity)
    return encode_media_files(dataset, "video", side, column, encoder.encode_files, lambda: encoder.dim, cache,
                              root is not None, encoder.config.max_file_bytes, encoder.provenance(), log)


__all__ = ["VIDEO_MODELS", "VideoEncoder", "VideoEncoderConfig", "encode_video", "read_frames", "sample_times"]

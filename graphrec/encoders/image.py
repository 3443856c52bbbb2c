r"""Image features: penultimate-layer activations of a torchvision classification network.

A classifier :math:`f = g \circ \phi` ends with a linear head :math:`g(\mathbf{z}) =
W\mathbf{z} + \mathbf{b}` over pooled features :math:`\mathbf{z} = \phi(x)`; replacing
the head by the identity makes the network return :math:`\phi(x)` (512-d for
``resnet18``, 2048-d for ``resnet50``, 1024-d for ``mobilenet_v3_small``, 768-d for
``vit_b_16`` and ``convnext_tiny``), the usual visual feature of multimodal
recommenders (VBPR, MMGCN, FREEDOM). Only the last linear layer of the head goes:
the layer norm of ConvNeXt and the hidden layers of MobileNetV3 or VGG heads stay.

Weights come from a torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V2"``,
preprocessed with the weights' own ``transforms()``), from a file holding a
``state_dict`` saved with ``torch.save`` (strictly matched against the backbone), or
are randomly initialised (``weights=None``; only useful for tests: the tests of this
module use randomly initialised ``resnet18`` and ``mobilenet_v3_small``, saved to a
file and loaded back). Without a weights name, images get the architecture's standard
ImageNet preprocessing (resize, center crop, ImageNet mean/std normalisation, at the
sizes of its default torchvision weights) built from ``torchvision.transforms.v2``.

Images are read with Pillow and converted to RGB (transparent pixels over white).
A missing or unreadable image makes its item a missing modality (zero row, mask
False) and is reported by item index, original id and file path; it never stops the
pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import Tensor, nn
from torchvision.transforms import v2
from tqdm.auto import tqdm

from graphrec.data.dataset import Dataset, ModalityFeatures
from graphrec.data.storage import DEFAULT_MAX_BYTES
from graphrec.device import fp16_on_cuda, resolve_device
from graphrec.encoders.cache import (
    ENCODER_FORMAT_VERSION,
    EmbeddingCache,
    identity_digest,
    sha256_file,
    sha256_state_dict,
)
from graphrec.encoders.media import check_has_files, default_cache_root, encode_media_files, media_column
from graphrec.errors import ConfigError, GraphrecError

#: Attributes that hold the classification head in torchvision's classifiers, in the order looked for.
HEAD_ATTRIBUTES = ("fc", "heads", "head", "classifier")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_WEIGHTS_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
#: Layers a classification head ends with (a 1x1x1 convolution in S3D's video head).
_HEAD_LAYERS = (nn.Linear, nn.Conv2d, nn.Conv3d)
_UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Which torchvision network extracts image features, with which weights.

    ``model`` is any torchvision classification architecture name. ``weights`` is a
    file (a ``state_dict`` saved with ``torch.save``), a torchvision weights name
    (``"DEFAULT"``, ``"IMAGENET1K_V2"``, ...), or None for a random initialisation.
    ``num_workers`` are DataLoader processes decoding images. An image file larger than
    ``max_image_bytes`` is not read (its item is marked missing and reported).
    """

    model: str = "resnet50"
    weights: str | None = None
    batch_size: int = 32
    device: str = "auto"
    num_workers: int = 0
    max_image_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"must be >= 1, got {self.batch_size}", field="batch_size")
        if self.num_workers < 0:
            raise ConfigError(f"must be >= 0, got {self.num_workers}", field="num_workers")
        if self.max_image_bytes < 1:
            raise ConfigError(f"must be positive, got {self.max_image_bytes}", field="max_image_bytes")


# ------------------------------------------------------------ architecture
def save_random_weights(architecture: str, seed: int, path: str | Path) -> Path:
    """Save a seeded random initialisation of a torchvision network as a weights file.

    Offline, no pretrained weights can be downloaded; a file (rather than ``weights=None``)
    makes random-initialisation features reproducible and lets the feature cache recognise
    them on the next run. Random convolutional features still carry colour and texture.
    """
    from graphrec.data.storage import atomic_file

    path = Path(path)
    if not path.exists():
        torch.manual_seed(seed)
        model = torchvision.models.get_model(architecture, weights=None)
        with atomic_file(path) as tmp:
            torch.save(model.state_dict(), tmp)
    return path


def classification_models() -> list[str]:
    """Names of torchvision's classification architectures."""
    return torchvision.models.list_models(module=torchvision.models)


def find_classification_head(model: nn.Module) -> str:
    """Qualified name of the layer that maps penultimate features to class scores.

    It is the head attribute itself when that is a layer (``fc`` of ResNet, ``head`` of
    Swin), else the last linear (or, for SqueezeNet and S3D, 1x1 convolution) layer inside it
    (``classifier.3`` of MobileNetV3, ``classifier.2`` of ConvNeXt, ``heads.head`` of ViT).
    """
    for attribute in HEAD_ATTRIBUTES:
        head = getattr(model, attribute, None)
        if isinstance(head, _HEAD_LAYERS):
            return attribute
        if isinstance(head, nn.Module):
            layers = [name for name, module in head.named_modules() if isinstance(module, _HEAD_LAYERS)]
            if layers:
                return f"{attribute}.{layers[-1]}"
    raise GraphrecError(f"cannot find the classification head of {type(model).__name__} (looked for a linear "
                        f"layer in {', '.join(HEAD_ATTRIBUTES)})")


def remove_classification_head(model: nn.Module) -> str:
    """Replace the classification layer by the identity, in place; return its qualified name."""
    name = find_classification_head(model)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return name


def standard_transform(model: str) -> v2.Compose:
    """The architecture's ImageNet preprocessing as a ``transforms.v2`` pipeline.

    Resize and crop sizes and interpolation are those of the architecture's default
    torchvision weights (256/224 bilinear for ResNets, 342/299 for Inception v3, ...).
    """
    resize, crop, interpolation = [256], [224], v2.InterpolationMode.BILINEAR
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    with contextlib.suppress(ValueError, KeyError, AttributeError):
        preset = torchvision.models.get_model_weights(model).DEFAULT.transforms()
        resize, crop, interpolation = list(preset.resize_size), list(preset.crop_size), preset.interpolation
        mean, std = list(preset.mean), list(preset.std)
    return v2.Compose([
        v2.Resize(resize, interpolation=interpolation, antialias=True),
        v2.CenterCrop(crop),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=mean, std=std),
    ])


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image as RGB; transparent pixels are put over white (product photos often have none)."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        return image.convert("RGB")


# ----------------------------------------------------------------- encoder
class ImageEncoder:
    """A headless torchvision classifier and its preprocessing, ready to embed images."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.model, self.transform, self.source = _build(config)
        self.head = remove_classification_head(self.model)
        self.model.to(self.device).eval()
        self.identity: dict[str, Any] = {
            "kind": "image", "model": config.model, **self.source["identity"], "head": self.head,
            "transform": repr(self.transform), "precision": "fp16" if self.device.type == "cuda" else "fp32",
            "format": ENCODER_FORMAT_VERSION,
        }
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.forward(self.transform(Image.new("RGB", (32, 32))).unsqueeze(0)).shape[1])
        return self._dim

    def forward(self, batch: Tensor) -> Tensor:
        """Features of a preprocessed ``[B, 3, H, W]`` batch, as ``float32`` on the CPU."""
        autocast = fp16_on_cuda(self.device)
        with torch.inference_mode(), autocast:
            features = self.model(batch.to(self.device, non_blocking=True))
        return features.flatten(1).float().cpu()

    def encode(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Features of RGB Pillow images, one row each."""
        size = self.config.batch_size
        rows = [self.forward(torch.stack([self.transform(image) for image in images[start:start + size]]))
                for start in range(0, len(images), size)]
        return torch.cat(rows).numpy() if rows else np.zeros((0, self.dim), dtype=np.float32)

    def encode_files(self, paths: Sequence[Path], progress: bool | None = None
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
        """Features of image files: ``(values, ok, failures)``.

        Unreadable files get a zero row, ``ok`` False and a ``(position, reason)`` failure.
        """
        files = _ImageFiles(list(paths), self.transform)
        loader = torch.utils.data.DataLoader(files, batch_size=self.config.batch_size,
                                             num_workers=self.config.num_workers, collate_fn=_collate,
                                             pin_memory=self.device.type == "cuda")
        values: np.ndarray | None = None
        ok = np.zeros(len(files), dtype=bool)
        failures: list[tuple[int, str]] = []
        with tqdm(total=len(files), unit="image", desc="encoding images",
                  disable=None if progress is None else not progress) as bar:
            for positions, batch, batch_failures in loader:
                failures.extend(batch_failures)
                if len(positions):
                    features = self.forward(batch).numpy()
                    if values is None:
                        values = np.zeros((len(files), features.shape[1]), dtype=np.float32)
                        self._dim = features.shape[1]
                    values[positions] = features
                    ok[positions] = True
                bar.update(len(positions) + len(batch_failures))
        if values is None:
            values = np.zeros((len(files), self.dim), dtype=np.float32)
        return values, ok, failures

    def provenance(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "model": self.config.model,
            "weights": self.source["weights"],
            "weights_sha256": self.source["identity"].get("weights_sha256"),
            "pretrained": self.source["weights"] is not None,
            "dim": self.dim,
            "features": f"penultimate layer ({self.head} replaced by identity)",
            "preprocessing": repr(self.transform),
            "normalised": False,
            "precision": self.identity["precision"],
            "torchvision_version": torchvision.__version__,
            "torch_version": torch.__version__,
            "cache_identity": identity_digest(self.identity),
        }


class _ImageFiles(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], transform: Callable[[Image.Image], Tensor]) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> tuple[int, Tensor | None, str | None]:
        try:
            return position, self.transform(load_rgb(self.paths[position])), None
        except _UNREADABLE as exc:
            return position, None, f"{type(exc).__name__}: {exc}"


def _collate(batch: list[tuple[int, Tensor | None, str | None]]) -> tuple[list[int], Tensor, list[tuple[int, str]]]:
    good = [(position, tensor) for position, tensor, _ in batch if tensor is not None]
    failures = [(position, error) for position, tensor, error in batch if tensor is None and error is not None]
    stacked = torch.stack([tensor for _, tensor in good]) if good else torch.empty(0)
    return [position for position, _ in good], stacked, failures


def _build(config: ImageEncoderConfig) -> tuple[nn.Module, Callable[[Any], Tensor], dict[str, Any]]:
    """The full classifier, its preprocessing, and where its weights come from."""
    name = config.model
    if name not in classification_models():
        raise GraphrecError(f"unknown image model {name!r}; torchvision's classification models are: "
                            f"{', '.join(classification_models())}")
    return build_torchvision(name, config.weights, "image", standard_transform(name))


def build_torchvision(name: str, weights: str | None, what: str, transform: Callable[[Any], Tensor]
                      ) -> tuple[nn.Module, Callable[[Any], Tensor], dict[str, Any]]:
    """A torchvision network with its weights, its preprocessing, and where the weights come from.

    ``weights`` is None (random initialisation), a ``state_dict`` file or a torchvision weights
    name; ``transform`` is the preprocessing without a weights name (a weights name brings its
    own). ``what`` ("image", "video") words the errors.
    """
    if weights is None:
        model = torchvision.models.get_model(name, weights=None)
        return model, transform, {
            "weights": None, "identity": {"weights": None, "state_sha256": sha256_state_dict(model.state_dict())}}
    path = Path(weights).expanduser()
    if path.is_file():
        model = torchvision.models.get_model(name, weights=None)
        load_backbone_weights(model, path)
        digest = sha256_file(path)
        return model, transform, {"weights": str(path.resolve()), "identity": {"weights_sha256": digest}}
    if path.suffix in _WEIGHTS_FILE_SUFFIXES or "/" in weights or "\\" in weights or path.exists():
        raise GraphrecError(f"weights file {weights} does not exist (or is not a file)")
    enum = weights_enum(name, weights, what)
    try:
        model = torchvision.models.get_model(name, weights=enum)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a broken cached download a RuntimeError
        raise GraphrecError(
            f"could not load the {enum} weights of {what} model {name!r}: they are not in torch's cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}) and downloading {enum.url} failed (downloads are "
            f"unavailable offline). Copy that file into the cache, or save the weights on a machine with "
            f"internet with torch.save(torchvision.models.get_model({name!r}, weights={weights!r}).state_dict(), "
            f"FILE) and pass --weights FILE. Cause: {exc}") from exc
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(enum.url).name
    checkpoint_digest = sha256_file(checkpoint) if checkpoint.is_file() else None
    return model, enum.transforms(), {
        "weights": str(enum), "identity": {"weights": str(enum), "weights_url": enum.url,
                                           "weights_sha256": checkpoint_digest}}


def weights_enum(model: str, weights: str, what: str = "image") -> torchvision.models.WeightsEnum:
    """The torchvision weights named ``weights`` (``"DEFAULT"``, ``"KINETICS400_V1"``, ...) of ``model``."""
    try:
        enum_class = torchvision.models.get_model_weights(model)
    except (ValueError, KeyError) as exc:
        raise GraphrecError(f"{what} model {model!r} has no torchvision weights; pass --weights FILE") from exc
    member = weights.rpartition(".")[2] if weights.startswith(f"{enum_class.__name__}.") else weights
    try:
        return enum_class[member]
    except KeyError:
        raise GraphrecError(f"unknown weights {weights!r} for {what} model {model!r}; choose a file or one of "
                            f"{', '.join(enum_class.__members__)}") from None


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``state_dict`` file into ``model``, strictly for everything but the classification layer.

    The file may hold the full classifier or the backbone only (saved after the head was
    replaced). Any other missing key, any unexpected key or any shape mismatch raises a
    GraphrecError naming the file.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling raises many types; every one means "not a weights file"
        raise GraphrecError(f"weights file {path} cannot be read as a PyTorch state_dict "
                            f"(torch.load(..., weights_only=True) failed: {exc})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(value, Tensor) for value in state.values()):
        raise GraphrecError(f"weights file {path} does not hold a state_dict (a mapping of parameter names to "
                            f"tensors, as saved by torch.save(model.state_dict(), FILE)); it holds "
                            f"{type(state).__name__}")
    head = find_classification_head(model)
    architecture = type(model).__name__
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split("\n\t")[1:]) or str(exc)  # drop torch's "Error(s) in loading..." line
        raise GraphrecError(f"weights file {path} does not fit {architecture}: {reason}") from exc
    missing = [key for key in result.missing_keys if not key.startswith(f"{head}.")]
    if missing or result.unexpected_keys:
        details = []
        if missing:
            details.append(f"{len(missing)} backbone parameter(s) missing from the file, e.g. {missing[:3]}")
        if result.unexpected_keys:
            details.append(f"{len(result.unexpected_keys)} unexpected key(s), e.g. {result.unexpected_keys[:3]}")
        raise GraphrecError(f"weights file {path} does not fit {architecture}: {'; '.join(details)}. Was it "
                            f"saved from a different architecture?")


# ----------------------------------------------------------------- dataset
def encode_images(dataset: Dataset, config: ImageEncoderConfig | ImageEncoder, cache_dir: str | Path | None = None,
                  log: Callable[[str], None] | None = None, side: str = "item",
                  column: str | None = None) -> ModalityFeatures:
    """Embed every item's (``side="user"``: user's) image; rows without a readable image get a zero
    row and ``mask`` False.

    ``column`` defaults to ``image`` for items and ``avatar`` for users. ``config`` may be an
    already loaded :class:`ImageEncoder`. Embeddings are cached by the image file's content
    under ``cache_dir`` (default ``DATASET/features/.cache/image``; no cache for a dataset that
    is not on disk). Missing and unreadable files are reported through ``log`` (row index,
    original id, path) and listed, with the pass' counts, in the returned features' ``encoder["run"]``.
    """
    column = media_column("image", side, column)
    check_has_files(dataset, "image", side, column)  # before a model is loaded
    encoder = config if isinstance(config, ImageEncoder) else ImageEncoder(config)
    if encoder.source["weights"] is None and log is not None:
        log(f"image: {encoder.config.model} is randomly initialised (no weights): its features carry no "
            "visual meaning; pass weights for real use")
    root = default_cache_root(dataset, "image", cache_dir)
    cache = EmbeddingCache(root if root is not None else ".", encoder.identity)
    return encode_media_files(dataset, "image", side, column, encoder.encode_files, lambda: encoder.dim, cache,
                              root is not None, encoder.config.max_image_bytes, encoder.provenance(), log)


__all__ = ["ImageEncoder", "ImageEncoderConfig", "build_torchvision", "classification_models", "encode_images",
           "find_classification_head", "load_backbone_weights", "load_rgb", "remove_classification_head",
           "save_random_weights", "standard_transform", "weights_enum"]

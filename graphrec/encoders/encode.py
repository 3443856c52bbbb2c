"""Add an encoded modality to a dataset directory (what ``graphrec encode`` runs).

Only three files change: ``features/NAME.npy``, ``features/NAME.mask.npy`` (for a user
modality ``features/user/NAME.npy`` and its mask, listed under ``user_modalities``) and
``manifest.json``. All three are written to temporary files first and renamed into
place only once the encoding has succeeded, data before manifest, so a failure (a
bad weights file, an interrupted run) leaves the dataset as it was. Images, tables
and other modalities are not touched.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphrec.data.dataset import SIDES, ModalityFeatures, check_finite, load_dataset
from graphrec.data.storage import atomic_file, directory_lock, write_json
from graphrec.encoders.audio import AudioEncoder, AudioEncoderConfig, encode_audio
from graphrec.encoders.image import ImageEncoder, ImageEncoderConfig, encode_images
from graphrec.encoders.text import TextEncoder, TextEncoderConfig, encode_text
from graphrec.encoders.video import VideoEncoder, VideoEncoderConfig, encode_video
from graphrec.errors import DataFormatError, GraphrecError

MODALITIES = ("text", "image", "audio", "video")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

EncoderConfig = (TextEncoderConfig | ImageEncoderConfig | AudioEncoderConfig | VideoEncoderConfig | TextEncoder
                 | ImageEncoder | AudioEncoder | VideoEncoder)
#: Per modality: the configuration and encoder types it takes.
_EXPECTED: dict[str, tuple[type, type]] = {
    "text": (TextEncoderConfig, TextEncoder), "image": (ImageEncoderConfig, ImageEncoder),
    "audio": (AudioEncoderConfig, AudioEncoder), "video": (VideoEncoderConfig, VideoEncoder),
}


def encode(dataset_path: str | Path, modality: str, config: EncoderConfig, name: str | None = None,
           cache_dir: str | Path | None = None, log: Callable[[str], None] | None = print,
           side: str = "item", column: str | None = None) -> ModalityFeatures:
    """Encode the items' (``side="user"``: users') ``modality`` and store it in the dataset as ``name``.

    ``modality`` is one of :data:`MODALITIES`; ``name`` defaults to it, and an existing
    modality of that name (on that side) is replaced. ``column`` is the media column to read
    (default: ``image``, ``audio``, ``video``; a user's image is its ``avatar``).
    ``config`` may be a loaded encoder instead of a configuration. ``cache_dir``
    defaults to ``DATASET/features/.cache/<modality>``; rows whose input and encoder
    are unchanged since an earlier run are taken from there instead of being encoded.
    Returns the features as stored, with their provenance in ``encoder``.
    """
    if modality not in MODALITIES:
        raise GraphrecError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    if side not in SIDES:
        raise GraphrecError(f"unknown side {side!r}; choose one of {', '.join(SIDES)}")
    if modality == "text" and column is not None:
        raise GraphrecError("a column applies to media modalities; text reads the fields of its configuration")
    expected = _EXPECTED[modality]
    if not isinstance(config, expected):
        raise GraphrecError(f"modality {modality!r} needs a {expected[0].__name__}, got {type(config).__name__}")
    name = modality if name is None else name
    if not _NAME.fullmatch(name) or name.endswith(".mask"):
        raise GraphrecError(f"invalid modality name {name!r}: use letters, digits, '_', '-' and '.', starting with a "
                            "letter or digit (not ending in '.mask')")
    root = Path(dataset_path)
    if not root.is_dir():  # before the lock, which would create the parent folders
        raise DataFormatError("not a graphrec dataset (no such directory)", path=root)
    with directory_lock(root):  # one writer of the dataset at a time: another encode would lose this one's manifest
        return _encode_into(root, name, config, cache_dir, log, side, column)


def _encode_into(root: Path, name: str, config: EncoderConfig, cache_dir: str | Path | None,
                 log: Callable[[str], None] | None, side: str, column: str | None) -> ModalityFeatures:
    dataset = load_dataset(root)
    # The modality was checked against the configuration's type above.
    if isinstance(config, (TextEncoderConfig, TextEncoder)):
        features = encode_text(dataset, config, cache_dir=cache_dir, log=log, side=side)
    elif isinstance(config, (ImageEncoderConfig, ImageEncoder)):
        features = encode_images(dataset, config, cache_dir=cache_dir, log=log, side=side, column=column)
    elif isinstance(config, (AudioEncoderConfig, AudioEncoder)):
        features = encode_audio(dataset, config, cache_dir=cache_dir, log=log, side=side, column=column)
    else:
        features = encode_video(dataset, config, cache_dir=cache_dir, log=log, side=side, column=column)
    features = dataclasses.replace(features, name=name)

    folder, key = ("features", "modalities") if side == "item" else ("features/user", "user_modalities")
    values_file, mask_file = f"{folder}/{name}.npy", f"{folder}/{name}.mask.npy"
    check_finite(features.values, root / values_file)
    manifest = dict(dataset.manifest)
    modalities = dict(manifest.get(key, {}))
    replaced = name in modalities
    modalities[name] = {"file": values_file, "mask": mask_file, "dim": features.dim,
                        "missing": features.num_missing, "encoder": features.encoder}
    manifest[key] = modalities
    # Exits run innermost first: both arrays are in place before the manifest points at them.
    with atomic_file(root / "manifest.json") as manifest_tmp, atomic_file(root / mask_file) as mask_tmp, \
            atomic_file(root / values_file) as values_tmp:
        with open(values_tmp, "wb") as handle:
            np.save(handle, features.values.astype(np.float32, copy=False))
        with open(mask_tmp, "wb") as handle:
            np.save(handle, features.mask.astype(bool, copy=False))
        write_json(manifest_tmp, manifest)
    if log is not None:
        log(f"{'replaced' if replaced else 'added'} {'user ' if side == 'user' else ''}modality {name!r}: "
            f"{values_file} ({features.values.shape[0]} x {features.dim}, {features.num_missing} missing) in {root}")
    return features

"""Add an encoded modality to a dataset directory (what ``graphrec encode`` runs).

Only three files change: ``features/NAME.npy``, ``features/NAME.mask.npy`` and
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

from graphrec.data.dataset import ModalityFeatures, check_finite, load_dataset
from graphrec.data.storage import atomic_file, directory_lock, write_json
from graphrec.encoders.image import ImageEncoder, ImageEncoderConfig, encode_images
from graphrec.encoders.text import TextEncoder, TextEncoderConfig, encode_text
from graphrec.errors import DataFormatError, GraphrecError

MODALITIES = ("text", "image")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def encode(dataset_path: str | Path, modality: str,
           config: TextEncoderConfig | ImageEncoderConfig | TextEncoder | ImageEncoder,
           name: str | None = None, cache_dir: str | Path | None = None,
           log: Callable[[str], None] | None = print) -> ModalityFeatures:
    """Encode the items' ``modality`` ("text" or "image") and store it in the dataset as ``name``.

    ``name`` defaults to the modality; an existing modality of that name is replaced.
    ``config`` may be a loaded encoder instead of a configuration. ``cache_dir``
    defaults to ``DATASET/features/.cache/<modality>``; items whose input and encoder
    are unchanged since an earlier run are taken from there instead of being encoded.
    Returns the features as stored, with their provenance in ``encoder``.
    """
    if modality not in MODALITIES:
        raise GraphrecError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    expected = (TextEncoderConfig, TextEncoder) if modality == "text" else (ImageEncoderConfig, ImageEncoder)
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
        return _encode_into(root, name, config, cache_dir, log)


def _encode_into(root: Path, name: str, config: TextEncoderConfig | ImageEncoderConfig | TextEncoder | ImageEncoder,
                 cache_dir: str | Path | None, log: Callable[[str], None] | None) -> ModalityFeatures:
    dataset = load_dataset(root)
    if isinstance(config, (TextEncoderConfig, TextEncoder)):  # modality "text", as checked above
        features = encode_text(dataset, config, cache_dir=cache_dir, log=log)
    else:
        features = encode_images(dataset, config, cache_dir=cache_dir, log=log)
    features = dataclasses.replace(features, name=name)

    values_file, mask_file = f"features/{name}.npy", f"features/{name}.mask.npy"
    check_finite(features.values, root / values_file)
    manifest = dict(dataset.manifest)
    modalities = dict(manifest.get("modalities", {}))
    replaced = name in modalities
    modalities[name] = {"file": values_file, "mask": mask_file, "dim": features.dim,
                        "missing": features.num_missing, "encoder": features.encoder}
    manifest["modalities"] = modalities
    # Exits run innermost first: both arrays are in place before the manifest points at them.
    with atomic_file(root / "manifest.json") as manifest_tmp, atomic_file(root / mask_file) as mask_tmp, \
            atomic_file(root / values_file) as values_tmp:
        with open(values_tmp, "wb") as handle:
            np.save(handle, features.values.astype(np.float32, copy=False))
        with open(mask_tmp, "wb") as handle:
            np.save(handle, features.mask.astype(bool, copy=False))
        write_json(manifest_tmp, manifest)
    if log is not None:
        log(f"{'replaced' if replaced else 'added'} modality {name!r}: {values_file} "
            f"({features.values.shape[0]} x {features.dim}, {features.num_missing} missing) in {root}")
    return features

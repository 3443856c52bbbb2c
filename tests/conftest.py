"""Shared fixtures: ``shared_data``, the real datasets in ../shared/data beside the repository (see _paths.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _paths import HAVE_SHARED_DATA, MISSING_SHARED_DATA, SHARED_DATA

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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real datasets, ../shared/data (``SHARED_DATA`` in ``tests/_paths.py``).

    Every test that reads a real dataset takes the path from here; without the folder it is skipped, with the reason.
    """
    if not HAVE_SHARED_DATA:
        pytest.skip(MISSING_SHARED_DATA)
    return SHARED_DATA

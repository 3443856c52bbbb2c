"""Shared fixtures: where the real datasets live (../shared/data beside the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real datasets are expected at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA

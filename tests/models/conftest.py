"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
from _multimodal import synthetic_with_features as build_synthetic_with_features

from graphrec.data.dataset import Dataset


@pytest.fixture(scope="module")
def synthetic_with_features(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """:func:`_multimodal.synthetic_with_features` in a fresh folder, once per test module."""
    return build_synthetic_with_features(tmp_path_factory.mktemp("synthetic") / "data")

"""Helpers of the multimodal model tests (FREEDOM, LGMRec): a dense reference of the normalised
adjacency, a real synthetic dataset whose features show its planted attributes, and the CLI as a
real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.data.convert import convert
from graphrec.data.dataset import Dataset, ModalityFeatures, load_dataset


def dense_normalized(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> np.ndarray:
    """D^-1/2 A D^-1/2 of the bipartite graph, densely."""
    n = num_users + num_items
    adjacency = np.zeros((n, n))
    adjacency[users, num_users + items] = 1.0
    adjacency[num_users + items, users] = 1.0
    degree = adjacency.sum(1)
    scale = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    return scale[:, None] * adjacency * scale[None, :]


def synthetic_with_features(destination: Path) -> Dataset:
    """A real synthetic dataset (300 users, 120 items) written to ``destination``, with features that
    show its planted attributes (one-hot colour, shape, texture for an 'image'; category and brand for
    a 'text')."""
    convert("synthetic", "-", destination, reader_options={"users": 300, "items": 120, "seed": 2,
                                                           "mean_interactions": 12, "image_size": 16})
    dataset = load_dataset(destination)
    items = dataset.items.assign(category=dataset.items["categories"].map(lambda c: c[0]))

    def one_hot(*columns: str) -> np.ndarray:
        frame = items[list(columns)].astype(str)
        return pd.get_dummies(frame).to_numpy(np.float32) + 0.05 * np.random.default_rng(0).normal(
            size=(len(frame), 1)).astype(np.float32)

    return Dataset(dataset.name, dataset.interactions, items, dataset.users, {
        "image": ModalityFeatures("image", one_hot("colour", "shape", "texture"), np.ones(len(items), bool)),
        "text": ModalityFeatures("text", one_hot("category", "brand"), np.ones(len(items), bool))})


def graphrec(*args: object) -> subprocess.CompletedProcess[str]:
    """``python -m graphrec ARGS`` with a wide terminal (so that help and errors do not wrap)."""
    return subprocess.run([sys.executable, "-m", "graphrec", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})

"""Cold users made by hand for the user-side tests: a share of ml-100k's users whose training
interactions all move to validation and test, and a multi-hot genre modality for the content models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from graphrec.data.dataset import SPLIT_DTYPE, Dataset, ModalityFeatures, load_dataset


def genre_modality(dataset: Dataset) -> ModalityFeatures:
    """The items' genres as a multi-hot feature (an item modality every item of ml-100k has)."""
    names = sorted({genre for genres in dataset.items["genres"] for genre in (genres if genres is not None else [])})
    values = np.zeros((dataset.num_items, len(names)), dtype=np.float32)
    for item, genres in enumerate(dataset.items["genres"]):
        for genre in (genres if genres is not None else []):
            values[item, names.index(genre)] = 1.0
    return ModalityFeatures("genre_flags", values, values.any(axis=1))


def with_cold_users(dataset: Dataset, share: float, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """``dataset`` with ``share`` of its users made cold: each one's training interactions go, at
    random, half to validation and half to test. Returns the dataset and the cold users."""
    rng = np.random.default_rng(seed)
    users = np.unique(dataset.pairs("train")[0])
    cold = np.sort(rng.choice(users, size=round(share * len(users)), replace=False))
    frame = dataset.interactions.copy()
    split = frame["split"].astype(str).to_numpy().copy()
    moved = np.isin(frame["user"].to_numpy(), cold) & (split == "train")
    split[moved] = np.where(rng.random(int(moved.sum())) < 0.5, "valid", "test")
    frame["split"] = pd.Categorical(split, dtype=SPLIT_DTYPE)
    return replace(dataset, interactions=frame, path=None), cold


def only_users(dataset: Dataset, users: np.ndarray) -> Dataset:
    """``dataset`` whose validation and test interactions are those of ``users`` only, to evaluate a
    group of users (their own masks, from their own training and validation rows, are unchanged)."""
    frame = dataset.interactions
    keep = (frame["split"] == "train").to_numpy() | np.isin(frame["user"].to_numpy(), users)
    return replace(dataset, interactions=frame[keep].reset_index(drop=True), path=None)


def ml100k_cold_users(shared_data: Path, out: Path, share: float = 0.1) -> tuple[Dataset, np.ndarray]:
    """ml-100k as ``graphrec convert movielens`` writes it (age, gender, occupation, zip per user),
    with the genre modality and ``share`` of its users cold."""
    from graphrec.data.convert import convert

    dataset = load_dataset(convert("movielens", shared_data / "ml-100k", out).dataset.path)
    return with_cold_users(dataset.with_features(genre_modality(dataset)), share)

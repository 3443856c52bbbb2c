"""Carve a validation split out of training, for datasets converted without one.

Model selection and early stopping read the validation split only, so a dataset without one gets
it from its training interactions (a share per user, seeded), before any model sees the
training edges.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from graphrec.data.dataset import SPLIT_DTYPE, Dataset
from graphrec.data.splitting import TRAIN, VALID, split_random


def holds_out_cold_users(dataset: Dataset) -> bool:
    """Whether the dataset was converted with cold users held out of training (its manifest's split
    protocol says how many)."""
    return int(dataset.manifest.get("split", {}).get("cold_users", 0) or 0) > 0


def ensure_validation_split(dataset: Dataset, seed: int, share: float = 0.1) -> tuple[Dataset, str | None]:
    """Return the dataset unchanged if it has validation interactions; else carve them out of
    training, with a note saying how many."""
    counts = dataset.split_counts()
    if counts["valid"] > 0:
        return dataset, None
    inter = dataset.interactions
    codes = inter["split"].cat.codes.to_numpy().copy()
    train_rows = np.flatnonzero(codes == TRAIN)
    rng = np.random.default_rng(seed)
    carved = split_random(inter["user"].to_numpy()[train_rows], (1.0 - share, share, 0.0), rng)
    codes[train_rows[carved == VALID]] = VALID
    new_inter = inter.copy()
    new_inter["split"] = pd.Categorical.from_codes(codes, dtype=SPLIT_DTYPE)
    carved_dataset = dataclasses.replace(dataset, interactions=new_inter)
    note = (f"the dataset has no validation split; carved {int((carved == VALID).sum()):,} training "
            f"interactions ({share:.0%} per user, seed {seed}) into validation for early stopping")
    return carved_dataset, note


def merge_validation_into_training(dataset: Dataset) -> Dataset:
    """The dataset with its validation interactions moved into training (the refit protocol: once
    model selection on validation is done, the chosen model is refit on train + valid and tested).
    The test split is untouched, so testing still masks exactly the items it masked before.

    On a dataset that holds cold users out (:func:`holds_out_cold_users`), the validation
    interactions of the users without training interactions stay in validation: moved, they would
    make the cold users warm and put them in the refit graph."""
    inter = dataset.interactions
    codes = inter["split"].cat.codes.to_numpy().copy()
    merged = codes == VALID
    if holds_out_cold_users(dataset):
        users = inter["user"].to_numpy()
        merged &= (np.bincount(users[codes == TRAIN], minlength=dataset.num_users) > 0)[users]
    codes[merged] = TRAIN
    new_inter = inter.copy()
    new_inter["split"] = pd.Categorical.from_codes(codes, dtype=SPLIT_DTYPE)
    return dataclasses.replace(dataset, interactions=new_inter)

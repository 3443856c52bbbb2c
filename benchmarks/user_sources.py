"""Cold-start users recommended from their features: ml-100k's ``u.user`` (age, gender, occupation).

ml-100k as ``graphrec convert movielens`` writes it (random 8:1:1), with a multi-hot genre item modality,
and 10% of the users (seeded) made cold: each one's training interactions go, at random, half to
validation and half to test, so these users have features and no training interaction. Every model
trains (or, for the filters, chooses its options) on validation as usual; cold and warm users are then
evaluated apart, on validation (what the defaults are chosen by) and on test (reported once), Recall@20
with training (and, on test, validation) items masked.

Arms: popularity; ModalityGAT and VBPR without user sources, with them, and with them and user-id
dropout; GF-CF and mmgf without and with pseudo-histories (``cold_user_neighbours``).

Run: ``.venv/bin/python benchmarks/user_sources.py`` (writes ``results/user_sources.json``); ``--quick`` is
a smoke run (one epoch, a few arms), written to ``results/smoke/``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import _omp_passive  # noqa: F401 -- sets OMP_WAIT_POLICY before torch loads
import numpy as np
import pandas as pd
from _common import DATA, print_table, require_data, results_dir, write_results

from graphrec.data.dataset import SPLIT_DTYPE, Dataset, ModalityFeatures, load_dataset
from graphrec.evaluation import EvalConfig
from graphrec.training.run import ModelConfig, TrainConfig, evaluate_model, train

COLD_SHARE = 0.1
COLUMNS = ["model", "valid cold r@20", "valid warm r@20", "test cold r@20", "test warm r@20", "seconds"]
GAT = {"dim": 64, "layers": 2}
OFF = {"user_entities": False, "user_modalities": False}
ON = {"user_entities": True, "user_modalities": True}
FILTER_OFF = {"cold_user_neighbours": 0}


def arms(quick: bool) -> list[tuple[str, ModelConfig]]:
    every = [
        ("popularity", ModelConfig("pop")),
        ("gat, no user sources", ModelConfig("gat", **GAT, **OFF)),
        ("gat, user sources", ModelConfig("gat", **GAT)),
        ("gat, user sources, id dropout 0.3", ModelConfig("gat", **GAT, user_id_dropout=0.3)),
        ("vbpr, no user sources", ModelConfig("vbpr", dim=64, **OFF)),
        ("vbpr, user sources", ModelConfig("vbpr", dim=64, **ON)),
        ("vbpr, user sources, id dropout 0.3", ModelConfig("vbpr", dim=64, **ON, user_id_dropout=0.3)),
        ("gfcf, no pseudo-history", ModelConfig("gfcf", **FILTER_OFF)),
        ("gfcf, pseudo-history k=20", ModelConfig("gfcf", cold_user_neighbours=20)),
        ("gfcf, pseudo-history k=50", ModelConfig("gfcf", cold_user_neighbours=50)),
        ("gfcf, pseudo-history k=200", ModelConfig("gfcf", cold_user_neighbours=200)),
        ("mmgf, no pseudo-history", ModelConfig("mmgf", **FILTER_OFF)),
        ("mmgf, pseudo-history k=50", ModelConfig("mmgf", cold_user_neighbours=50)),
    ]
    if quick:
        return [arm for arm in every if arm[0] in ("popularity", "vbpr, user sources", "gfcf, pseudo-history k=50")]
    return every


def genre_modality(dataset: Dataset) -> ModalityFeatures:
    names = sorted({genre for genres in dataset.items["genres"] for genre in (genres if genres is not None else [])})
    values = np.zeros((dataset.num_items, len(names)), dtype=np.float32)
    for item, genres in enumerate(dataset.items["genres"]):
        for genre in (genres if genres is not None else []):
            values[item, names.index(genre)] = 1.0
    return ModalityFeatures("genre_flags", values, values.any(axis=1))


def with_cold_users(dataset: Dataset, share: float, seed: int = 0) -> tuple[Dataset, np.ndarray]:
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
    frame = dataset.interactions
    keep = (frame["split"] == "train").to_numpy() | np.isin(frame["user"].to_numpy(), users)
    return replace(dataset, interactions=frame[keep].reset_index(drop=True), path=None)


def run_arm(label: str, config: ModelConfig, dataset: Dataset, cold: np.ndarray, train_config: TrainConfig,
            ) -> dict[str, Any]:
    start = time.perf_counter()
    run = train(dataset, config, train_config, log=lambda _: None)
    warm = np.setdiff1d(np.arange(dataset.num_users), cold)
    evaluation = EvalConfig(ks=(20,), beyond_accuracy=False, full_mrr=False)
    row: dict[str, Any] = {"model": label, "options": config.to_dict()["options"]}
    for split in ("valid", "test"):
        for group, users in (("cold", cold), ("warm", warm)):
            metrics = evaluate_model(run.model, only_users(dataset, users), split, evaluation)
            row[f"{split} {group} r@20"] = round(float(metrics["recall@20"]), 4)
    row["seconds"] = round(time.perf_counter() - start, 1)
    print_table([row], COLUMNS)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one epoch, three arms")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args()
    if args.quick:
        require_data("ml-100k")
    from graphrec.data.convert import convert

    with tempfile.TemporaryDirectory() as work:
        base = load_dataset(convert("movielens", DATA / "ml-100k", Path(work) / "ml-100k").dataset.path)
    dataset, cold = with_cold_users(base.with_features(genre_modality(base)), COLD_SHARE)
    train_config = TrainConfig(epochs=1 if args.quick else args.epochs, patience=5, progress=False, seed=0,
                               eval_ks=(20,), device="cpu")
    rows = [run_arm(label, config, dataset, cold, train_config) for label, config in arms(args.quick)]
    print_table(rows, COLUMNS)
    write_results("user_sources", {"dataset": "ml-100k, 10% cold users (seed 0), genre flags as item modality",
                                 "cold_users": len(cold), "epochs": train_config.epochs, "rows": rows},
                  directory=results_dir(args.quick))


if __name__ == "__main__":
    main()

"""The RecBole half of ``recbole_compare.py``: runs inside ``benchmarks/.venv-recbole``, never imports graphrec.

Usage: ``.venv-recbole/bin/python recbole_runner.py SPEC.json RESULT.json`` with the working directory
set to a scratch folder (RecBole writes ``log/``, ``log_tensorboard/`` and its checkpoint relative to it).
``SPEC.json`` holds ``{"config": {...RecBole config dict...}, "threads": int}``; ``RESULT.json`` receives
the split sizes and a digest of each split's ``(user token, item token)`` pairs as RecBole loaded them, the
training seconds of every epoch, the validation score of every evaluation, and the test metrics of the best
validation checkpoint.

Training time is measured around :meth:`Trainer._train_epoch`, the method that iterates RecBole's training
dataloader (shuffling and negative sampling happen in that iteration) and takes the optimiser steps, so it
excludes validation, logging and checkpointing exactly as graphrec's per-epoch time does.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import LightGCN
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed


class TimedTrainer(Trainer):
    """RecBole's own ``Trainer``, recording the wall time of each training epoch and each validation score."""

    def __init__(self, config, model) -> None:
        super().__init__(config, model)
        self.epoch_seconds: list[float] = []
        self.epoch_losses: list[float] = []
        self.valid_scores: list[float] = []

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        started = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds.append(time.perf_counter() - started)
        # RecBole returns the sum over batches; graphrec reports the mean batch loss.
        self.epoch_losses.append(float(sum(loss) if isinstance(loss, tuple) else loss) / len(train_data))
        return loss


def split_digest(dataset) -> str:
    """SHA-256 of the sorted ``user<TAB>item`` token lines, comparable with the graphrec side's digest."""
    users = dataset.id2token(dataset.uid_field, dataset.inter_feat[dataset.uid_field].numpy())
    items = dataset.id2token(dataset.iid_field, dataset.inter_feat[dataset.iid_field].numpy())
    lines = sorted(np.char.add(np.char.add(users.astype(str), "\t"), items.astype(str)).tolist())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    config = Config(model="LightGCN", dataset=spec["config"]["dataset"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    splits = {"train": train_data.dataset, "valid": valid_data.dataset, "test": test_data.dataset}
    counts = {name: int(part.inter_num) for name, part in splits.items()}
    print(f"recbole loaded interactions: {counts}", file=sys.stderr, flush=True)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = LightGCN(config, train_data.dataset).to(config["device"])
    trainer = TimedTrainer(config, model)

    def record_valid(epoch_idx: int, valid_score: float) -> None:
        trainer.valid_scores.append(float(valid_score))

    best_valid_score, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                               callback_fn=record_valid)
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    # RecBole's early stopping keeps the latest of equal scores (``>=``); find that evaluation.
    best_evaluation = max(i for i, s in enumerate(trainer.valid_scores) if s == best_valid_score)

    result = {
        "recbole_version": __import__("recbole").__version__,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "counts": counts,
        "digests": {name: split_digest(part) for name, part in splits.items()},
        # RecBole counts the padding id 0 in user_num / item_num.
        "num_users": int(dataset.user_num) - 1,
        "num_items": int(dataset.item_num) - 1,
        "epoch_seconds": trainer.epoch_seconds,
        "epoch_losses": trainer.epoch_losses,
        "valid_scores": trainer.valid_scores,
        "best_epoch": (best_evaluation + 1) * config["eval_step"],
        "valid": {k: float(v) for k, v in best_valid.items()},
        "test": {k: float(v) for k, v in test.items()},
    }
    # A plain write: this venv has no graphrec (whose storage module writes atomically), and
    # recbole_compare.py reads the file only once this process has exited 0.
    Path(result_path).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: recbole_runner.py SPEC.json RESULT.json")
    main(sys.argv[1], sys.argv[2])

"""MMRec's half of ``mmrec_compare.py``: trains MMRec's own models, unmodified, on an exported split.

It runs in MMRec's environment (``../mmrec-venv``, see ``../shared/peers/README.md``), with the working
directory a scratch copy of MMRec's ``src/`` (MMRec reads its configs from ``./configs``), and never
imports graphrec. ``argv[1]`` is a JSON spec: ``model``, ``dataset``, ``data_path``, ``seed``, ``threads``,
the training settings (``epochs``, ``stopping_step``, ...) and ``points``, the hyperparameter settings to
train one after the other. It prints one line ``MMREC_RESULT {json}`` with, per point, the validation and
test metrics of the best validation epoch, that epoch, the epochs run and the training seconds of each
epoch (``pre_epoch_processing`` and ``_train_epoch``: sampling, forward, backward, step; no evaluation).

What differs from ``utils/quick_start.py``, and why:

* the test loader masks each user's training **and validation** items (its ``additional_dataset`` is
  train + valid), so that MMRec's own evaluator scores on graphrec's protocol; MMRec masks training
  items only;
* every point of a grid is run by the caller, which selects on validation; ``quick_start`` keeps the
  point with the best *test* Recall@20 (``best_test_upon_valid[val_metric] > best_test_value``).
"""

from __future__ import annotations

import json
import sys
import time


def time_epochs(model, trainer) -> list[float]:
    """Training seconds of each epoch, ``pre_epoch_processing`` (FREEDOM's pruning) included, as they come."""
    seconds: list[float] = []
    pending = [0.0]
    prune, train_epoch = model.pre_epoch_processing, trainer._train_epoch

    def timed_prune() -> None:
        started = time.perf_counter()
        prune()
        pending[0] = time.perf_counter() - started

    def timed_epoch(*args, **kwargs):
        started = time.perf_counter()
        out = train_epoch(*args, **kwargs)
        seconds.append(pending[0] + time.perf_counter() - started)
        pending[0] = 0.0
        return out

    model.pre_epoch_processing = timed_prune
    trainer._train_epoch = timed_epoch
    return seconds


def main() -> None:
    spec = json.loads(sys.argv[1])
    from logging import getLogger

    import pandas as pd
    import torch

    torch.set_num_threads(int(spec["threads"]))
    sys.path.insert(0, ".")
    from utils.configurator import Config
    from utils.dataloader import EvalDataLoader, TrainDataLoader
    from utils.dataset import RecDataset
    from utils.logger import init_logger
    from utils.utils import get_model, get_trainer, init_seed

    results = []
    for point in spec["points"]:
        config_dict = {"use_gpu": False, "gpu_id": 0, "data_path": spec["data_path"], "seed": spec["seed"],
                       **spec["settings"], **point}
        config = Config(spec["model"], spec["dataset"], config_dict)
        # quick_start sets each grid axis to one value per run; here the point sets the axes it names,
        # and the others must have a single value in the model's grid
        for name in config["hyper_parameters"]:
            if isinstance(config[name], list):
                if len(config[name]) != 1:
                    raise SystemExit(f"{spec['model']}: {name} has the grid {config[name]}; the point must set it")
                config[name] = config[name][0]
        init_logger(config)
        logger = getLogger()
        dataset = RecDataset(config)
        train_dataset, valid_dataset, test_dataset = dataset.split()
        seen = train_dataset.copy(pd.concat([train_dataset.df, valid_dataset.df], ignore_index=True))
        for part in (dataset, train_dataset, valid_dataset, test_dataset, seen):
            logger.info(str(part))  # as quick_start does; RecDataset.__str__ also sets the counts loaders read
        train_data = TrainDataLoader(config, train_dataset, batch_size=config["train_batch_size"], shuffle=True)
        valid_data = EvalDataLoader(config, valid_dataset, additional_dataset=train_dataset,
                                    batch_size=config["eval_batch_size"])
        test_data = EvalDataLoader(config, test_dataset, additional_dataset=seen, batch_size=config["eval_batch_size"])
        init_seed(config["seed"])
        train_data.pretrain_setup()
        model = get_model(config["model"])(config, train_data).to(config["device"])
        trainer = get_trainer()(config, model, False)
        seconds = time_epochs(model, trainer)
        _, best_valid, best_test = trainer.fit(train_data, valid_data=valid_data, test_data=test_data,
                                               saved=False)
        results.append({"point": point, "valid": {k: float(v) for k, v in best_valid.items()},
                        "test": {k: float(v) for k, v in best_test.items()}, "epochs": len(seconds),
                        "best_epoch": len(seconds) - trainer.cur_step * config["eval_step"],
                        "epoch_seconds": seconds})
    print("MMREC_RESULT " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()

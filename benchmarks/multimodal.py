"""Multimodal benchmark: ModalityGAT against VBPR, LightGCN, MF and the floors, warm and cold-start.

**MovieLens-100K with real text features.** Ratings >= 3, a per-user random 8:1:1 split whose
seed is the run's seed; every movie's title, year and genres encoded by all-MiniLM-L6-v2
(the real model, from its PyPI wheel); genres also become entity nodes for ModalityGAT.

* Warm protocol: ModalityGAT, VBPR, LightGCN and MF, Recall@20 and NDCG@20 on the test
  split with training and validation items masked, mean ± std over the seeds.
* Cold-start protocol: the same conversion with 20% of the items held out of training
  (their interactions in validation and test only); test Recall@20 ranks among the cold
  items only. ModalityGAT and VBPR against popularity and random.
* Both content models with and without the contrastive (InfoNCE) alignment of content
  and id embeddings (``TrainConfig.contrastive_weight``).

**Synthetic dataset (real PNG images and text, 20% cold items).** The same models and an
ablation of ModalityGAT's sources: text only, image only, both, and with / without the
category and brand entity nodes; VBPR with each modality. The dataset is generated once
(seed 0; images encoded by a seeded random ResNet-18, as the quickstart does) and the
seeds vary the training.

Every trained model gets the same budget (:class:`Budget`): Adam, the same learning rate,
batch size, negatives per interaction, L2 weight, epoch cap and early stopping on validation Recall@20 (evaluated
every ``eval_every`` epochs, stopped after ``patience`` evaluations without improvement);
the best validation epoch is tested. ModalityGAT's defaults, and its depth per protocol (3 layers
warm, 1 layer cold-start), were chosen on the validation split of seed 0 only (``--tune`` reruns
that search and adds it to the results).

The statistics (means over seeds, the paired t-interval, the targets) are in ``_stats.py``, the
tables, Markdown and chart in ``_multimodal_report.py``; history (earlier runs and how the budget
was chosen) is static text at the end of ``results/multimodal.md``.

Run: ``.venv/bin/python benchmarks/multimodal.py --tune`` (about 17 minutes on 2 lightly loaded CPU
cores, tuning included, with the encodings cached; a few minutes more to encode the first time, and
longer on busy cores). Writes ``benchmarks/results/multimodal.json``, ``multimodal.md`` and
``multimodal.png``; smoke runs (``--quick``, ``--epochs``, ``--seeds``, ``--skip-synthetic``) write to
``results/smoke/``. ``--quick`` is the smoke test (about 20 s once the encodings are cached): seeds 0
and 1, one epoch, in this process (``--workers 0``), only the rows the targets compare and a few on a
small synthetic set (:data:`QUICK_LABELS`, :data:`QUICK_SYNTHETIC_OPTIONS`). Converted datasets are
reused from ``--work`` while the graphrec sources that made them (``graphrec/data``,
``graphrec/encoders``) are unchanged, and remade otherwise.

``--ablation`` switches ModalityGAT's components (content channels, users' mean content, own preference
vectors, user-side attention, the item–item content graph, content in the L2 term, depth) and the
contrastive alignments (InfoNCE, BM3's bootstrap) one at a time, on the validation splits only
(:data:`ABLATION_SEEDS`), and reports the spread of the source attention; it writes
``multimodal_ablation.json`` and ``.md``. The tables then train, per protocol, the variant best on that
protocol's validation split (:func:`chosen_gat`). ``--core`` trains only the rows the targets compare.

``--paired-seeds N`` checks the warm target alone on more seeds: ModalityGAT and FREEDOM (its options
first chosen on seed 0's validation split) against LightGCN on seeds 0..N-1, compared seed by seed (a
paired t-interval of the difference), written to ``multimodal_warm_paired.json`` and ``.md`` (10 seeds,
one run at a time: about 27 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _omp_passive  # noqa: F401 -- sets OMP_WAIT_POLICY; sorted above torch (and graphrec), which must load after
import torch
from _common import DATA, RESULTS, ROOT, print_table, require_data, results_dir, write_markdown, write_results
from _multimodal_report import (
    PAIRED_LABELS,
    paired_line,
    paired_markdown,
    plot,
    print_results,
    results_markdown,
    summary_table,
)
from _stats import METRICS, index_popularity_spearman, mean_of, paired_gain, summarise, targets

from graphrec.data.convert import ConvertConfig, convert
from graphrec.data.dataset import Dataset, load_dataset
from graphrec.data.storage import write_json
from graphrec.evaluation import EvalConfig
from graphrec.graph import GraphConfig, build_graph
from graphrec.models import ModalityGAT, ModalityGATOptions
from graphrec.training.run import ModelConfig, TrainConfig, evaluate_model, train
from graphrec.training.trainer import fit

ML100K_TEXT_FIELDS = ("title", "year", "genres")
SYNTHETIC_OPTIONS = {"users": 1500, "items": 1000, "seed": 0, "cold_fraction": 0.2}


@dataclass(frozen=True)
class Budget:
    """The training budget every learned model gets."""

    epochs: int = 100
    batch_size: int = 4096
    lr: float = 1e-2
    reg: float = 1e-4
    eval_every: int = 5
    patience: int = 4
    dim: int = 64
    contrastive_weight: float = 0.1
    contrastive_temperature: float = 0.2
    #: Chosen on seed 0's validation split (the figures: History, at the end of results/multimodal.md).
    num_negatives: int = 4

    def train_config(self, seed: int, contrastive: bool) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, reg=self.reg, seed=seed,
                           eval_every=self.eval_every, patience=self.patience, select_metric="recall@20",
                           eval_ks=(10, 20, 50), progress=False, device="cpu",
                           contrastive_weight=self.contrastive_weight if contrastive else 0.0,
                           contrastive_temperature=self.contrastive_temperature,
                           num_negatives=self.num_negatives)


#: ``--quick``: one epoch, validated, then tested.
QUICK_BUDGET = Budget(epochs=1, eval_every=1, patience=1)
#: ``--quick``'s rows: those the targets compare, and on the synthetic set VBPR and ModalityGAT with both
#: modalities, the latter also with InfoNCE.
QUICK_LABELS = {"ml100k_warm": {"LightGCN", "ModalityGAT"},
                "ml100k_cold": {"random", "popularity", "ModalityGAT"},
                "synthetic": {"popularity", "VBPR text+image", "ModalityGAT text+image+entities",
                              "ModalityGAT text+image+entities + InfoNCE"}}
#: ``--core``'s rows: those the targets compare (the full table trains 26 configurations per seed).
CORE_LABELS = {"ml100k_warm": {"LightGCN", "ModalityGAT"},
               "ml100k_cold": {"random", "popularity", "ModalityGAT"},
               "synthetic": {"popularity", "LightGCN", "VBPR text+image", "ModalityGAT text+image+entities"}}
#: ``--quick``'s synthetic set (kept apart from the full one in ``--work``).
#: (40 cold items: test_cold ranks more than the 20 that Recall@20 needs.)
QUICK_SYNTHETIC_OPTIONS = {"users": 300, "items": 200, "seed": 0, "cold_fraction": 0.2}


@dataclass(frozen=True)
class Arm:
    """One row of a table: a model configuration, trained once per seed."""

    table: str
    label: str
    model: ModelConfig
    contrastive: bool = False


@dataclass
class Row:
    arm: Arm
    runs: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ arms
#: ModalityGAT's depth per protocol, each chosen on seed 0's validation split (see ``--tune``): three
#: layers rank best among all items; one layer ranks cold items best (validation Recall@20 among the
#: cold items), since the user then stays closer to the content of the items they chose.
WARM_GAT_LAYERS = 3
COLD_GAT_LAYERS = 1


#: FREEDOM's options tried on seed 0's validation split by ``--paired-seeds`` (its own defaults are MMRec's,
#: chosen at another learning rate, and the warm LightGCN here has 3 layers): pruning ratio x depth.
FREEDOM_GRID: list[dict[str, Any]] = [{"pruning": pruning, "layers": layers}
                                      for pruning in (0.9, 0.8) for layers in (2, 3)]


def best_on_validation(grid: list[dict[str, Any]]) -> dict[str, Any]:
    """The options of the ``grid`` record (``{"options", "valid", ...}``) with the best validation Recall@20."""
    return max(grid, key=lambda record: record["valid"]["recall@20"])["options"]


def freedom_config(dim: int, options: dict[str, Any] | None = None) -> ModelConfig:
    """FREEDOM on ml-100k: ``options`` over its defaults, or else the point of :data:`FREEDOM_GRID` best on
    validation in ``results/multimodal_warm_paired.json`` (the defaults when that file has no grid)."""
    if options is None:
        path = RESULTS / "multimodal_warm_paired.json"
        grid = json.loads(path.read_text()).get("freedom_grid") if path.is_file() else None
        options = best_on_validation(grid) if grid else {}
    return ModelConfig(name="freedom", dim=dim, **options)


def ml100k_arms(dim: int, freedom: ModelConfig | None = None) -> tuple[list[Arm], list[Arm]]:
    gat, _ = chosen_gat("ml100k_warm", dim)
    cold_gat, _ = chosen_gat("ml100k_cold", dim)
    vbpr = ModelConfig(name="vbpr", dim=dim)
    warm = [
        Arm("ml100k_warm", "MF", ModelConfig(name="mf", dim=dim)),
        Arm("ml100k_warm", "LightGCN", ModelConfig(name="lightgcn", dim=dim, layers=3)),
        Arm("ml100k_warm", "VBPR", vbpr),
        Arm("ml100k_warm", "VBPR + InfoNCE", vbpr, contrastive=True),
        Arm("ml100k_warm", "ModalityGAT", gat),
        Arm("ml100k_warm", "ModalityGAT + InfoNCE", gat, contrastive=True),
        Arm("ml100k_warm", "FREEDOM", freedom or freedom_config(dim)),
    ]
    cold = [
        Arm("ml100k_cold", "random", ModelConfig(name="random")),
        Arm("ml100k_cold", "popularity", ModelConfig(name="pop")),
        Arm("ml100k_cold", "VBPR", vbpr),
        Arm("ml100k_cold", "VBPR + InfoNCE", vbpr, contrastive=True),
        Arm("ml100k_cold", "ModalityGAT", cold_gat),
        Arm("ml100k_cold", "ModalityGAT + InfoNCE", cold_gat, contrastive=True),
    ]
    return warm, cold


def synthetic_arms(dim: int) -> list[Arm]:
    entities = ("categories", "brand")

    chosen, _ = chosen_gat("synthetic", dim)

    def gat(modalities: tuple[str, ...], with_entities: bool = True) -> ModelConfig:
        return dataclasses.replace(chosen, modalities=modalities, entities=entities if with_entities else ())

    def vbpr(modalities: tuple[str, ...]) -> ModelConfig:
        return ModelConfig(name="vbpr", dim=dim, modalities=modalities)

    table = "synthetic"
    return [
        Arm(table, "random", ModelConfig(name="random")),
        Arm(table, "popularity", ModelConfig(name="pop")),
        Arm(table, "MF", ModelConfig(name="mf", dim=dim)),
        Arm(table, "LightGCN", ModelConfig(name="lightgcn", dim=dim, layers=3)),
        Arm(table, "VBPR text", vbpr(("text",))),
        Arm(table, "VBPR image", vbpr(("image",))),
        Arm(table, "VBPR text+image", vbpr(("text", "image"))),
        Arm(table, "VBPR text+image + InfoNCE", vbpr(("text", "image")), contrastive=True),
        Arm(table, "ModalityGAT entities only (no modality)", gat(())),
        Arm(table, "ModalityGAT text+entities", gat(("text",))),
        Arm(table, "ModalityGAT image+entities", gat(("image",))),
        Arm(table, "ModalityGAT text+image, no entities", gat(("text", "image"), with_entities=False)),
        Arm(table, "ModalityGAT text+image+entities", gat(("text", "image"))),
        Arm(table, "ModalityGAT text+image+entities + InfoNCE", gat(("text", "image")), contrastive=True),
    ]


#: ModalityGAT variants compared on seed 0's validation split (``--tune``): from the plain GAT
#: (GATConv's maths, the previous default) to the default, one change at a time, then the default
#: varied; and the depth for the cold-start protocol. (label, protocol, ModelConfig changes,
#: constructor options that ModelConfig does not carry).
TUNING_VARIANTS: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("plain GAT (GATConv maths), 2 layers", "warm", {"layers": 2},
     {"normalization": "softmax", "attention_bound": None, "transform_messages": True}),
    ("+ degree-aware (symmetric) normalisation", "warm", {"layers": 2},
     {"normalization": "symmetric", "attention_bound": None, "transform_messages": True}),
    ("+ untransformed messages", "warm", {"layers": 2},
     {"normalization": "symmetric", "attention_bound": None, "transform_messages": False}),
    ("+ bounded attention (b = 1)", "warm", {"layers": 2}, {}),
    ("+ 3 layers (the default)", "warm", {"layers": 3}, {}),
    ("default, b = 0 (LightGCN's weights)", "warm", {"layers": 3}, {"attention_bound": 0.0}),
    ("default without genre entities", "warm", {"layers": 3, "entities": ()}, {}),
    ("default without text", "warm", {"layers": 3, "modalities": ()}, {}),
    ("cold-start, 1 layer", "cold", {"layers": 1}, {}),
    ("cold-start, 2 layers", "cold", {"layers": 2}, {}),
    ("cold-start, 3 layers", "cold", {"layers": 3}, {}),
]


def flat_config(model: ModelConfig) -> dict[str, Any]:
    """A model configuration as the results record it: its name beside its options."""
    return {"name": model.name, **asdict(model.options)}


def run_variant(label: str, protocol: str, model: ModelConfig, options: dict[str, Any], path: Path, seed: int,
                budget: Budget) -> dict[str, Any]:
    """Train a ModalityGAT with constructor ``options`` that :class:`ModelConfig` does not carry and
    report validation metrics only (the test split is not looked at while tuning); for the
    cold-start protocol also validation Recall@20 among the cold items."""
    started = time.perf_counter()
    dataset = load_dataset(path)
    gat = model.options
    assert isinstance(gat, ModalityGATOptions)
    graph = build_graph(dataset, GraphConfig(entities=gat.entities, modalities=gat.modalities))
    torch.manual_seed(seed)
    recommender = ModalityGAT.from_graph(graph, dim=gat.dim, num_layers=gat.layers, heads=gat.heads,
                                         dropout=gat.dropout, fusion=gat.fusion, **options)
    eval_config = EvalConfig(ks=(10, 20, 50), batch_size=4096, beyond_accuracy=False, full_mrr=False)
    result = fit(recommender, dataset, budget.train_config(seed, contrastive=False),
                 lambda m, d, split: evaluate_model(m, d, split, eval_config), log=lambda _: None)
    record = {"label": label, "protocol": protocol, "model_config": flat_config(model), "options": options,
              "seed": seed, "valid": {m: result.best_valid[m] for m in METRICS}, "best_epoch": result.best_epoch,
              "epochs_run": len(result.history), "seconds": time.perf_counter() - started}
    if protocol == "cold":
        cold = evaluate_model(result.model, result.dataset, "valid", dataclasses.replace(eval_config, protocol="cold"))
        record["valid_cold"] = {m: cold[m] for m in METRICS}
    return record


# ------------------------------------------------------------------------------------------ ablation
#: ModalityGAT's components switched one at a time (``--ablation``), validation split only: label and
#: the changes to the model's options from :data:`ABLATION_BASE` (the design before the content channels).
ABLATION_BASE: dict[str, Any] = {"channels": False, "channel_propagation": False, "own_preferences": True,
                                 "user_attention": False, "item_graph_neighbours": 0}
ABLATION_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("previous design (no content channels)", {}),
    ("+ content channels (item-side attention)", {"channels": True}),
    ("+ channel propagation (users' mean content)", {"channels": True, "channel_propagation": True}),
    ("+ user-side attention", {"channels": True, "channel_propagation": True, "user_attention": True}),
    ("+ item-item content graph (k = 10)", {"channels": True, "channel_propagation": True,
                                            "item_graph_neighbours": 10}),
    ("previous design + item-item graph", {"item_graph_neighbours": 10}),
    ("channels, users' mean content only (no own vectors)", {"channels": True, "channel_propagation": True,
                                                             "own_preferences": False}),
    ("mean content only, + item-item graph", {"channels": True, "channel_propagation": True,
                                              "own_preferences": False, "item_graph_neighbours": 10}),
    ("mean content only, + user-side attention", {"channels": True, "channel_propagation": True,
                                                  "own_preferences": False, "user_attention": True}),
    ("channels + content in the L2 term (as VBPR)", {"channels": True, "channel_propagation": True,
                                                     "regularize_content": True}),
    ("channels without propagation + content L2 (VBPR-like)", {"channels": True, "regularize_content": True}),
    ("channels, 0 layers", {"channels": True, "channel_propagation": True, "layers": 0}),
    ("channels, 1 layer", {"channels": True, "channel_propagation": True, "layers": 1}),
    ("channels without propagation, 0 layers", {"channels": True, "layers": 0}),
    ("previous design, 1 layer", {"layers": 1}),
]
ABLATION_CHANGES = dict(ABLATION_VARIANTS)


def chosen_gat(protocol: str, dim: int) -> tuple[ModelConfig, str | None]:
    """ModalityGAT for ``protocol``: the ablation variant with the best validation Recall@20 on it (among
    cold items for the cold-start protocol) in ``results/multimodal_ablation.json``, and its label; the
    protocol's base configuration with the model's defaults when there are no ablation results."""
    path = RESULTS / "multimodal_ablation.json"
    if not path.is_file():
        return gat_config(protocol, dim), None
    key = "cold recall@20" if protocol == "ml100k_cold" else "recall@20"
    rows = [row for row in json.loads(path.read_text())["table"]
            if row["protocol"] == protocol and row["label"] in ABLATION_CHANGES and row[key] is not None]
    if not rows:
        return gat_config(protocol, dim), None
    best = max(rows, key=lambda row: row[key])
    return gat_config(protocol, dim, **(ABLATION_BASE | ABLATION_CHANGES[best["label"]])), best["label"]
#: The seeds of ``--ablation`` per protocol (ml-100k's runs take several times longer).
ABLATION_SEEDS = {"synthetic": [0, 1], "ml100k_warm": [0], "ml100k_cold": [0]}
#: Contrastive alignment on top of the channel design (``--ablation``): label, alignment, weight,
#: temperature (the bootstrapped loss has none).
ALIGNMENT_VARIANTS: list[tuple[str, str, float, float]] = [
    ("InfoNCE w 0.1, t 0.2", "infonce", 0.1, 0.2),
    ("InfoNCE w 0.01, t 0.2", "infonce", 0.01, 0.2),
    ("bootstrap (BM3) w 0.1", "bootstrap", 0.1, 0.2),
]


def gat_config(protocol: str, dim: int, **changes: Any) -> ModelConfig:
    """ModalityGAT as the tables run it on ``protocol`` (``synthetic``, ``ml100k_warm``, ``ml100k_cold``)."""
    if protocol == "synthetic":
        base: dict[str, Any] = {"modalities": ("text", "image"), "entities": ("categories", "brand"),
                                "layers": WARM_GAT_LAYERS}
    else:
        base = {"entities": ("genres",), "layers": COLD_GAT_LAYERS if protocol == "ml100k_cold" else WARM_GAT_LAYERS}
    return ModelConfig(name="gat", dim=dim, **(base | changes))


def run_validation(label: str, protocol: str, model: ModelConfig, path: Path, seed: int, budget: Budget,
                   contrastive: tuple[float, float] | None = None) -> dict[str, Any]:
    """Train ``model`` and report validation metrics only (the test split is not looked at while
    choosing), validation Recall@20 among the cold items where there are any, and the spread of
    the source attention (:func:`graphrec.serving.explain.attention_spread`)."""
    from graphrec.models.registry import build_model
    from graphrec.serving.explain import attention_spread, modality_weights

    started = time.perf_counter()
    dataset = load_dataset(path)
    recommender = build_model(model, dataset, seed)
    config = budget.train_config(seed, contrastive=False)
    if contrastive is not None:
        config = dataclasses.replace(config, contrastive_weight=contrastive[0], contrastive_temperature=contrastive[1])
    eval_config = EvalConfig(ks=(10, 20, 50), batch_size=4096, beyond_accuracy=False, full_mrr=False)
    result = fit(recommender, dataset, config, lambda m, d, split: evaluate_model(m, d, split, eval_config),
                 log=lambda _: None)
    record: dict[str, Any] = {
        "label": label, "protocol": protocol, "model_config": flat_config(model), "seed": seed,
        "contrastive": None if contrastive is None else {"weight": contrastive[0], "temperature": contrastive[1]},
        "valid": {m: result.best_valid[m] for m in METRICS}, "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "seconds": time.perf_counter() - started}
    if dataset.num_items > len(set(dataset.pairs("train")[1].tolist())):
        cold = evaluate_model(result.model, result.dataset, "valid", dataclasses.replace(eval_config, protocol="cold"))
        record["valid_cold"] = {m: cold[m] for m in METRICS}
    result.model.eval()
    with torch.no_grad():
        result.model.embed()
    weights = modality_weights(result.model)
    spread = None if weights is None else attention_spread(*weights)
    record["attention_spread"] = None if spread is None else spread.to_dict()
    return record


def ablation(args: argparse.Namespace, budget: Budget, partial: bool) -> None:
    """Each ModalityGAT component on and off, then each contrastive alignment, on the validation split
    of the synthetic set (warm and its cold items), ml-100k warm and ml-100k cold-start."""
    started = time.perf_counter()
    load_before = load_average()
    synthetic_options = QUICK_SYNTHETIC_OPTIONS if args.quick else SYNTHETIC_OPTIONS
    variants = ABLATION_VARIANTS[:2] if args.quick else ABLATION_VARIANTS
    alignments = ALIGNMENT_VARIANTS[::2] if args.quick else ALIGNMENT_VARIANTS
    if args.only:
        variants = [v for v in variants if v[0] in args.only]
        alignments = [a for a in alignments if f"default + {a[0]}" in args.only]
    protocols = {
        "synthetic": lambda s: prepare_synthetic(args.work, synthetic_options, log=print),
        "ml100k_warm": lambda s: prepare_ml100k(args.work, s, cold=False, log=print),
        "ml100k_cold": lambda s: prepare_ml100k(args.work, s, cold=True, log=print),
    }
    tasks = []
    seeds = {protocol: args.seeds or ([0] if args.quick else ABLATION_SEEDS[protocol]) for protocol in protocols}
    for protocol in ("ml100k_warm", "synthetic", "ml100k_cold"):  # the slowest first
        if args.protocols and protocol not in args.protocols:
            continue
        prepare = protocols[protocol]
        for seed in seeds[protocol]:
            path = prepare(seed)
            for label, changes in variants:
                tasks.append((label, protocol, gat_config(protocol, budget.dim, **(ABLATION_BASE | changes)), path,
                              seed, budget, None))
            default = gat_config(protocol, budget.dim)
            for label, alignment, weight, temperature in alignments:
                tasks.append((f"default + {label}", protocol, dataclasses.replace(default, alignment=alignment),
                              path, seed, budget, (weight, temperature)))
    print(f"load: {load_before}\n{len(tasks)} runs, seeds {seeds}, budget {budget}, {args.workers} workers")
    records = []
    with worker_pool(args.workers, args.threads) as pool:
        futures = [pool.submit(run_validation, *task) for task in tasks]
        for future in as_completed(futures):
            record = future.result()
            records.append(record)
            cold = record.get("valid_cold", {}).get("recall@20")
            print(f"[{time.perf_counter() - started:6.0f}s] {record['protocol']} seed {record['seed']} "
                  f"{record['label']:<58} valid recall@20 {record['valid']['recall@20']:.4f}"
                  + ("" if cold is None else f"  cold {cold:.4f}") + f"  {record['seconds']:.0f}s", flush=True)
    out_dir = results_dir(partial)
    if args.only and (out_dir / "multimodal_ablation.json").is_file():
        # the other variants' runs from the last full ablation, kept beside these
        earlier = json.loads((out_dir / "multimodal_ablation.json").read_text())["runs"]
        rerun = {(r["protocol"], r["label"]) for r in records}
        records += [r for r in earlier if (r["protocol"], r["label"]) not in rerun]
    order = {label: k for k, (label, _) in enumerate(ABLATION_VARIANTS)}
    order.update({f"default + {a[0]}": len(order) + k for k, a in enumerate(ALIGNMENT_VARIANTS)})
    records.sort(key=lambda r: (list(protocols).index(r["protocol"]), order.get(r["label"], len(order)), r["seed"]))
    table = ablation_table(records)
    columns = ["protocol", "label", "recall@20", "ndcg@20", "cold recall@20", "entropy", "not_favourite"]
    print_table([{c: row[c] for c in columns} for row in table], columns)
    payload = {"description": ablation.__doc__.split("\n\n")[0], "seeds": seeds, "budget": asdict(budget),
               "workers": args.workers, "threads_per_worker": threads_per_worker(args.workers, args.threads),
               "load_average": {"before": load_before, "after": load_average()},
               "table": table, "runs": records, "seconds": time.perf_counter() - started}
    payload = json.loads(write_results("multimodal_ablation", payload, out_dir).read_text())
    write_markdown(out_dir / "multimodal_ablation.md", ablation_markdown(payload))


def ablation_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over seeds per (protocol, variant), in the order of the runs."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["protocol"], record["label"]), []).append(record)

    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None

    rows = []
    for (protocol, label), runs in groups.items():
        spreads = [r["attention_spread"] for r in runs]
        rows.append({"protocol": protocol, "label": label, "seeds": [r["seed"] for r in runs],
                     "recall@20": mean([r["valid"]["recall@20"] for r in runs]),
                     "ndcg@20": mean([r["valid"]["ndcg@20"] for r in runs]),
                     "recall@20 per seed": [r["valid"]["recall@20"] for r in runs],
                     "cold recall@20": mean([r.get("valid_cold", {}).get("recall@20") for r in runs]),
                     "entropy": mean([s and s["mean_entropy"] for s in spreads]),
                     "max_entropy": mean([s and s["mean_max_entropy"] for s in spreads]),
                     "not_favourite": mean([s and s["share_not_favourite"] for s in spreads]),
                     "favourite": [s and s["favourite"] for s in spreads]})
    return rows


def ablation_markdown(payload: dict[str, Any]) -> str:
    lines = ["# ModalityGAT ablation and contrastive alignment (validation split only)", "",
             f"Command: `{payload.get('command', 'python benchmarks/multimodal.py --ablation')}`. Seeds "
             f"{payload['seeds']}; the budget of `multimodal.md` (Adam lr {payload['budget']['lr']}, "
             f"{payload['budget']['num_negatives']} negatives, at most {payload['budget']['epochs']} epochs, "
             f"early stopping on validation Recall@20). Means over seeds. Cold recall: validation Recall@20 "
             f"ranked among the items without training interactions. Attention entropy: mean over items with "
             f"two or more sources, in nats (its maximum, all sources equal, in brackets); not favourite: share "
             f"of those items whose top source is not the source with the highest mean weight. Rows default + ... add "
             f"an alignment to the channel design (channels, users' mean content and own vectors, the protocol's "
             f"depth). The tables of `multimodal.md` train, per protocol, the row best here (cold-start: by cold "
             f"recall).", "",
             "| protocol | variant | valid recall@20 | per seed | valid ndcg@20 | valid cold recall@20 | "
             "attention entropy | not favourite | favourite |", "|---|---|---|---|---|---|---|---|---|"]
    for row in payload["table"]:
        entropy = "" if row["entropy"] is None else f"{row['entropy']:.3f} ({row['max_entropy']:.3f})"
        lines.append(
            f"| {row['protocol']} | {row['label']} | {row['recall@20']:.4f} | "
            + ", ".join(f"{v:.4f}" for v in row["recall@20 per seed"]) + f" | {row['ndcg@20']:.4f} | "
            + ("" if row["cold recall@20"] is None else f"{row['cold recall@20']:.4f}") + f" | {entropy} | "
            + ("" if row["not_favourite"] is None else f"{row['not_favourite']:.3f}") + " | "
            + ", ".join(sorted({str(f) for f in row["favourite"] if f})) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ data
@functools.cache
def source_stamp() -> str:
    """SHA-256 of the graphrec sources a prepared dataset depends on: conversion and the encoders."""
    digest = hashlib.sha256()
    sources = [*(ROOT / "graphrec" / "data").rglob("*.py"), *(ROOT / "graphrec" / "encoders").rglob("*.py")]
    for source in sorted(sources):
        digest.update(source.relative_to(ROOT).as_posix().encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()


def reuse_or_prepare(path: Path, last_file: str, prepare: Callable[[], None], log: Callable[[str], None]) -> Path:
    """The dataset at ``path``, made by ``prepare`` unless a complete one (``last_file`` written) made by
    the same graphrec sources is there: a change to conversion or encoding remakes it (the encoders'
    caches keep that cheap)."""
    stamp_file = path.with_name(f"{path.name}.sources-sha256")
    if (path / last_file).is_file() and stamp_file.is_file() and stamp_file.read_text() == source_stamp():
        return path
    prepare()
    stamp_file.write_text(source_stamp())
    log(f"prepared {path.name}")
    return path


def prepare_ml100k(work: Path, seed: int, cold: bool, log: Callable[[str], None]) -> Path:
    """Convert MovieLens-100K for ``seed`` (20% cold items if ``cold``) and encode its text."""
    path = work / f"ml-100k-{'cold' if cold else 'warm'}-seed{seed}"

    def prepare() -> None:
        # The encoders (torchvision, transformers) load only when a dataset is made, not for a cached one.
        from graphrec.encoders import TextEncoderConfig, encode
        from graphrec.encoders.bundled import bundled_minilm

        convert("movielens", DATA / "ml-100k", path, ConvertConfig(min_rating=3, split="random", seed=seed,
                                                                   cold_items=0.2 if cold else 0.0),
                overwrite=True)
        encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), fields=ML100K_TEXT_FIELDS, device="cpu"),
               cache_dir=work / "cache" / "text", log=None)

    return reuse_or_prepare(path, "features/text.npy", prepare, log)


def prepare_synthetic(work: Path, options: dict[str, Any], log: Callable[[str], None]) -> Path:
    """Generate the synthetic dataset and encode its text (MiniLM) and images (seeded random ResNet-18)."""
    path = work / ("synthetic" if options == SYNTHETIC_OPTIONS else f"synthetic-{options['users']}x{options['items']}")

    def prepare() -> None:
        from graphrec.encoders import ImageEncoderConfig, TextEncoderConfig, encode
        from graphrec.encoders.bundled import bundled_minilm
        from graphrec.encoders.image import save_random_weights

        convert("synthetic", "-", path, ConvertConfig(seed=options["seed"]), overwrite=True,
                reader_options=options)
        encode(path, "text", TextEncoderConfig(model=str(bundled_minilm()), device="cpu"),
               cache_dir=work / "cache" / "text", log=None)
        weights = save_random_weights("resnet18", options["seed"], work / f"resnet18-seed{options['seed']}.pt")
        encode(path, "image", ImageEncoderConfig(model="resnet18", weights=str(weights), device="cpu"),
               cache_dir=work / "cache" / "image", log=None)

    return reuse_or_prepare(path, "features/image.npy", prepare, log)


def describe(dataset: Dataset) -> dict[str, Any]:
    cold = dataset.num_items - len(set(dataset.pairs("train")[1].tolist()))
    return {"users": dataset.num_users, "items": dataset.num_items, "splits": dataset.split_counts(),
            "items_without_training_interactions": cold,
            "modalities": {name: feature.dim for name, feature in dataset.features.items()}}


# ------------------------------------------------------------------------------------------ runs
def run_arm(arm: Arm, path: Path, seed: int, budget: Budget) -> dict[str, Any]:
    """Train and test ``arm`` on the dataset at ``path`` (in a worker process)."""
    started = time.perf_counter()
    dataset = load_dataset(path)
    run = train(dataset, arm.model, budget.train_config(seed, arm.contrastive), log=lambda _: None)
    metrics = run.metrics
    record: dict[str, Any] = {
        "table": arm.table, "label": arm.label, "seed": seed, "dataset": dataset.name,
        "valid": {m: metrics["valid"][m] for m in METRICS},
        "test": {m: metrics["test"][m] for m in METRICS},
        "best_epoch": metrics["best_epoch"], "epochs_run": len(metrics["epochs"]),
        "stopped": metrics["stopped_reason"], "seconds": time.perf_counter() - started,
        "seconds_per_epoch": metrics["seconds_per_epoch"],
    }
    if "test_cold" in metrics:
        record["test_cold"] = {m: metrics["test_cold"][m] for m in METRICS}
    return record


# ------------------------------------------------------------------------------------------ statistics
# (the computations are in _stats.py; these apply them to this module's rows and datasets)
def summarise_rows(rows: list[Row]) -> list[dict[str, Any]]:
    """Mean and (sample) standard deviation over seeds of every split and metric, one entry per row."""
    return [summarise(row.arm.label, row.arm.model.name, row.arm.contrastive, row.runs) for row in rows]


def cold_popularity_order(paths: list[Path]) -> list[float]:
    """Spearman correlation of item index and training popularity (warm items) per cold-start conversion
    (:func:`_stats.index_popularity_spearman`)."""
    correlations = []
    for path in paths:
        dataset = load_dataset(path)
        correlations.append(index_popularity_spearman(dataset.pairs("train")[1], dataset.num_items))
    return correlations


def notes(work: Path, seeds: list[int]) -> dict[str, Any]:
    return {"cold_popularity_order_spearman": cold_popularity_order(
        [work / f"ml-100k-cold-seed{seed}" for seed in seeds])}


# ------------------------------------------------------------------------------------------ running
def load_average() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


class InlineExecutor:
    """``--workers 0`` (the quick mode's default): each submitted run runs at once, in this process, on all
    ``--threads``; starting worker processes (each imports torch and graphrec) takes longer than tiny runs."""

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


def threads_per_worker(workers: int, threads: int) -> int:
    return threads if workers == 0 else max(1, threads // workers)


def worker_pool(workers: int, threads: int) -> ProcessPoolExecutor | InlineExecutor:
    """``workers`` processes sharing ``threads`` torch threads (spawned: no forked OpenMP state); none for 0."""
    if workers == 0:
        return InlineExecutor()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads, initargs=(threads_per_worker(workers, threads),))


def submit_rows(pool: ProcessPoolExecutor | InlineExecutor, rows: dict[str, list[Row]],
                paths: dict[tuple[str, int], Path], seeds: list[int], budget: Budget) -> dict[Future, tuple[str, int]]:
    """Every row's arm on every seed, the slowest (graph) models first so that the workers finish together."""
    tasks = [(name, index, seed) for name, group_rows in rows.items() for seed in seeds
             for index in range(len(group_rows))]
    tasks.sort(key=lambda t: rows[t[0]][t[1]].arm.model.name not in ("gat", "lightgcn"))
    return {pool.submit(run_arm, rows[name][index].arm, paths[(name, seed)], seed, budget): (name, index)
            for name, index, seed in tasks}


def collect_rows(futures: dict[Future, tuple[str, int]], rows: dict[str, list[Row]], started: float) -> None:
    """Wait for the runs, printing each as it ends, and file them under their rows in seed order."""
    for future in as_completed(futures):
        name, index = futures[future]
        record = future.result()
        rows[name][index].runs.append(record)
        shown = record["test_cold" if name == "ml100k_cold" else "test"]["recall@20"]
        print(f"[{time.perf_counter() - started:6.0f}s] {name} seed {record['seed']} "
              f"{record['label']:<36} recall@20 {shown:.4f}  best epoch {record['best_epoch']:>3}  "
              f"{record['seconds']:.0f}s", flush=True)
    for group_rows in rows.values():
        for row in group_rows:
            row.runs.sort(key=lambda record: record["seed"])


# ------------------------------------------------------------------------------------------ paired check
def paired_check(args: argparse.Namespace, budget: Budget, partial: bool) -> None:
    """The warm target alone on more seeds: ModalityGAT and FREEDOM against LightGCN, compared seed by seed.

    Three seeds leave the warm ratio uncertain by more than the target asks for (one standard
    deviation of LightGCN's test Recall@20 over seeds is 2.5 to 4% of it, the target 5%). Each
    seed is one split that the three models share, so the per-seed difference cancels the split's
    variation. FREEDOM's options are first chosen on seed 0's validation split (:data:`FREEDOM_GRID`).
    """
    seeds = list(range(args.paired_seeds))
    started = time.perf_counter()
    load_before = load_average()
    paths = {("ml100k_warm", seed): prepare_ml100k(args.work, seed, cold=False, log=print) for seed in seeds}
    print(f"load: {load_before}\nseeds {seeds}, budget {budget}, {args.workers} workers")
    grid = FREEDOM_GRID[:1] if args.quick else FREEDOM_GRID
    with worker_pool(args.workers, args.threads) as pool:
        futures = [pool.submit(run_validation, "FREEDOM", "ml100k_warm", freedom_config(budget.dim, options),
                               paths[("ml100k_warm", 0)], 0, budget) for options in grid]
        freedom_grid = []
        for options, future in zip(grid, futures):
            record = future.result()
            freedom_grid.append({"options": options, "valid": record["valid"], "best_epoch": record["best_epoch"],
                                 "seconds": record["seconds"]})
            print(f"[{time.perf_counter() - started:6.0f}s] FREEDOM {options}: valid recall@20 "
                  f"{record['valid']['recall@20']:.4f}, best epoch {record['best_epoch']}", flush=True)
        warm_arms, _ = ml100k_arms(budget.dim, freedom=freedom_config(budget.dim, best_on_validation(freedom_grid)))
        rows = {"ml100k_warm": [Row(arm) for label in PAIRED_LABELS for arm in warm_arms if arm.label == label]}
        collect_rows(submit_rows(pool, rows, paths, seeds, budget), rows, started)
    summary = summarise_rows(rows["ml100k_warm"])
    baseline, *models = PAIRED_LABELS
    comparisons = {model: {"paired": paired_gain(summary, model=model, baseline=baseline),
                           "ratio": mean_of(summary, model, "test recall@20") / mean_of(summary, baseline,
                                                                                          "test recall@20")}
                   for model in models}
    print_table(*summary_table("ml100k_warm", summary))
    for comparison in comparisons.values():
        print(paired_line(comparison["paired"]))
    payload = {
        "description": paired_check.__doc__.split("\n\n")[0], "seeds": seeds, "workers": args.workers,
        "threads_per_worker": threads_per_worker(args.workers, args.threads),
        "load_average": {"before": load_before, "after": load_average()}, "budget": asdict(budget),
        "freedom_grid": freedom_grid, "table": summary, "comparisons": comparisons,
        "paired": comparisons["ModalityGAT"]["paired"], "ratio": comparisons["ModalityGAT"]["ratio"],
        "runs": [record for row in rows["ml100k_warm"] for record in row.runs],
        "seconds": time.perf_counter() - started,
    }
    out_dir = results_dir(partial)
    payload = json.loads(write_results("multimodal_warm_paired", payload, out_dir).read_text())
    write_markdown(out_dir / "multimodal_warm_paired.md", paired_markdown(payload))


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: seeds 0 and 1, one epoch, the rows the targets compare, a small "
                             "synthetic set (writes results/smoke/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2)")
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads in all, shared by the workers (each gets threads // workers)")
    parser.add_argument("--workers", type=int, default=None,
                        help="runs trained at once, each in its own process (the models are small: two "
                             "single-thread runs get more done than one run on two threads); 0: in this "
                             "process, one at a time (default 2, with --quick 0)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "multimodal-bench",
                        help="where converted datasets and encodings are kept (reused by later runs)")
    parser.add_argument("--epochs", type=int, default=None, help="override the epoch cap (smoke tests)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite multimodal.md and .png (and the targets and notes in the JSON) from the last "
                             "results, without training")
    parser.add_argument("--paired-seeds", type=int, default=None, metavar="N",
                        help="only the warm target: LightGCN and ModalityGAT on seeds 0..N-1, compared seed by seed "
                             "(writes multimodal_warm_paired.json and .md)")
    parser.add_argument("--only", nargs="+", default=None, metavar="LABEL",
                        help="--ablation: rerun only these variants, keeping the others' runs from the last results")
    parser.add_argument("--protocols", nargs="+", default=None, choices=["synthetic", "ml100k_warm", "ml100k_cold"],
                        help="--ablation: only these protocols")
    parser.add_argument("--core", action="store_true",
                        help="only the rows the targets compare (CORE_LABELS), on every seed")
    parser.add_argument("--ablation", action="store_true",
                        help="only ModalityGAT's components on and off, and the contrastive alignments, on the "
                             "validation splits (writes multimodal_ablation.json and .md; seeds: ABLATION_SEEDS)")
    parser.add_argument("--tune", action="store_true",
                        help="also rerun the ModalityGAT variants on seed 0's validation split (about 10 minutes)")
    args = parser.parse_args()
    if args.render_only:
        render(RESULTS / "multimodal.json", args.work)
        return
    if args.workers is None:
        args.workers = 0 if args.quick else 2
    if args.quick:
        require_data("ml-100k")
    torch.set_num_threads(args.threads)  # data preparation (text and image encoders)
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    if args.tune and 0 not in seeds:
        parser.error("--tune compares the variants with seed 0's runs: include seed 0 in --seeds")
    budget = QUICK_BUDGET if args.quick else Budget()
    if args.epochs is not None:
        budget = dataclasses.replace(budget, epochs=args.epochs)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.ablation:
        ablation(args, budget, partial=args.quick or args.epochs is not None)
        return
    if args.paired_seeds is not None:
        if args.paired_seeds < 2 or args.seeds is not None or args.tune or args.skip_synthetic:
            parser.error("--paired-seeds N takes N >= 2 and no --seeds, --tune or --skip-synthetic")
        paired_check(args, budget, partial=args.quick or args.epochs is not None)
        return
    # A smoke run (fewer epochs or seeds, no synthetic set) must not replace the committed results.
    partial = args.quick or args.epochs is not None or args.seeds is not None or args.skip_synthetic
    load_before = load_average()
    started = time.perf_counter()
    print(f"load: {load_before}\nseeds {seeds}, budget {budget}, {args.workers} workers x "
          f"{threads_per_worker(args.workers, args.threads)} threads")

    synthetic_options = QUICK_SYNTHETIC_OPTIONS if args.quick else SYNTHETIC_OPTIONS
    warm_arms, cold_arms = ml100k_arms(budget.dim)
    groups: list[tuple[str, list[Arm], Callable[[int], Path]]] = [
        ("ml100k_warm", warm_arms, lambda s: prepare_ml100k(args.work, s, cold=False, log=print)),
        ("ml100k_cold", cold_arms, lambda s: prepare_ml100k(args.work, s, cold=True, log=print)),
    ]
    if not args.skip_synthetic:
        groups.append(("synthetic", synthetic_arms(budget.dim),
                       lambda s: prepare_synthetic(args.work, synthetic_options, log=print)))
    if args.quick or args.core:
        labels = QUICK_LABELS if args.quick else CORE_LABELS
        groups = [(name, [arm for arm in arms if arm.label in labels[name]], prepare)
                  for name, arms, prepare in groups]

    prepare_started = time.perf_counter()
    paths = {(name, seed): prepare(seed) for name, _, prepare in groups for seed in seeds}
    prepare_seconds = time.perf_counter() - prepare_started
    datasets_info = {f"{name} seed {seed}": describe(load_dataset(path)) for (name, seed), path in paths.items()}

    rows: dict[str, list[Row]] = {name: [Row(arm) for arm in arms] for name, arms, _ in groups}
    with worker_pool(args.workers, args.threads) as pool:
        futures = submit_rows(pool, rows, paths, seeds, budget)
        tuning_futures = []
        if args.tune:
            base = ModelConfig(name="gat", dim=budget.dim, entities=("genres",))
            tuning_futures = [pool.submit(run_variant, label, protocol, dataclasses.replace(base, **changes), options,
                                          prepare_ml100k(args.work, 0, cold=protocol == "cold", log=print), 0,
                                          budget)
                              for label, protocol, changes, options in TUNING_VARIANTS]
        collect_rows(futures, rows, started)
        tuning = [future.result() for future in tuning_futures]

    tables = {name: summarise_rows(group_rows) for name, group_rows in rows.items()}
    outcome = targets(tables["ml100k_warm"], tables["ml100k_cold"], tables.get("synthetic"))
    print_results(tables, tuning, outcome)

    total_seconds = time.perf_counter() - started
    load_after = load_average()
    payload = {
        "description": __doc__.split("\n\n")[0],
        "seeds": seeds, "quick": args.quick, "threads": args.threads, "workers": args.workers,
        "threads_per_worker": threads_per_worker(args.workers, args.threads),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": {"before": load_before, "after": load_after},
        "budget": asdict(budget),
        "protocols": {
            "ml100k_warm": asdict(ConvertConfig(min_rating=3, split="random", seed=0)) | {"seed": "per run"},
            "ml100k_cold": asdict(ConvertConfig(min_rating=3, split="random", seed=0, cold_items=0.2))
            | {"seed": "per run"},
            "ml100k_text": {"encoder": "all-MiniLM-L6-v2 (bundled)", "fields": list(ML100K_TEXT_FIELDS)},
            "synthetic": {"reader_options": synthetic_options, "text": "all-MiniLM-L6-v2",
                          "image": "resnet18, seeded random initialisation (seed 0)",
                          "seeds": "training seeds; one generated dataset"},
        },
        "arms": {name: [{"label": row.arm.label, "model_config": flat_config(row.arm.model),
                         "contrastive": row.arm.contrastive} for row in group_rows]
                 for name, group_rows in rows.items()},
        "gat_chosen_on_validation": {protocol: chosen_gat(protocol, budget.dim)[1]
                                     for protocol in ("ml100k_warm", "ml100k_cold", "synthetic")},
        "datasets": datasets_info,
        "tables": tables,
        "targets": outcome,
        "notes": notes(args.work, seeds),
        "tuning": tuning or None,
        "runs": [record for group_rows in rows.values() for row in group_rows for record in row.runs],
        "seconds": {"total": total_seconds, "prepare": prepare_seconds},
    }
    out_dir = results_dir(partial)
    payload = json.loads(write_results("multimodal", payload, out_dir).read_text())  # with its command and machine
    plot(tables, outcome, out_dir / "multimodal.png")
    write_markdown(out_dir / "multimodal.md", results_markdown(payload))
    print(f"total {total_seconds / 60:.1f} min; load after: {load_after}")


def render(results: Path, work: Path) -> None:
    """Recompute targets and notes from saved results and redraw the chart and the Markdown."""
    payload = json.loads(results.read_text())
    tables = payload["tables"]
    payload["targets"] = targets(tables["ml100k_warm"], tables["ml100k_cold"], tables.get("synthetic"))
    # The notes need the converted cold-start datasets (under the ignored runs/); without them the
    # saved notes stay as they are.
    if all((work / f"ml-100k-cold-seed{seed}" / "manifest.json").is_file() for seed in payload["seeds"]):
        payload["notes"] = notes(work, payload["seeds"])
    write_json(results, payload)
    plot(tables, payload["targets"], results.parent / "multimodal.png")
    write_markdown(results.parent / "multimodal.md", results_markdown(payload))


if __name__ == "__main__":
    main()

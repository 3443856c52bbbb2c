"""Statistics of ``multimodal.py``: means over seeds, the paired comparison by seed, the targets.

Pure functions of the run records (the dicts ``multimodal.run_arm`` returns) and of the summaries
:func:`summarise` makes from them: no training, no files, no rendering (``_multimodal_report.py``
renders what these return).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np
import scipy.stats

METRICS = ("recall@20", "ndcg@20")
SPLITS = ("valid", "test", "test_cold")


def summarise(label: str, model: str, contrastive: bool, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: mean and (sample) standard deviation over seeds of every split and metric of ``runs``."""
    entry: dict[str, Any] = {"label": label, "model": model, "contrastive": contrastive,
                             "seeds": [r["seed"] for r in runs]}
    for split in SPLITS:
        for metric in METRICS:
            values = [r[split][metric] for r in runs if split in r]
            if values:
                entry[f"{split} {metric}"] = {"mean": statistics.fmean(values),
                                              "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                              "values": values}
    entry["seconds"] = statistics.fmean(r["seconds"] for r in runs)
    entry["best_epoch"] = [r["best_epoch"] for r in runs]
    return entry


#: The warm target on ml-100k: ModalityGAT's test Recall@20 over LightGCN's (issue 18).
WARM_TARGET = 1.05
#: The synthetic rows the targets compare.
SYNTHETIC_GAT = "ModalityGAT text+image+entities"
SYNTHETIC_VBPR = "VBPR text+image"


def mean_of(summary: list[dict[str, Any]], label: str, key: str) -> float:
    return next(entry[key]["mean"] for entry in summary if entry["label"] == label)


def paired_gain(warm: list[dict[str, Any]], key: str = "test recall@20", model: str = "ModalityGAT",
                baseline: str = "LightGCN") -> dict[str, Any] | None:
    """``model`` minus ``baseline`` seed by seed (each seed is one split and one training seed for both).

    The per-seed differences cancel the split's own variation, which dominates the spread of
    either model's mean; returns their mean, sample std, 95% t-interval and two-sided paired
    t-test p-value, and the gain the :data:`WARM_TARGET` asks for (``None`` with fewer than two seeds).
    """
    ours, reference = (next(entry for entry in warm if entry["label"] == label) for label in (model, baseline))
    by_seed = dict(zip(reference["seeds"], reference[key]["values"]))
    pairs = [(value, by_seed[seed]) for seed, value in zip(ours["seeds"], ours[key]["values"]) if seed in by_seed]
    if len(pairs) < 2:
        return None
    differences = np.array([a - b for a, b in pairs])
    mean, std = float(differences.mean()), float(differences.std(ddof=1))
    half_width = float(scipy.stats.t.ppf(0.975, len(pairs) - 1)) * std / len(pairs) ** 0.5
    return {"model": model, "baseline": baseline,
            "seeds": len(pairs), "mean": mean, "std": std, "ci95": [mean - half_width, mean + half_width],
            "p_value": float(scipy.stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue),
            "target_gain": (WARM_TARGET - 1) * statistics.fmean(b for _, b in pairs), "values": differences.tolist()}


def targets(warm: list[dict[str, Any]], cold: list[dict[str, Any]],
            synthetic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The targets of issue 18 (test Recall@20, means over seeds): on ml-100k, warm ModalityGAT >=
    :data:`WARM_TARGET` x LightGCN and cold-start ModalityGAT >= 2x popularity; on the synthetic set
    (when given), warm ModalityGAT >= 1.05x VBPR and >= 1.25x LightGCN, and among cold items >= VBPR."""
    gat_warm = mean_of(warm, "ModalityGAT", "test recall@20")
    lightgcn = mean_of(warm, "LightGCN", "test recall@20")
    gat_cold = mean_of(cold, "ModalityGAT", "test_cold recall@20")
    popularity = mean_of(cold, "popularity", "test_cold recall@20")
    random = mean_of(cold, "random", "test_cold recall@20")
    outcome: dict[str, Any] = {
        "warm": {"rule": f"ModalityGAT test Recall@20 >= {WARM_TARGET} x LightGCN's (means over seeds)",
                 "modality_gat": gat_warm, "lightgcn": lightgcn, "baseline": "LightGCN", "ratio": gat_warm / lightgcn,
                 "met": gat_warm >= WARM_TARGET * lightgcn, "paired": paired_gain(warm)},
        "cold": {"rule": "ModalityGAT cold-start test Recall@20 >= 2 x popularity's (means over seeds)",
                 "modality_gat": gat_cold, "popularity": popularity, "baseline": "popularity",
                 "ratio": gat_cold / popularity, "met": gat_cold >= 2 * popularity, "random": random,
                 "ratio_to_random": gat_cold / random},
    }
    labels = {entry["label"] for entry in synthetic or []}
    if {SYNTHETIC_GAT, SYNTHETIC_VBPR, "LightGCN"} <= labels:
        assert synthetic is not None
        gat, vbpr, plain = (mean_of(synthetic, label, "test recall@20")
                            for label in (SYNTHETIC_GAT, SYNTHETIC_VBPR, "LightGCN"))
        outcome["synthetic_warm"] = {
            "rule": "synthetic: ModalityGAT test Recall@20 >= 1.05 x VBPR's and >= 1.25 x LightGCN's",
            "modality_gat": gat, "vbpr": vbpr, "lightgcn": plain, "baseline": "VBPR", "ratio": gat / vbpr,
            "ratio_to_lightgcn": gat / plain, "met": gat >= 1.05 * vbpr and gat >= 1.25 * plain}
        gat, vbpr = (mean_of(synthetic, label, "test_cold recall@20") for label in (SYNTHETIC_GAT, SYNTHETIC_VBPR))
        outcome["synthetic_cold"] = {
            "rule": "synthetic, cold items: ModalityGAT test_cold Recall@20 >= VBPR's",
            "modality_gat": gat, "vbpr": vbpr, "baseline": "VBPR", "ratio": gat / vbpr, "met": gat >= vbpr}
    return outcome


def infonce_effects(tables: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str, float, float]]:
    """(table, model, metric, mean without InfoNCE, mean with it) for every row that has a twin with it."""
    effects = []
    for table, summary in tables.items():
        by_label = {entry["label"]: entry for entry in summary}
        for label, entry in by_label.items():
            twin = by_label.get(f"{label} + InfoNCE")
            if twin is None:
                continue
            keys = {"ml100k_warm": ["test recall@20"], "ml100k_cold": ["test_cold recall@20"]}.get(
                table, ["test recall@20", "test_cold recall@20"])
            for key in keys:
                if key in entry and key in twin:
                    effects.append((table, label, key, entry[key]["mean"], twin[key]["mean"]))
    return effects


def index_popularity_spearman(train_items: np.ndarray, num_items: int) -> float:
    """Spearman correlation of item index and training popularity, over the items with training interactions.

    Cold items have no training interaction, so :class:`~graphrec.models.baselines.Popularity`
    gives them all the same count and breaks the tie at random. Had it fallen back to the item
    index, a strongly negative value here says how much that catalogue order would have told
    about cold items.
    """
    counts = np.bincount(train_items, minlength=num_items)
    warm = np.flatnonzero(counts > 0)
    return float(scipy.stats.spearmanr(warm, counts[warm]).statistic)

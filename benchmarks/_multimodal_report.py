"""Rendering of ``multimodal.py``'s results: printed tables, ``multimodal.md``, ``multimodal_warm_paired.md``
and the bar chart.

Every function here is a function of the results payload (what the run measured, as written to the
JSON) and of fixed text about the method; nothing is computed that the payload does not hold, except
formatting. History (earlier runs, commit hashes, old figures) is not generated: it lives in the static
section at the end of the committed ``results/multimodal.md`` (see ``_common.STATIC_MARKER``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import markdown_table, print_table, pyplot
from _stats import WARM_TARGET, infonce_effects

COLUMNS = {"ml100k_warm": ["valid recall@20", "test recall@20", "test ndcg@20"],
           "ml100k_cold": ["test_cold recall@20", "test_cold ndcg@20", "test recall@20"],
           "synthetic": ["test recall@20", "test ndcg@20", "test_cold recall@20", "test_cold ndcg@20"]}
TITLES = {"ml100k_warm": "MovieLens-100K, warm protocol (test, train+valid items masked)",
          "ml100k_cold": "MovieLens-100K, cold-start protocol (20% of items unseen in training; "
                         "test_cold ranks among cold items only)",
          "synthetic": "Synthetic dataset (text + images, 20% cold items): modality ablation"}
TUNING_COLUMNS = ["variant", "valid recall@20", "valid ndcg@20", "valid cold-item recall@20", "best epoch", "s"]
#: ``--paired-seeds``: the baseline first, then the models compared with it seed by seed.
PAIRED_LABELS = ("LightGCN", "ModalityGAT", "FREEDOM")


# ------------------------------------------------------------------------------------------ table rows
def cell(entry: dict[str, Any], key: str) -> str:
    if key not in entry:
        return "–"
    value = entry[key]
    if len(value.get("values", ())) == 1:  # one seed: no spread to show
        return f"{value['mean']:.4f}"
    return f"{value['mean']:.4f} ± {value['std']:.4f}"


def table_rows(summary: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    return [{"model": entry["label"], **{key: cell(entry, key) for key in keys},
             "s/run": round(entry["seconds"], 1)} for entry in summary]


def tuning_rows(tuning: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"variant": t["label"], "valid recall@20": round(t["valid"]["recall@20"], 4),
             "valid ndcg@20": round(t["valid"]["ndcg@20"], 4),
             "valid cold-item recall@20": round(t["valid_cold"]["recall@20"], 4) if "valid_cold" in t else "",
             "best epoch": t["best_epoch"], "s": round(t["seconds"])} for t in tuning]


def summary_table(name: str, summary: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and columns of table ``name``."""
    return table_rows(summary, COLUMNS[name]), ["model", *COLUMNS[name], "s/run"]


def seed0_valid(runs: list[dict[str, Any]], label: str) -> float | None:
    """Seed 0's validation Recall@20 of the ml-100k warm row ``label`` (``None`` without seed 0)."""
    return next((run["valid"]["recall@20"] for run in runs
                 if run["table"] == "ml100k_warm" and run["label"] == label and run["seed"] == 0), None)


def paired_line(paired: dict[str, Any] | None) -> str:
    if paired is None:
        return "- warm, paired by seed: needs at least two seeds."
    low, high = paired["ci95"]
    verdict = ("the target's gain lies above the whole interval" if paired["target_gain"] > high else
               "the interval reaches the target's gain" if paired["target_gain"] >= low else
               "the whole interval lies above the target's gain")
    model, baseline = paired.get("model", "ModalityGAT"), paired.get("baseline", "LightGCN")
    return (f"- warm, paired by seed ({paired['seeds']} seeds): {model} minus {baseline} test Recall@20 "
            f"{paired['mean']:+.4f} ± {paired['std']:.4f}, 95% interval [{low:+.4f}, {high:+.4f}], paired t-test "
            f"p = {paired['p_value']:.2f}; the {WARM_TARGET}x target needs {paired['target_gain']:+.4f}: {verdict}.")


def runs_at_a_time(workers: int, each: str = "") -> str:
    """How the runs were spread: ``workers`` processes, or none (``--workers 0``)."""
    if workers == 0:
        return "one run at a time, in the benchmark's own process"
    return f"{workers} runs at a time{each}"


def gat_layers(payload: dict[str, Any], table: str) -> int:
    """The number of layers of the ModalityGAT row of ``table`` in this run."""
    return next(arm["model_config"]["layers"] for arm in payload["arms"][table] if arm["label"] == "ModalityGAT")


# ------------------------------------------------------------------------------------------ printed
def print_results(tables: dict[str, list[dict[str, Any]]], tuning: list[dict[str, Any]],
                  outcome: dict[str, Any]) -> None:
    for name, summary in tables.items():
        print(f"\n{TITLES[name]}")
        print_table(*summary_table(name, summary))
    if tuning:
        print("\nModalityGAT variants, seed 0, validation (the test split is not looked at)")
        print_table(tuning_rows(tuning), TUNING_COLUMNS)
    for key, target in outcome.items():
        print(f"\ntarget ({key}): {target['rule']}: {target['ratio']:.3f}x -> {'met' if target['met'] else 'NOT met'}")


# ------------------------------------------------------------------------------------------ Markdown
def results_markdown(payload: dict[str, Any]) -> str:
    """``multimodal.md`` without its static section: what the run measured, and how."""
    budget, outcome, tables = payload["budget"], payload["targets"], payload["tables"]
    lines = [
        "# Multimodal benchmark: ModalityGAT, VBPR, LightGCN, MF on MovieLens-100K (text) and the synthetic set",
        "",
        f"Command: `{payload['command']}` (written by `benchmarks/multimodal.py`; its docstring describes the "
        "protocols).",
        "",
        f"Seeds {payload['seeds']} (ml-100k: split and training seed; synthetic: training seed on one generated "
        f"dataset). Budget for every learned model: Adam lr {budget['lr']}, batch {budget['batch_size']} "
        f"with {budget.get('num_negatives', 1)} negative(s) per interaction, "
        f"L2 {budget['reg']} on the batch's layer-0 parameters, dimension {budget['dim']}, at most "
        f"{budget['epochs']} epochs, validation Recall@20 every {budget['eval_every']} epochs, early stopping "
        f"after {budget['patience']} evaluations without improvement, best validation epoch tested. "
        f"InfoNCE rows add contrastive weight {budget['contrastive_weight']} (temperature "
        f"{budget['contrastive_temperature']}). Values are mean ± sample std over seeds.",
        "",
        f"Machine: {payload['machine']['cpus']} CPUs; "
        f"{runs_at_a_time(payload['workers'], ', each in its own process')} with "
        f"{payload['threads_per_worker']} torch thread(s); OMP_WAIT_POLICY="
        f"{payload['omp_wait_policy']}; load before: `{payload['load_average']['before']}`, after: "
        f"`{payload['load_average']['after']}`. Total {payload['seconds']['total'] / 60:.1f} min "
        f"(data preparation {payload['seconds']['prepare'] / 60:.1f} min).",
        "",
    ]
    for name, summary in tables.items():
        lines += [f"## {TITLES[name]}", "", *markdown_table(*summary_table(name, summary)), ""]
    if payload.get("tuning"):
        lightgcn_valid = seed0_valid(payload["runs"], "LightGCN")
        lines += ["## How ModalityGAT's defaults were chosen (seed 0, validation split only)", "",
                  "The first five rows change one thing at a time, from the previous default (GATConv's "
                  "maths) to the current one; the next three vary the default; the last three pick the "
                  "depth for the cold-start protocol on the cold-start conversion (validation Recall@20 "
                  "among cold items). Genres as entity nodes and MiniLM text, the same budget as above. "
                  f"For reference, LightGCN's validation Recall@20 on seed 0: {lightgcn_valid:.4f}.", "",
                  *markdown_table(tuning_rows(payload["tuning"]), TUNING_COLUMNS), ""]
    lines += ["## Targets", ""]
    for key, target in outcome.items():
        baseline = target.get("baseline", "LightGCN" if key == "warm" else "popularity")
        against = target[baseline.lower()]
        extra = (f", {target['ratio_to_lightgcn']:.3f}x LightGCN ({target['lightgcn']:.4f})"
                 if "ratio_to_lightgcn" in target else "")
        lines.append(f"- {key}: {target['rule']}: ModalityGAT {target['modality_gat']:.4f} vs {baseline} "
                     f"{against:.4f} = {target['ratio']:.3f}x{extra}: **{'met' if target['met'] else 'NOT met'}**")
    lines.append(paired_line(outcome["warm"].get("paired")))
    cold = outcome["cold"]
    lines.append(f"- cold-start against random instead: ModalityGAT {cold['modality_gat']:.4f} vs "
                 f"{cold['random']:.4f} = {cold['ratio_to_random']:.2f}x.")
    correlations = ", ".join(f"{c:.2f}" for c in payload["notes"]["cold_popularity_order_spearman"])
    warm_layers, cold_layers = gat_layers(payload, "ml100k_warm"), gat_layers(payload, "ml100k_cold")
    lines += [
        "",
        "## Notes",
        "",
        "- **Popularity breaks ties at random.** Cold items have no training interaction, so the popularity "
        "baseline gives them all the same count; it orders them at random (seeded), not by item index. "
        "MovieLens numbers its movies in an order that tracks popularity (Spearman correlation of item index "
        f"and training popularity, per seed: {correlations}), so an index tie-break would hand the "
        "baseline real, if accidental, information about cold items.",
        "- **InfoNCE** (`contrastive_weight` > 0) aligns each item's content with its id embedding. Its effect "
        "on the mean Recall@20 (with minus without): " + "; ".join(
            f"{table} {base} {key.split()[0].replace('test_cold', 'cold').replace('test', 'warm')}: "
            f"{without:.4f} -> {with_:.4f} ({with_ - without:+.4f})"
            for table, base, key, without, with_ in infonce_effects(tables)) + ".",
        f"- ModalityGAT has {warm_layers} layer{'s' if warm_layers != 1 else ''} in the warm protocol and "
        f"{cold_layers} layer{'s' if cold_layers != 1 else ''} in the cold-start protocol, each chosen "
        "on seed 0's validation split (the last table); the synthetic ablation uses the warm setting.",
        "",
        "![bar chart](multimodal.png)",
        "",
    ]
    return "\n".join(lines)


def paired_markdown(payload: dict[str, Any]) -> str:
    """``multimodal_warm_paired.md``: the warm target on more seeds, seed by seed."""
    seeds, summary = payload["seeds"], payload["table"]
    baseline, *models = [label for label in PAIRED_LABELS if any(entry["label"] == label for entry in summary)]
    comparisons = payload["comparisons"]
    lines = ["# Warm target on more seeds: " + " and ".join(models) + f" against {baseline}, paired by seed", "",
             f"Command: `{payload['command']}` (written by `benchmarks/multimodal.py`). The warm protocol and "
             f"budget of `multimodal.md`, seeds {seeds[0]} to {seeds[-1]}; "
             f"{runs_at_a_time(payload['workers'])} on {payload['machine']['cpus']} CPUs, "
             f"{payload['seconds'] / 60:.1f} min.", ""]
    if payload.get("freedom_grid"):
        lines += ["FREEDOM's options were chosen on seed 0's validation split (the test split unread):", "",
                  "| options | valid recall@20 | valid ndcg@20 | best epoch |", "|---|---|---|---|"]
        lines += [f"| {', '.join(f'{k}={v}' for k, v in record['options'].items())} | "
                  f"{record['valid']['recall@20']:.4f} | {record['valid']['ndcg@20']:.4f} | {record['best_epoch']} |"
                  for record in payload["freedom_grid"]]
        lines.append("")
    lines += [*markdown_table(*summary_table("ml100k_warm", summary)), ""]
    for model, comparison in comparisons.items():
        lines += [f"- {model}: warm ratio of the means {comparison['ratio']:.3f}x {baseline} (target {WARM_TARGET}x)",
                  paired_line(comparison["paired"])]
    by_label = {entry["label"]: entry["test recall@20"]["values"] for entry in summary}
    lines += ["", "| seed | " + " | ".join([baseline, *models]) + " | " +
              " | ".join(f"{model} − {baseline}" for model in models) + " |",
              "|---" * (2 + 2 * len(models)) + "|"]
    for position, seed in enumerate(seeds):
        reference = by_label[baseline][position]
        values = [by_label[model][position] for model in models]
        lines.append(f"| {seed} | {reference:.4f} | " + " | ".join(f"{value:.4f}" for value in values) + " | " +
                     " | ".join(f"{value - reference:+.4f}" for value in values) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ chart
def plot(tables: dict[str, list[dict[str, Any]]], outcome: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    panels = [("ml100k_warm", "MovieLens-100K, warm: test", [("test recall@20", "Recall@20"),
                                                              ("test ndcg@20", "NDCG@20")]),
              ("ml100k_cold", "MovieLens-100K, cold-start (20% items unseen): test among cold items",
               [("test_cold recall@20", "Recall@20"), ("test_cold ndcg@20", "NDCG@20")]),
              ("synthetic", "Synthetic (text + images): test Recall@20",
               [("test recall@20", "warm items"), ("test_cold recall@20", "cold items")])]
    panels = [p for p in panels if p[0] in tables]
    target_lines = {"ml100k_warm": (WARM_TARGET * outcome["warm"]["lightgcn"],
                                    f"target: {WARM_TARGET} x LightGCN Recall@20"),
                    "ml100k_cold": (2 * outcome["cold"]["popularity"], "target: 2 x popularity Recall@20")}
    heights = [max(2.0, 0.42 * len(tables[name]) + 1.2) for name, _, _ in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(10, sum(heights)),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    colours = ["#4C72B0", "#DD8452"]
    for axis, (name, title, series) in zip(axes[:, 0], panels):
        entries = tables[name]
        positions = range(len(entries))
        width = 0.8 / len(series)
        for k, ((key, legend), colour) in enumerate(zip(series, colours)):
            means = [e[key]["mean"] if key in e else 0.0 for e in entries]
            stds = [e[key]["std"] if key in e else 0.0 for e in entries]
            offsets = [p - 0.4 + width * (k + 0.5) for p in positions]
            bars = axis.barh(offsets, means, height=width, xerr=stds, color=colour, label=legend,
                             error_kw={"elinewidth": 1, "capsize": 2})
            for bar, mean in zip(bars, means):
                axis.text(bar.get_width() + 0.004, bar.get_y() + bar.get_height() / 2, f"{mean:.3f}",
                          va="center", fontsize=7)
        axis.set_yticks(list(positions), [e["label"] for e in entries], fontsize=8)
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        axis.set_xlim(0, max(e[key]["mean"] + e[key]["std"] for e in entries for key, _ in series if key in e)
                      * 1.18)
        if name in target_lines:
            value, legend = target_lines[name]
            axis.axvline(value, color="black", linestyle="--", linewidth=1, label=legend)
        axis.legend(fontsize=8, loc="lower right")
    axes[-1, 0].set_xlabel("mean over seeds (error bar: one standard deviation)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

"""Training curves as PNG: loss on the left, validation metrics on the right."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from graphrec.data.storage import atomic_file


def plot_training_curves(history: Sequence, path: str | Path, title: str = "training",
                         metrics: Sequence[str] = ("recall@20", "ndcg@20"), best_epoch: int | None = None) -> Path:
    """Save loss and validation metrics per epoch (``history`` holds EpochRecord objects or dicts).

    ``best_epoch`` (the selected model's) is marked; by default, the epoch best by ``metrics[0]``."""
    # A bare Figure (no pyplot) draws off-screen without switching the caller's backend,
    # so calling this from a notebook leaves its inline plotting alone.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    records = [r if isinstance(r, dict) else r.to_dict() for r in history]
    epochs = [r["epoch"] for r in records]
    fig = Figure(figsize=(10, 4), constrained_layout=True)
    ax_loss, ax_metric = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["loss"] for r in records], color="tab:blue", marker="." if len(epochs) < 60 else None)
    ax_loss.set(xlabel="epoch", ylabel="BPR loss (train)", title="training loss")
    ax_loss.grid(alpha=0.3)
    evaluated = [r for r in records if r.get("valid")]
    for metric in metrics:
        values = [r["valid"][metric] for r in evaluated if metric in r["valid"]]
        if values:
            ax_metric.plot([r["epoch"] for r in evaluated if metric in r["valid"]], values, marker=".",
                           label=metric)
    if evaluated and best_epoch is None:
        best_epoch = max(evaluated, key=lambda r: r["valid"].get(metrics[0], float("-inf")))["epoch"]
    if best_epoch:
        ax_metric.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best (epoch {best_epoch})")
    ax_metric.set(xlabel="epoch", ylabel="validation metric", title="validation")
    ax_metric.grid(alpha=0.3)
    ax_metric.legend(loc="lower right")
    for axis in (ax_loss, ax_metric):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    path = Path(path)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path

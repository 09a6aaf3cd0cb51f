"""The hunt's scores as people read them: a rich table and a precision-recall PNG."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from sae_hacking.io.atomic import atomic_write
from sae_hacking.toy.experiments.hunt.scoring import Score

console = Console()


def print_table(at_default: dict[str, Score], descriptions: dict[str, str]) -> None:
    """Every method's precision, recall and F1 at its default threshold."""
    table = Table(title="absorbed pairs found, each method at its default threshold")
    for column in ("method", "threshold", "truth", "found", "P", "R", "F1", "what it keeps"):
        table.add_column(
            column, justify="left" if column in ("method", "what it keeps") else "right"
        )
    for name, s in at_default.items():
        table.add_row(
            name,
            f"{s.threshold:g}" if math.isfinite(s.threshold) else "-",
            str(s.actual),
            str(s.predicted),
            f"{s.precision:.2f}",
            f"{s.recall:.2f}",
            f"{s.f1:.2f}",
        )
    console.print(table)


def save_precision_recall(
    path: Path, sweeps: dict[str, list[Score]], at_default: dict[str, Score]
) -> None:
    """One curve per method, traced over its thresholds; each method's default point starred."""
    fig, ax = plt.subplots(figsize=(6.0, 4.5), constrained_layout=True)
    colours = plt.get_cmap("tab10")
    for i, (name, scores) in enumerate(sweeps.items()):
        line = sorted(scores, key=lambda s: s.threshold)
        ax.plot(
            [s.recall for s in line],
            [s.precision for s in line],
            "-o",
            color=colours(i),
            markersize=3,
            label=name,
        )
        default = at_default[name]
        ax.plot(default.recall, default.precision, "*", color=colours(i), markersize=12)
    ax.set_xlabel("recall of absorbed pairs")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("pair search against planted absorption (stars: default thresholds)", fontsize=9)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

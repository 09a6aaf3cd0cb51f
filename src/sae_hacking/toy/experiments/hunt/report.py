"""The hunt's scores as people read them: a rich table and a precision-recall PNG."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.console import Console
from rich.table import Table

from sae_hacking.io.atomic import atomic_write
from sae_hacking.toy.experiments.hunt.scoring import Score

console = Console()


def print_table(ablation: list[Score], baseline: list[Score], cooccurrence_threshold: int) -> None:
    """Precision, recall and F1 per cosine bar, at one co-occurrence bar, pipeline beside baseline."""
    table = Table(
        title=f"absorbed pairs found (co-occurrence <= {cooccurrence_threshold})",
        caption="found/P/R/F1: the pipeline (ablation effects); dec: decoder cosine, no ablation",
    )
    for column in (
        "cos>=",
        "truth",
        "found",
        "P",
        "R",
        "F1",
        "dec found",
        "dec P",
        "dec R",
        "dec F1",
    ):
        table.add_column(column, justify="right")
    for a, d in zip(ablation, baseline, strict=True):
        if a.cooccurrence_threshold != cooccurrence_threshold:
            continue
        table.add_row(
            f"{a.cosine_threshold:g}",
            str(a.actual),
            str(a.predicted),
            f"{a.precision:.2f}",
            f"{a.recall:.2f}",
            f"{a.f1:.2f}",
            str(d.predicted),
            f"{d.precision:.2f}",
            f"{d.recall:.2f}",
            f"{d.f1:.2f}",
        )
    console.print(table)


def save_precision_recall(
    path: Path, ablation: list[Score], baseline: list[Score], default: Score
) -> None:
    """One curve per co-occurrence bar, traced over the cosine bars; the default point marked."""
    fig, ax = plt.subplots(figsize=(6.0, 4.5), constrained_layout=True)
    bars = sorted({s.cooccurrence_threshold for s in ablation})
    colours = plt.get_cmap("viridis")
    for i, bar in enumerate(bars):
        colour = colours(i / max(len(bars) - 1, 1))
        for scores, style, label in ((ablation, "-o", "ablation"), (baseline, ":x", "decoder")):
            line = sorted(
                (s for s in scores if s.cooccurrence_threshold == bar),
                key=lambda s: s.cosine_threshold,
            )
            ax.plot(
                [s.recall for s in line],
                [s.precision for s in line],
                style,
                color=colour,
                markersize=3,
                label=f"{label}, co-occ. <= {bar}",
            )
    ax.plot(default.recall, default.precision, "r*", markersize=12, label="default thresholds")
    ax.set_xlabel("recall of absorbed pairs")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("pair search against planted absorption (points: cosine bars)", fontsize=9)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)

"""The run's summary: each (cycle, strategy) as mean and spread over seeds, and paired differences.

A strategy's difference from a control is taken seed by seed (both branches of one seed share the
cycle's batches and SAE initialisations), then summarised; the spread is the sample standard
deviation over seeds (0 for one seed).
"""

import json
import math
from pathlib import Path
from typing import Any

from sae_hacking.saeception.config import STRATEGIES

HEADLINE = (
    "task_accuracy",
    "probe_accuracy",
    "csi",
    "u",
    "l0",
    "dead_latents",
    "fvu",
    "ari",
    "silhouette",
)
COMPARED = ("task_accuracy", "probe_accuracy", "csi", "u", "ari", "silhouette")
CONTROLS = ("random", "none")


def spread(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation and count of the defined values."""
    defined = [v for v in values if v is not None and not math.isnan(v)]
    if not defined:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(defined) / len(defined)
    if len(defined) < 2:
        return {"mean": mean, "std": 0.0, "n": len(defined)}
    variance = sum((v - mean) ** 2 for v in defined) / (len(defined) - 1)
    return {"mean": mean, "std": math.sqrt(variance), "n": len(defined)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows of finished units -> per (cycle, strategy) spreads and paired differences from controls."""
    order = ("baseline", *STRATEGIES)
    keys = sorted(
        {(r["cycle"], r["strategy"]) for r in rows}, key=lambda k: (k[0], order.index(k[1]))
    )
    by_key = {key: [r for r in rows if (r["cycle"], r["strategy"]) == key] for key in keys}
    table = []
    for (cycle, strategy), group in by_key.items():
        entry: dict[str, Any] = {
            "cycle": cycle,
            "strategy": strategy,
            "seeds": [r["seed"] for r in group],
        }
        for metric in HEADLINE:
            entry[metric] = spread([r.get(metric) for r in group])
        table.append(entry)
    differences = []
    for (cycle, strategy), group in by_key.items():
        for control in CONTROLS:
            # The controls are compared once, random - none.
            skip = strategy == control or (strategy == "none" and control == "random")
            if skip or cycle == 0 or (cycle, control) not in by_key:
                continue
            mine = {r["seed"]: r for r in group}
            theirs = {r["seed"]: r for r in by_key[(cycle, control)]}
            seeds = sorted(set(mine) & set(theirs))
            entry = {"cycle": cycle, "strategy": strategy, "minus": control, "seeds": seeds}
            for metric in COMPARED:
                entry[metric] = spread(
                    [_difference(mine[s].get(metric), theirs[s].get(metric)) for s in seeds]
                )
            differences.append(entry)
    return {"table": table, "paired_differences": differences}


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def read_rows(unit_dirs: list[Path]) -> list[dict[str, Any]]:
    """The scalar metrics of finished units (per-latent lists left out)."""
    rows = []
    for directory in unit_dirs:
        record = json.loads((directory / "metrics.json").read_text(encoding="utf-8"))
        rows.append({k: v for k, v in record.items() if k != "per_latent"})
    return rows


def format_spread(cell: dict[str, Any], digits: int = 3) -> str:
    if cell["mean"] is None:
        return "-"
    if cell["n"] < 2:
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def markdown_tables(summary: dict[str, Any]) -> str:
    """The summary as two Markdown tables (means ± standard deviations over seeds)."""
    names = {
        "task_accuracy": "accuracy",
        "probe_accuracy": "probe acc.",
        "csi": "CSI",
        "u": "U",
        "l0": "L0",
        "dead_latents": "dead",
        "fvu": "FVU",
        "ari": "ARI",
        "silhouette": "silhouette",
    }
    lines = ["| cycle | strategy | " + " | ".join(names[m] for m in HEADLINE) + " |"]
    lines.append("|---" * (2 + len(HEADLINE)) + "|")
    for entry in summary["table"]:
        cells = [format_spread(entry[m], 1 if m in ("l0", "dead_latents") else 3) for m in HEADLINE]
        lines.append(f"| {entry['cycle']} | {entry['strategy']} | " + " | ".join(cells) + " |")
    if summary["paired_differences"]:
        lines += ["", "| cycle | difference | " + " | ".join(names[m] for m in COMPARED) + " |"]
        lines.append("|---" * (2 + len(COMPARED)) + "|")
        for entry in summary["paired_differences"]:
            cells = [format_spread(entry[m]) for m in COMPARED]
            label = f"{entry['strategy']} − {entry['minus']}"
            lines.append(f"| {entry['cycle']} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

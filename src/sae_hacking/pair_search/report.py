"""Pair-search results as files a person opens: pairs.json, pairs.csv, a cosine histogram, an HTML page."""

import csv
import html
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sae_hacking.io.atomic import atomic_write, atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class LatentInfo:
    """One side of a pair."""

    latent: int
    ablations: int
    firing: int | None
    url: str | None
    explanation: str | None


@dataclass(frozen=True)
class PairRow:
    """One reported pair."""

    first: LatentInfo
    second: LatentInfo
    cosine: float
    cooccurrence: int | None
    # The ranked score (--scoring ranked), None under thresholds.
    score: float | None = None


def write_json(path: Path, pairs: list[PairRow], meta: dict[str, Any]) -> None:
    atomic_write_json(path, {**meta, "pairs": [asdict(p) for p in pairs]})


def write_csv(path: Path, pairs: list[PairRow]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "first",
            "second",
            "cosine",
            "cooccurrence",
            "first_ablations",
            "second_ablations",
            "first_firing",
            "second_firing",
            "first_url",
            "second_url",
            "first_explanation",
            "second_explanation",
        ]
    )
    for p in pairs:
        writer.writerow(
            [
                p.first.latent,
                p.second.latent,
                f"{p.cosine:.6f}",
                p.cooccurrence,
                p.first.ablations,
                p.second.ablations,
                p.first.firing,
                p.second.firing,
                p.first.url,
                p.second.url,
                p.first.explanation,
                p.second.explanation,
            ]
        )
    atomic_write_text(path, buffer.getvalue())


def write_histogram(path: Path, counts: list[int], cosine_threshold: float, title: str) -> None:
    """A PNG of how many pairs fall in each cosine bin over [-1, 1], log-scaled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = len(counts)
    edges = [-1.0 + 2.0 * b / bins for b in range(bins + 1)]
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
    ax.stairs(counts, edges, fill=True, alpha=0.7)
    ax.axvline(
        cosine_threshold, color="crimson", linestyle="--", label=f"threshold {cosine_threshold:g}"
    )
    if any(counts):
        ax.set_yscale("log")
    ax.set_xlabel("cosine of effect rows")
    ax.set_ylabel("pairs")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
th {{ background: #f0f0f0; cursor: pointer; user-select: none; }}
th.asc::after {{ content: " \\25B2"; }} th.desc::after {{ content: " \\25BC"; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
<p>Click a column header to sort. Links open the latent on Neuronpedia.</p>
<table id="pairs"><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<script>
document.querySelectorAll("#pairs th").forEach((th, col) => th.addEventListener("click", () => {{
  const body = document.querySelector("#pairs tbody");
  const asc = !th.classList.contains("asc");
  document.querySelectorAll("#pairs th").forEach(h => h.classList.remove("asc", "desc"));
  th.classList.add(asc ? "asc" : "desc");
  const key = tr => {{ const c = tr.children[col]; const v = c.dataset.v ?? c.textContent;
    const n = parseFloat(v); return isNaN(n) ? v : n; }};
  [...body.rows].sort((a, b) => {{ const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }}).forEach(r => body.appendChild(r));
}}));
</script></body></html>
"""

_COLUMNS = [
    "#",
    "first",
    "second",
    "cosine",
    "co-occurrence",
    "ablations",
    "firing",
    "explanations",
]


def _latent_cell(info: LatentInfo) -> str:
    text = html.escape(str(info.latent))
    link = f'<a href="{html.escape(info.url)}">{text}</a>' if info.url else text
    return f'<td class="num" data-v="{info.latent}">{link}</td>'


def _number(value: float | int | None, text: str | None = None) -> str:
    shown = "" if value is None else html.escape(text or str(value))
    return f'<td class="num" data-v="{"" if value is None else value}">{shown}</td>'


def write_html(path: Path, pairs: list[PairRow], title: str, summary: str) -> None:
    """A self-contained page (no external assets) with a sortable table of the pairs."""
    rows = []
    for rank, p in enumerate(pairs, start=1):
        explanations = " / ".join(
            html.escape(e or "-") for e in (p.first.explanation, p.second.explanation)
        )
        rows.append(
            "<tr>"
            + _number(rank)
            + _latent_cell(p.first)
            + _latent_cell(p.second)
            + _number(p.cosine, f"{p.cosine:.4f}")
            + _number(p.cooccurrence)
            + f"<td>{p.first.ablations} / {p.second.ablations}</td>"
            + f"<td>{p.first.firing if p.first.firing is not None else '-'} / "
            + f"{p.second.firing if p.second.firing is not None else '-'}</td>"
            + f"<td>{explanations}</td></tr>"
        )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    page = _PAGE.format(
        title=html.escape(title), summary=html.escape(summary), head=head, rows="\n".join(rows)
    )
    atomic_write_text(path, page)


def read_pairs_json(path: Path) -> dict[str, Any]:
    """Read a pairs.json back (for tests and later tools)."""
    return json.loads(path.read_text(encoding="utf-8"))

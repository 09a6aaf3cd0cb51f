"""Pair-search results as files a person opens: pairs.json, pairs.csv, a cosine histogram, and
pairs.html, the evidence page (each pair's numbers, and both latents' top contexts and the reader
latents their ablations move, as feature dashboards show a latent)."""

import csv
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sae_hacking.io.atomic import atomic_write, atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class LatentInfo:
    """One side of a pair, with the evidence a researcher reads about it."""

    latent: int
    ablations: int
    firing: int | None
    url: str | None
    explanation: str | None
    # Share of the co-occurrence run's tokens the latent fired on.
    firing_rate: float | None = None
    # Its top-activating contexts from the co-occurrence run (see CooccurrenceResults.top_contexts).
    contexts: list[dict[str, Any]] = field(default_factory=list)
    # The reader latents its ablation moves most (see pair_search/evidence.py).
    moves: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PairRow:
    """One reported pair."""

    first: LatentInfo
    second: LatentInfo
    # Cosine of the pair's effect rows (of their sign patterns with --sign).
    cosine: float
    cooccurrence: int | None
    # The ranked score (--scoring ranked), None under thresholds.
    score: float | None = None
    # Co-occurrences expected if the two latents fired independently.
    expected_cooccurrence: float | None = None
    decoder_cosine: float | None = None
    # Whether the pair is in --truth (None without it).
    true_pair: bool | None = None


def write_json(path: Path, pairs: list[PairRow], meta: dict[str, Any]) -> None:
    atomic_write_json(path, {**meta, "pairs": [asdict(p) for p in pairs]})


_CSV_PAIR = ["cosine", "score", "decoder_cosine", "cooccurrence", "expected_cooccurrence"]
_CSV_SIDE = ["ablations", "firing", "firing_rate", "url", "explanation"]


def write_csv(path: Path, pairs: list[PairRow]) -> None:
    """One line per pair: its numbers, then each side's (contexts and moved reader latents are
    in pairs.json and pairs.html)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    side_columns = [f"{side}_{c}" for c in _CSV_SIDE for side in ("first", "second")]
    writer.writerow(["first", "second", *_CSV_PAIR, "true_pair", *side_columns])
    for p in pairs:
        numbers = [getattr(p, c) for c in _CSV_PAIR]
        sides = [getattr(side, c) for c in _CSV_SIDE for side in (p.first, p.second)]
        writer.writerow(
            [
                p.first.latent,
                p.second.latent,
                *(f"{v:.6g}" if isinstance(v, float) else v for v in numbers),
                p.true_pair,
                *(f"{v:.6g}" if isinstance(v, float) else v for v in sides),
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
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f0f0f0; cursor: pointer; user-select: none; }}
th.asc::after {{ content: " \\25B2"; }} th.desc::after {{ content: " \\25BC"; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.true td.mark {{ background: #d8f0d8; }} tr.false td.mark {{ background: #f6d8d8; }}
details {{ min-width: 40em; }}
.sides {{ display: flex; gap: 2em; flex-wrap: wrap; }}
.side {{ flex: 1; min-width: 30em; }}
.ctx {{ font-family: ui-monospace, monospace; white-space: pre-wrap; margin: 0.2em 0; }}
.ctx mark {{ background: #ffd54f; font-weight: bold; }}
.ctx .act {{ color: #555; display: inline-block; min-width: 4.5em; }}
.where {{ color: #888; font-size: 0.85em; }}
ul {{ margin: 0.2em 0; padding-left: 1.2em; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
{truth}
<p>Click a column header to sort; open a row's evidence for both latents' top-activating contexts
(the token highlighted, its activation on the left; from the co-occurrence run) and what each
ablation moves most downstream (reader latents, their pre-activations or the reader hook's
dimensions, as the ablation run measured effects; mean clean &minus; ablated: positive means the
ablation lowers it). Expected co-occurrence is the count under independence,
firing<sub>i</sub> &times; firing<sub>j</sub> / tokens. Latent ids link to Neuronpedia where the
SAE is known there.</p>
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
    "true?",
    "first",
    "second",
    "score",
    "effect cosine",
    "decoder cosine",
    "co-occurrence",
    "expected",
    "firing rate",
    "ablations",
    "evidence",
]


def _latent_link(info: LatentInfo) -> str:
    text = html.escape(str(info.latent))
    return f'<a href="{html.escape(info.url)}">{text}</a>' if info.url else text


def _latent_cell(info: LatentInfo) -> str:
    return f'<td class="num" data-v="{info.latent}">{_latent_link(info)}</td>'


def _number(value: float | int | None, digits: int = 4) -> str:
    if value is None:
        return '<td class="num" data-v="">-</td>'
    shown = f"{value:.{digits}g}" if isinstance(value, float) else str(value)
    return f'<td class="num" data-v="{value}">{html.escape(shown)}</td>'


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.3%}" if value >= 1e-3 else f"{value:.2e}"


def _token(text: str) -> str:
    # Newlines and tabs inside a context would break its line; show them as symbols.
    return html.escape(text.replace("\n", "\u21b5").replace("\t", "\u21e5"))


def _context(context: dict[str, Any]) -> str:
    tokens = context["tokens"]
    focus = context["focus"]
    text = (
        "".join(_token(t) for t in tokens[:focus])
        + f"<mark>{_token(tokens[focus])}</mark>"
        + "".join(_token(t) for t in tokens[focus + 1 :])
    )
    where = f"prompt {context['prompt']}, token {context['position']}"
    return (
        f'<div class="ctx"><span class="act">{context["activation"]:.3g}</span>{text} '
        f'<span class="where">({where})</span></div>'
    )


# How an effect entry is named, by the ablation run's --effect-space.
_SPACES = {
    "latents": "reader latent",
    "preactivations": "reader pre-activation",
    "activations": "reader hook dimension",
}


def _moves(moves: list[dict[str, Any]]) -> str:
    if not moves:
        return "<p>nothing moved</p>"
    items = []
    for move in moves:
        name = html.escape(str(move["latent"]))
        if move.get("url"):
            name = f'<a href="{html.escape(move["url"])}">{name}</a>'
        said = f" ({html.escape(move['explanation'])})" if move.get("explanation") else ""
        what = _SPACES.get(move.get("space", "latents"), "reader latent")
        items.append(f"<li>{what} {name}{said}: {move['mean_effect']:+.4g}</li>")
    return "<ul>" + "".join(items) + "</ul>"


def _side(info: LatentInfo, label: str) -> str:
    head = f"<h4>{label} latent {_latent_link(info)}"
    if info.explanation:
        head += f": {html.escape(info.explanation)}"
    head += "</h4>"
    facts = (
        f"<p>fires on {_rate(info.firing_rate)} of tokens"
        f"{'' if info.firing is None else f' ({info.firing:,})'}, ablated {info.ablations:,} times</p>"
    )
    contexts = (
        "".join(_context(c) for c in info.contexts)
        if info.contexts
        else "<p>no top contexts (run gemma_cooccurrences.py with --top-contexts, and give "
        "--cooccurrence-dir)</p>"
    )
    moves = "<p>what its ablation moves most downstream:</p>" + _moves(info.moves)
    return f'<div class="side">{head}{facts}{contexts}{moves}</div>'


def _mark(true_pair: bool | None) -> str:
    if true_pair is None:
        return '<td class="mark" data-v="">-</td>'
    return f'<td class="mark" data-v="{int(true_pair)}">{"true" if true_pair else "false"}</td>'


def write_html(
    path: Path, pairs: list[PairRow], title: str, summary: str, truth: str | None = None
) -> None:
    """A self-contained page (no external assets): a sortable table of the pairs, each with the
    evidence for both latents in a collapsible cell."""
    rows = []
    for rank, p in enumerate(pairs, start=1):
        status = "" if p.true_pair is None else f' class="{"true" if p.true_pair else "false"}"'
        rates = f"{_rate(p.first.firing_rate)} / {_rate(p.second.firing_rate)}"
        evidence = (
            '<details><summary>contexts and effects</summary><div class="sides">'
            + _side(p.first, "first")
            + _side(p.second, "second")
            + "</div></details>"
        )
        rows.append(
            f"<tr{status}>"
            + _number(rank)
            + _mark(p.true_pair)
            + _latent_cell(p.first)
            + _latent_cell(p.second)
            + _number(p.score)
            + _number(p.cosine)
            + _number(p.decoder_cosine)
            + _number(p.cooccurrence)
            + _number(p.expected_cooccurrence, 3)
            + f'<td data-v="{p.first.firing_rate or 0}">{rates}</td>'
            + f"<td>{p.first.ablations} / {p.second.ablations}</td>"
            + f"<td>{evidence}</td></tr>"
        )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in _COLUMNS)
    page = _PAGE.format(
        title=html.escape(title),
        summary=html.escape(summary),
        truth=f"<p><b>{html.escape(truth)}</b></p>" if truth else "",
        head=head,
        rows="\n".join(rows),
    )
    atomic_write_text(path, page)


def read_pairs_json(path: Path) -> dict[str, Any]:
    """Read a pairs.json back (for tests and later tools)."""
    return json.loads(path.read_text(encoding="utf-8"))

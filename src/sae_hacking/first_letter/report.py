"""The run's files: letters.json/.csv, absorption.png, f1_by_k.png, report.html, absorbing_pairs.json."""

import base64
import csv
import html
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sae_hacking.first_letter.config import FirstLetterConfig
from sae_hacking.first_letter.evaluate import LetterResult, SaeResult
from sae_hacking.io.atomic import atomic_write, atomic_write_json, atomic_write_text
from sae_hacking.neuronpedia import neuronpedia_url

PAIRS_FILE = "absorbing_pairs.json"
CSV_COLUMNS = (
    "sae_id",
    "letter",
    "probe_f1",
    "test_words",
    "probe_true_positives",
    "included",
    "main_latents",
    "split_count",
    "absorption_fraction",
    "full_absorption_rate",
    "paper_absorption_rate",
    "top_absorbers",
)


def _absorbers(result: SaeResult, letter: LetterResult) -> list[dict[str, Any]]:
    return [
        {**asdict(a), "url": neuronpedia_url(result.neuronpedia_id, a.latent)}
        for a in letter.absorbers
    ]


def summary_of(result: SaeResult) -> dict[str, Any]:
    return {
        "sae_id": result.sae_id,
        "width": result.width,
        "neuronpedia_id": result.neuronpedia_id,
        "letters_included": sum(r.included for r in result.letters),
        "mean_absorption_fraction": result.mean("absorption_fraction"),
        "mean_full_absorption_rate": result.mean("full_absorption_rate"),
        "mean_split_count": result.mean("split_count"),
        "mean_paper_absorption_rate": result.mean("paper_absorption_rate"),
    }


def letters_json(result: SaeResult) -> dict[str, Any]:
    letters = []
    for r in result.letters:
        row = asdict(r)
        row["absorbers"] = _absorbers(result, r)
        row["main_latent_urls"] = [
            neuronpedia_url(result.neuronpedia_id, m) for m in r.main_latents
        ]
        letters.append(row)
    return {**summary_of(result), "letters": letters}


def absorbing_pairs(results: list[SaeResult], hook_name: str) -> dict[str, Any]:
    """Each included letter's main latents paired with its absorbers: ground truth for a hunt.

    Pairs use the planted model's truth keys (``letter_latent``, ``word_latent``, ``strength``,
    see ``llm.planted_hunt``), so one reader scores a hunt against either; ``strength`` is the
    share of the letter's probe true positives the absorber took part in.
    """
    pairs = []
    for result in results:
        for r in result.letters:
            if not r.included:
                continue
            for main in r.main_latents:
                for a in r.absorbers:
                    pairs.append(
                        {
                            "letter_latent": main,
                            "word_latent": a.latent,
                            "strength": a.words / max(r.probe_true_positives, 1),
                            "sae_id": result.sae_id,
                            "letter": r.letter,
                            "words": a.words,
                            "probe_true_positives": r.probe_true_positives,
                            "cosine": a.cosine,
                            "examples": a.examples,
                        }
                    )
    return {
        "description": "(main latent of a letter, latent absorbing it) from the first-letter task",
        "hook_name": hook_name,
        "absorbed_pairs": pairs,
    }


def write_csv(path: Path, results: list[SaeResult], shown: int) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for result in results:
        for r in result.letters:
            writer.writerow(
                [
                    result.sae_id,
                    r.letter,
                    f"{r.probe_f1:.4f}",
                    r.test_words,
                    r.probe_true_positives,
                    r.included,
                    " ".join(map(str, r.main_latents)),
                    r.split_count,
                    f"{r.absorption_fraction:.4f}",
                    f"{r.full_absorption_rate:.4f}",
                    "" if r.paper_absorption_rate is None else f"{r.paper_absorption_rate:.4f}",
                    " ".join(f"{a.latent}:{a.words}" for a in r.absorbers[:shown]),
                ]
            )
    atomic_write_text(path, buffer.getvalue())


def _figure_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plots(results: list[SaeResult], max_k: int) -> tuple[bytes, bytes]:
    """PNG bytes: absorption fraction per letter (bars per SAE), and F1 against k per SAE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    letters = [r.letter for r in results[0].letters]
    fig, ax = plt.subplots(figsize=(11, 3.8), dpi=110)
    width = 0.8 / len(results)
    for i, result in enumerate(results):
        xs = [j + i * width for j in range(len(letters))]
        ax.bar(xs, [r.absorption_fraction for r in result.letters], width, label=result.sae_id)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(letters))], letters)
    ax.set_ylabel("mean absorption fraction")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    fig.tight_layout()
    absorption = _figure_bytes(fig)
    plt.close(fig)

    fig, axes = plt.subplots(
        1, len(results), figsize=(5 * len(results), 3.8), dpi=110, squeeze=False
    )
    ks = list(range(1, max_k + 1))
    for ax, result in zip(axes[0], results, strict=True):
        for r in result.letters:
            ax.plot(ks, r.f1_by_k, alpha=0.6, linewidth=1)
        ax.set_title(result.sae_id, fontsize=8)
        ax.set_xlabel("k (latents in the sparse probe)")
        ax.set_ylabel("test F1")
        ax.set_ylim(0, 1.02)
    fig.tight_layout()
    f1 = _figure_bytes(fig)
    plt.close(fig)
    return absorption, f1


def _latent(result: SaeResult, latent: int) -> str:
    url = neuronpedia_url(result.neuronpedia_id, latent)
    return f'<a href="{html.escape(url)}">{latent}</a>' if url else str(latent)


def html_page(
    config: FirstLetterConfig, hook_name: str, results: list[SaeResult], images: tuple[bytes, bytes]
) -> str:
    absorption, f1 = (base64.b64encode(b).decode() for b in images)
    parts = [
        "<!doctype html><meta charset='utf-8'><title>First-letter absorption</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}td.l{text-align:left}tr.out{color:#999}</style>",
        "<h1>First-letter absorption</h1>",
        f"<p>Model <b>{html.escape(config.model)}</b>, hook <b>{html.escape(hook_name)}</b>. "
        "Absorption fraction: the share of the letter's probe projection carried by latents other "
        "than the letter's main latents (SAEBench 0.6), mean over the probe's true positives. "
        "Full absorption: the main latents are silent and one latent carries the letter. Paper: "
        "the main latents are silent and the latent whose exact ablation lowers the letter's logit "
        "difference most is aligned with the probe. Greyed letters have probe F1 at or below "
        f"{config.min_probe_f1} and are left out of the means.</p>",
        f"<img src='data:image/png;base64,{absorption}' width='100%'>",
        f"<img src='data:image/png;base64,{f1}' width='100%'>",
    ]
    for result in results:
        s = summary_of(result)
        parts.append(f"<h2>{html.escape(result.sae_id)} ({result.width} latents)</h2>")
        parts.append(
            "<p>"
            + ", ".join(f"{k}: {_fmt(v)}" for k, v in s.items() if k.startswith("mean"))
            + "</p>"
        )
        parts.append(
            "<table><tr><th>letter<th>probe F1<th>true positives<th>main latents<th>splits"
            "<th>absorption<th>full<th>paper<th class=l>top absorbers (words: examples)</tr>"
        )
        for r in result.letters:
            absorbers = "; ".join(
                f"{_latent(result, a.latent)} ({a.words}: {html.escape(', '.join(a.examples))})"
                for a in r.absorbers[: config.top_absorbers]
            )
            mains = " ".join(_latent(result, m) for m in r.main_latents)
            parts.append(
                f"<tr class='{'' if r.included else 'out'}'><td class=l>{r.letter}"
                f"<td>{r.probe_f1:.2f}<td>{r.probe_true_positives}<td>{mains}<td>{r.split_count}"
                f"<td>{r.absorption_fraction:.3f}<td>{r.full_absorption_rate:.3f}"
                f"<td>{_fmt(r.paper_absorption_rate)}<td class=l>{absorbers}</tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_report(
    run_dir: Path,
    config: FirstLetterConfig,
    hook_name: str,
    results: list[SaeResult],
    seconds: float,
) -> None:
    atomic_write_json(
        run_dir / "letters.json",
        {"hook_name": hook_name, "seconds": seconds, "saes": [letters_json(r) for r in results]},
    )
    write_csv(run_dir / "letters.csv", results, config.top_absorbers)
    images = plots(results, config.max_k)
    for name, data in zip(("absorption.png", "f1_by_k.png"), images, strict=True):
        atomic_write(run_dir / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
    atomic_write_text(run_dir / "report.html", html_page(config, hook_name, results, images))
    atomic_write_json(run_dir / PAIRS_FILE, absorbing_pairs(results, hook_name))

"""The three steps on the tiny model: co-occurrences -> selective ablation -> pair search."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.cooccurrence.run import CooccurrenceConfig
from sae_hacking.cooccurrence.run import run as count_cooccurrences
from sae_hacking.gemma_selective_ablate import app as ablate_app
from sae_hacking.io.bundle import load_manifest
from sae_hacking.io.cooccurrence_results import load_cooccurrence
from sae_hacking.io.effects import EffectStore
from sae_hacking.llm.tokenizer import TINY_TEXT
from sae_hacking.look_for_pairs import app as pairs_app

ABLATOR = "blocks.1.hook_resid_post/jumprelu/128"
ABLATE = [
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--ablator-sae-release",
    "tiny",
    "--ablator-sae-id",
    ABLATOR,
    "--reader-sae-release",
    "tiny",
    "--reader-sae-id",
    "blocks.2.hook_resid_post/jumprelu/128",
    "--abridge-ablations-to",
    "8",
    "--max-tokens-in-prompt",
    "24",
    "--batch-size",
    "4",
    "--n-prompts",
    "8",
]


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def cooccurrences(corpus: Path, out: Path, sae_id: str = ABLATOR, **extra: object) -> Path:
    return count_cooccurrences(
        CooccurrenceConfig(
            model="tiny",
            sae_release="tiny",
            sae_id=sae_id,
            dataset_path=(corpus,),
            max_tokens_in_prompt=24,
            batch_size=4,
            max_prompts=12,
            device="cpu",
            output_dir=out,
            **extra,  # pyright: ignore[reportArgumentType]
        )
    )


@pytest.fixture(scope="module")
def cooc_run(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cooccurrences(corpus, tmp_path_factory.mktemp("cooc"))


def ablate(corpus: Path, out: Path, *extra: str):
    result = CliRunner().invoke(
        ablate_app, [*ABLATE, "--dataset-path", str(corpus), "--output-dir", str(out), *extra]
    )
    return result, (only_run(out) if out.is_dir() and any(out.iterdir()) else None)


def search(out: Path, *args: str):
    result = CliRunner().invoke(pairs_app, [*args, "--device", "cpu", "--output-dir", str(out)])
    return result, (only_run(out) if out.is_dir() and any(out.iterdir()) else None)


def one_line_error(result, flag: str) -> bool:
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 2 and len(lines) == 1 and flag in lines[0]


def test_pipeline_excludes_frequent_latents_and_reports_exact_cooccurrence(
    corpus: Path, cooc_run: Path, tmp_path: Path
) -> None:
    results = load_cooccurrence(cooc_run)
    fraction_E = results.firing_E.double() / results.tokens
    result, plain = ablate(corpus, tmp_path / "plain")
    assert result.exit_code == 0, result.output
    assert plain is not None
    ablated = EffectStore(plain / "effects", "x").latents_R
    # A threshold that excludes some of the latents a plain run ablates, but not all.
    threshold = float(fraction_E[ablated].median())
    result, lean = ablate(
        corpus,
        tmp_path / "lean",
        "--cooccurrence-dir",
        str(cooc_run),
        "--exclude-latent-threshold",
        f"{threshold}",
    )
    assert result.exit_code == 0, result.output
    assert lean is not None
    kept = EffectStore(lean / "effects", "x").latents_R
    assert kept.numel() > 0
    assert bool((fraction_E[kept] <= threshold).all())
    assert bool((fraction_E[ablated] > threshold).any())

    counts = {}
    for threshold_count in (0, 2):
        result, run_dir = search(
            tmp_path / f"pairs{threshold_count}",
            "--ablation-dir",
            str(plain),
            "--cooccurrence-dir",
            str(cooc_run),
            "--cooccurrence-threshold",
            str(threshold_count),
            "--cosine-sim-threshold",
            "-1",
            "--top-n",
            "100000",
        )
        assert result.exit_code == 0, result.output
        assert run_dir is not None
        report = json.loads((run_dir / "pairs.json").read_text())
        pairs = report["pairs"]
        first = torch.tensor([p["first"]["latent"] for p in pairs])
        second = torch.tensor([p["second"]["latent"] for p in pairs])
        exact = results.pair_counts(first, second)
        assert [p["cooccurrence"] for p in pairs] == exact.tolist()
        assert bool((exact <= threshold_count).all())
        assert [p["first"]["firing"] for p in pairs] == results.firing_E[first].tolist()
        assert [p["second"]["firing"] for p in pairs] == results.firing_E[second].tolist()
        # Every pair of ablated latents at or under the threshold is there, and no other.
        latents = ablated.tolist()
        i, j = torch.triu_indices(len(latents), len(latents), 1)
        all_counts = results.pair_counts(ablated[i], ablated[j])
        assert len(pairs) == int((all_counts <= threshold_count).sum())
        counts[threshold_count] = len(pairs)
    assert 0 < counts[0] < counts[2]


def test_mismatched_cooccurrence_runs_are_one_line_errors_naming_the_flag(
    corpus: Path, cooc_run: Path, tmp_path: Path
) -> None:
    other_sae = cooccurrences(
        corpus, tmp_path / "other", sae_id="blocks.0.hook_resid_post/jumprelu/128"
    )
    other_width = cooccurrences(
        corpus, tmp_path / "wide", sae_id="blocks.1.hook_resid_post/jumprelu/256"
    )
    rows_only = cooccurrences(corpus, tmp_path / "rows", rows=(1, 2))
    other_model = tmp_path / "other_model"
    shutil.copytree(cooc_run, other_model)
    manifest = load_manifest(other_model, "counts")
    (other_model / "counts.json").write_text(json.dumps({**manifest, "model": "gpt2"}))

    for number, bad in enumerate((other_sae, other_width, other_model)):
        out = tmp_path / f"a{number}"
        result, run_dir = ablate(
            corpus, out, "--cooccurrence-dir", str(bad), "--exclude-latent-threshold", "0.5"
        )
        assert one_line_error(result, "--cooccurrence-dir"), result.output
        assert run_dir is None  # refused before any run directory is made

    result, ablation = ablate(corpus, tmp_path / "ok")
    assert result.exit_code == 0 and ablation is not None
    for number, bad in enumerate((other_sae, other_width, other_model, rows_only, tmp_path)):
        out = tmp_path / f"p{number}"
        result, run_dir = search(
            out, "--ablation-dir", str(ablation), "--cooccurrence-dir", str(bad)
        )
        assert one_line_error(result, "--cooccurrence-dir"), result.output
        assert run_dir is None

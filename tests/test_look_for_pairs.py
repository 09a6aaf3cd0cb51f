"""The pair-search script end to end on effects from the tiny model."""

import html
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sae_hacking.neuronpedia as explanations
from sae_hacking.gemma_selective_ablate import app as ablate_app
from sae_hacking.io.effects import EffectStore
from sae_hacking.llm.tokenizer import TINY_TEXT
from sae_hacking.look_for_pairs import app

TINY = [
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--ablator-sae-release",
    "tiny",
    "--reader-sae-release",
    "tiny",
    "--reader-sae-id",
    "blocks.2.hook_resid_post/jumprelu/128",
    "--abridge-ablations-to",
    "6",
    "--max-tokens-in-prompt",
    "24",
    "--batch-size",
    "4",
    "--n-prompts",
    "8",
]


def ablate(tmp_path: Path, name: str, ablator_id: str) -> Path:
    data = tmp_path / "corpus.txt"
    data.write_text(TINY_TEXT, encoding="utf-8")
    out = tmp_path / name
    result = CliRunner().invoke(
        ablate_app,
        [
            *TINY,
            "--ablator-sae-id",
            ablator_id,
            "--dataset-path",
            str(data),
            "--output-dir",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = list(out.iterdir())
    return run_dir


@pytest.fixture(scope="module")
def ablation_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ablate(tmp_path_factory.mktemp("abl"), "a", "blocks.1.hook_resid_post/jumprelu/128")


def search(args: list[str], out: Path):
    result = CliRunner().invoke(app, [*args, "--device", "cpu", "--output-dir", str(out)])
    made = list(out.iterdir()) if out.is_dir() else []
    return result, (made[0] if made else None)


def test_report_files_hold_each_pair_once_among_ablated_latents(
    ablation_run: Path, tmp_path: Path
) -> None:
    result, run_dir = search(
        ["--ablation-dir", str(ablation_run), "--cosine-sim-threshold", "-1"], tmp_path / "p"
    )
    assert result.exit_code == 0, result.output
    assert run_dir is not None
    report = json.loads((run_dir / "pairs.json").read_text())
    ablated = set(EffectStore(ablation_run / "effects", "x").latents_R.tolist())
    pairs = [(p["first"]["latent"], p["second"]["latent"]) for p in report["pairs"]]
    n = len(ablated)
    assert len(pairs) == len(set(pairs)) == min(1000, n * (n - 1) // 2) == report["compared"]
    assert all(i < j and i in ablated and j in ablated for i, j in pairs)
    assert all(p["first"]["ablations"] >= 1 for p in report["pairs"])
    cosines = [p["cosine"] for p in report["pairs"]]
    assert cosines == sorted(cosines, reverse=True)
    assert (run_dir / "cosines.png").read_bytes()[:4] == b"\x89PNG"
    assert len((run_dir / "pairs.csv").read_text().splitlines()) == len(pairs) + 1
    page = (run_dir / "pairs.html").read_text()
    assert "<script>" in page and "http" not in page.split("<table")[0].split("<title>")[0]


def test_top_n_says_how_many_pairs_passed_and_how_many_are_shown(
    ablation_run: Path, tmp_path: Path
) -> None:
    result, run_dir = search(
        ["--ablation-dir", str(ablation_run), "--cosine-sim-threshold", "-1", "--top-n", "5"],
        tmp_path / "p",
    )
    assert result.exit_code == 0, result.output
    assert run_dir is not None
    report = json.loads((run_dir / "pairs.json").read_text())
    n = len(EffectStore(ablation_run / "effects", "x").latents_R)
    passed = n * (n - 1) // 2  # every pair has cosine >= -1, and no co-occurrence filter
    assert (report["passed"], report["shown"], len(report["pairs"])) == (passed, 5, 5)
    said = f"{passed} pairs with cosine >= -1, from {n} ablated latents ({passed} pairs compared); the best 5 shown (--top-n 5)."
    assert report["summary"] == said
    assert said in " ".join(result.output.split())
    assert html.escape(said) in (run_dir / "pairs.html").read_text()


def test_just_these_restricts_pairs_to_those_latents(ablation_run: Path, tmp_path: Path) -> None:
    latent = int(EffectStore(ablation_run / "effects", "x").latents_R[3])
    result, run_dir = search(
        [
            "--ablation-dir",
            str(ablation_run),
            "--cosine-sim-threshold",
            "-1",
            "--just-these",
            str(latent),
        ],
        tmp_path / "p",
    )
    assert result.exit_code == 0, result.output
    assert run_dir is not None
    report = json.loads((run_dir / "pairs.json").read_text())
    assert report["pairs"] and all(
        latent in (p["first"]["latent"], p["second"]["latent"]) for p in report["pairs"]
    )


def test_offline_explanations_do_not_fail_the_run(
    ablation_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(explanations, "API", "http://127.0.0.1:9/api/feature")
    texts = explanations.explain(
        "gemma-2-2b/20-gemmascope-res-65k", [1, 2], tmp_path / "cache.json", timeout_s=0.5
    )
    assert texts == {1: None, 2: None}
    result, _ = search(
        ["--ablation-dir", str(ablation_run), "--explanations", "--top-n", "3"], tmp_path / "p"
    )
    assert result.exit_code == 0, result.output


def test_mismatched_stores_and_bad_flags_are_one_line_errors(
    ablation_run: Path, tmp_path: Path
) -> None:
    other = ablate(tmp_path, "b", "blocks.0.hook_resid_post/jumprelu/128")
    not_json, no_pairs, bad_entry, empty = (tmp_path / f"truth{n}.json" for n in range(4))
    not_json.write_text("{absorbed_pairs: [", encoding="utf-8")
    no_pairs.write_text('{"pairs": []}', encoding="utf-8")
    bad_entry.write_text('{"absorbed_pairs": [{"letter_latent": 1}]}', encoding="utf-8")
    empty.write_text('{"absorbed_pairs": []}', encoding="utf-8")
    truths = [not_json, no_pairs, bad_entry, empty, tmp_path / "missing.json"]
    cases = [
        *((["--ablation-dir", str(ablation_run), "--truth", str(t)], "--truth") for t in truths),
        (["--ablation-dir", str(ablation_run), "--ablation-dir", str(other)], "--ablation-dir"),
        (["--ablation-dir", str(ablation_run), "--just-these", "128"], "--just-these"),
        (["--ablation-dir", str(tmp_path)], "--ablation-dir"),
        (
            ["--ablation-dir", str(ablation_run), "--cosine-sim-threshold", "2"],
            "--cosine-sim-threshold",
        ),
    ]
    for number, (args, flag) in enumerate(cases):
        result, run_dir = search(args, tmp_path / f"o{number}")
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and flag in lines[0], result.output
        assert run_dir is None  # refused before a run directory is made

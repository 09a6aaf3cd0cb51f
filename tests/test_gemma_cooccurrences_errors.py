"""Every bad input of gemma_cooccurrences.py and merge_cooccurrences.py is one line naming its flag,
given before any run directory is made."""

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner, Result

from sae_hacking.cooccurrence.run import run
from sae_hacking.gemma_cooccurrences import app
from sae_hacking.io.cooccurrence_results import read_manifest, read_tensors, save_counts
from sae_hacking.llm import random_sae
from sae_hacking.merge_cooccurrences import app as merge_app
from tests.cooccurrence_setup import PROMPTS, config, write_corpus


def saved_sae(directory: Path, d_in: int, hook_name: str) -> Path:
    """A random JumpReLU SAE saved as sae-lens saves one."""
    sae = random_sae("jumprelu", torch.randn(64, d_in), 32, hook_name, torch.Generator())
    sae.save_model(directory)
    return directory


def assert_one_line_error(result: Result, flag: str, problem: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}: "), result.output
    assert problem in lines[0], lines[0]


# (extra flags, with the corpus given unless the case names its own, the flag, part of the problem)
CASES = [
    (["--sae-release", "{narrow_sae}"], "--sae-release", "reads 32 dimensions but 'tiny' is 64"),
    (["--sae-release", "{deep_sae}"], "--sae-release", "which model 'tiny' does not have"),
    (["--sae-id", "blocks.9.hook_resid_post/jumprelu/64"], "--sae-id", "not a hook of model"),
    (["--sae-id", "blocks.9.hook_resid_post"], "--sae-id", "not a tiny SAE id"),
    (
        ["--sae-release", "gemma-scope-2b-pt-res-canonical", "--sae-id", "layer_20/width_65k/x"],
        "--sae-id",
        "not an SAE of release 'gemma-scope-2b-pt-res-canonical'",
    ),
    (
        ["--sae-release", "gemma-scope-2b-pt-rs-canonical"],
        "--sae-release",
        "not a sae-lens release",
    ),
    (["--model", "no-such-model"], "--model", "not a transformer-lens model name"),
    (["--dataset-path", "{tmp}/missing.txt"], "--dataset-path", "is not a file"),
    (["--dataset-path", "{tmp}/corpus.csv"], "--dataset-path", "convert it"),
    (["--resume", "{tmp}/empty"], "--resume", "holds no checkpoint"),
    (["--resume", "{tmp}/nowhere"], "--resume", "holds no checkpoint"),
    (["--rows", "3,600"], "--rows", "latent 600 is out of range; the SAE has 512"),
    (["--rows", "3,x"], "--rows", "not a comma-separated list"),
    (["--rows", "3,3"], "--rows", "distinct"),
    (["--device", "tpu"], "--device", "unknown device 'tpu'"),
    (["--dtype", "float8"], "--dtype", "unknown value 'float8'"),
    (["--count-dtype", "int16"], "--count-dtype", "use one of auto, int32, int64"),
    (["--batch-size", "0"], "--batch-size", "0 must be positive"),
    (["--save-every", "-1"], "--save-every", "-1 must not be negative"),
    (["--output-dir", "{tmp}/corpus.txt"], "--output-dir", "is a file"),
    (
        ["--max-tokens-in-prompt", "512"],
        "--max-tokens-in-prompt",
        "512 exceeds the 256-token context of 'tiny'",
    ),
    (["--max-tokens-in-prompt", "1"], "--max-tokens-in-prompt", "no room for a token after BOS"),
    (["--firing-threshold", "-1"], "--firing-threshold", "-1.0 must not be negative"),
    (
        ["--firing-threshold", "1", "--firing-thresholds-from", "{tmp}/empty"],
        "--firing-threshold",
        "not both",
    ),
    (["--firing-thresholds-from", "{tmp}/nowhere"], "--firing-thresholds-from", "does not exist"),
    (["--firing-thresholds-from", "{tmp}/empty"], "--firing-thresholds-from", "holds no counts"),
    (["--firing-thresholds-from", "{tmp}/corpus.txt"], "--firing-thresholds-from", "as JSON"),
    (
        ["--firing-thresholds-from", "{tmp}/three_bars.json"],
        "--firing-thresholds-from",
        "thresholds for 3 latents, the SAE has 512",
    ),
    (
        ["--firing-thresholds-from", "{tmp}/negative_bar.json"],
        "--firing-thresholds-from",
        "negative or non-finite",
    ),
]


@pytest.mark.parametrize(("extra", "flag", "problem"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_is_one_line_naming_its_flag(
    tmp_path: Path, extra: list[str], flag: str, problem: str
) -> None:
    write_corpus(tmp_path / "corpus.txt", PROMPTS)
    (tmp_path / "corpus.csv").write_text("text\nhello\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "three_bars.json").write_text('{"thresholds": [0.1, 0.2, 0.3]}')
    (tmp_path / "negative_bar.json").write_text('{"thresholds": [0.1, -0.2]}')
    places = {"tmp": str(tmp_path)}
    if "{narrow_sae}" in extra:
        places["narrow_sae"] = str(saved_sae(tmp_path / "narrow", 32, "blocks.3.hook_resid_post"))
    if "{deep_sae}" in extra:
        places["deep_sae"] = str(saved_sae(tmp_path / "deep", 64, "blocks.9.hook_resid_post"))
    args = ["--model", "tiny", "--device", "cpu", "--max-prompts", "2"]
    if "--dataset-path" not in extra:
        args += ["--dataset-path", str(tmp_path / "corpus.txt")]
    if "--output-dir" not in extra:
        args += ["--output-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args + [part.format(**places) for part in extra])
    assert_one_line_error(result, flag, problem)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def finished(tmp_path: Path) -> list[Path]:
    """Two small finished runs of the same model and SAE, and one counting BOS too."""
    corpus = write_corpus(tmp_path / "corpus.txt", PROMPTS[:4])
    return [
        run(config(corpus, tmp_path / "runs", max_prompts=2)),
        run(config(corpus, tmp_path / "runs")),
        run(config(corpus, tmp_path / "runs", max_prompts=2, count_bos=True)),
    ]


def test_merge_bad_inputs_are_one_line_naming_the_argument(
    finished: list[Path], tmp_path: Path
) -> None:
    a, b, with_bos = finished
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    save_counts(unfinished, read_tensors(b), {**read_manifest(b), "complete": False})
    out = ["--output-dir", str(tmp_path / "merged")]
    cases = [
        ([a], "give at least two"),
        ([a, a], "is the same run as"),
        ([a, tmp_path], "has no counts.safetensors"),
        ([a, unfinished], "unfinished run"),
        ([a, with_bos], "count_bos=True"),
    ]
    for runs, problem in cases:
        result = CliRunner().invoke(merge_app, [str(r) for r in runs] + out)
        assert_one_line_error(result, "RUNS", problem)
    assert not (tmp_path / "merged").exists()
    result = CliRunner().invoke(merge_app, [str(a), str(b), "--output-dir", str(a / "counts.json")])
    assert_one_line_error(result, "--output-dir", "is a file")
    result = CliRunner().invoke(merge_app, [str(a), str(b), *out])
    assert result.exit_code == 0, result.output


def test_thresholds_from_a_run_without_histograms_or_of_another_sae_are_refused(
    finished: list[Path], tmp_path: Path
) -> None:
    a = finished[0]
    old = tmp_path / "old"
    old.mkdir()
    tensors = read_tensors(a)
    del tensors["activation_histogram"]
    save_counts(old, tensors, read_manifest(a))
    corpus = ["--dataset-path", str(tmp_path / "corpus.txt"), "--max-prompts", "2"]
    args = ["--model", "tiny", "--device", "cpu", *corpus, "--output-dir", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--firing-thresholds-from", str(old)])
    assert_one_line_error(result, "--firing-thresholds-from", "kept no activation histograms")
    other = ["--sae-id", "blocks.3.hook_resid_post/topk/512", "--firing-thresholds-from", str(a)]
    result = CliRunner().invoke(app, [*args, *other])
    assert_one_line_error(result, "--firing-thresholds-from", "counted sae_id")
    assert not (tmp_path / "out").exists()

"""The first-letter absorption script end to end on the tiny model, and its one-line errors."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_hacking.errors import UserInputError
from sae_hacking.first_letter.vocab import task_words
from sae_hacking.first_letter_absorption import app

FAST = [
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--max-words",
    "300",
    "--probe-epochs",
    "3",
    "--max-k",
    "3",
]


def test_the_tiny_run_writes_every_result_file(tmp_path: Path) -> None:
    ids = "blocks.3.hook_resid_post/jumprelu/512,blocks.3.hook_resid_post/topk/256"
    result = CliRunner().invoke(app, [*FAST, "--sae-ids", ids, "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == sorted(
        [
            "config.json",
            "letters.json",
            "letters.csv",
            "absorption.png",
            "f1_by_k.png",
            "report.html",
            "absorbing_pairs.json",
        ]
    )
    saved = json.loads((run_dir / "letters.json").read_text())
    assert [s["sae_id"] for s in saved["saes"]] == ids.split(",")
    for sae in saved["saes"]:
        assert len(sae["letters"]) == 26
        for letter in sae["letters"]:
            assert 0.0 <= letter["absorption_fraction"] <= 1.0
            assert len(letter["f1_by_k"]) == 3
    assert "absorbed_pairs" in json.loads((run_dir / "absorbing_pairs.json").read_text())
    assert "<table>" in (run_dir / "report.html").read_text()
    assert len((run_dir / "letters.csv").read_text().splitlines()) == 1 + 2 * 26


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--sae-ids",
                "blocks.3.hook_resid_post/jumprelu/64,blocks.2.hook_resid_post/jumprelu/64",
            ],
            "--sae-ids: 'blocks.2.hook_resid_post/jumprelu/64' reads 'blocks.2.hook_resid_post'",
        ),
        (
            ["--projection-threshold", "1.5"],
            "--projection-threshold: 1.5 must be between 0.0 and 1.0",
        ),
        (["--absorber-cosine", "-2"], "--absorber-cosine: -2.0 must be between -1.0 and 1.0"),
        (["--prompt-template", "no word here"], "--prompt-template: 'no word here' must contain"),
    ],
)
def test_bad_input_is_one_line_and_makes_no_run_directory(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, [*FAST, *args, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


class Digits:
    """A tokenizer whose vocabulary has no alphabetic token."""

    def get_vocab(self) -> dict[str, int]:
        return {str(i): i for i in range(10)}

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return "".join(tokens)


def test_a_tokenizer_without_alphabetic_tokens_is_refused() -> None:
    import random

    with pytest.raises(UserInputError, match="0 alphabetic tokens"):
        task_words(Digits(), None, random.Random(0))


def test_gemma_defaults_load_up_to_the_network(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--device", "cpu", "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "--model: cannot load 'google/gemma-2-2b'" in result.output
    assert not (tmp_path / "out").exists()

"""End to end on the planted model: the script recovers the planted absorption and names the absorbers.

The planted SAE (``first_letter.plant``) has one latent per letter and one per word; on a word
planted with strength s the letter latent reads (1 - s) of the letter and the word latent's
decoder carries the rest, so SAEBench's absorption fraction of that word is s when s >= 0.4 (the
projection threshold) and 0 below, and the paper's criterion fires exactly where s = 1 (the
letter latent silent). B: every second word fully absorbed; D: every fourth fully; E: every
second at 0.3 (below the threshold); F: every second at 0.5; G: every word at 0.5. A second,
absorption-free SAE on the same hook runs beside it.
"""

import json

import pytest
from typer.testing import CliRunner

from sae_hacking.first_letter.plant import save_letter_plant
from sae_hacking.first_letter_absorption import app

pytestmark = (
    pytest.mark.slow
)  # builds, saves and evaluates a d_model 848 model: ~1.5 min, one thread

# Per letter, on the mean absorption fraction and full-absorption rate. A partial absorber reads
# low: the probe weighs the part every word's activation shares (constant, "is a word", position)
# like a second bias, and SAEBench's denominator x . u includes it while no latent carries it;
# measured 0.42-0.51 for 0.5-strength words, 0.45 for G's mean.
TOLERANCE = 0.08
HALF_TOLERANCE = 0.1  # per half-absorbed word
LETTERS = "abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, float], dict]:
    root = tmp_path_factory.mktemp("planted")
    plant = save_letter_plant(root)
    args = ["--model", str(plant.model_dir), "--sae-release", str(plant.sae_dir)]
    args += ["--sae-ids", ",".join(plant.sae_ids), "--device", "cpu"]
    args += ["--output-dir", str(root / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "out").iterdir()
    letters = json.loads((run_dir / "letters.json").read_text())
    pairs = json.loads((run_dir / "absorbing_pairs.json").read_text())
    return letters, plant.absorption, {"word_latents": plant.word_latents, "pairs": pairs}


def test_planted_absorption_rates_are_recovered_per_letter(planted_run) -> None:
    letters, absorption, _ = planted_run
    absorbing, oracle = letters["saes"]
    half_words = 0
    for result in absorbing["letters"]:
        fractions = result["word_fractions"]
        if not fractions:
            continue
        strengths = [absorption.get(w.strip(), 0.0) for w in fractions]
        expected = sum(s for s in strengths if s >= 0.4) / len(strengths)
        assert result["absorption_fraction"] == pytest.approx(expected, abs=TOLERANCE), result[
            "letter"
        ]
        for word, fraction in fractions.items():
            if absorption.get(word.strip()) == 0.5:
                half_words += 1
                assert fraction == pytest.approx(0.5, abs=HALF_TOLERANCE), word
        full = sum(s == 1.0 for s in strengths) / len(strengths)
        assert result["paper_absorption_rate"] == pytest.approx(full, abs=1e-9), result["letter"]
        assert result["full_absorption_rate"] == pytest.approx(full, abs=TOLERANCE), result[
            "letter"
        ]
        assert result["main_latents"][0] == LETTERS.index(result["letter"])
    assert half_words >= 5
    assert oracle["mean_absorption_fraction"] < 0.02
    assert all(r["paper_absorption_rate"] == 0 for r in oracle["letters"])


def test_planted_absorbers_are_named_in_the_pairs_file(planted_run) -> None:
    letters, absorption, extra = planted_run
    word_latents = extra["word_latents"]
    named = {
        (p["letter_latent"], p["word_latent"])
        for p in extra["pairs"]["absorbed_pairs"]
        if p["sae_id"] == "absorbing"
    }
    expected = set()
    for result in letters["saes"][0]["letters"]:
        for word in result["word_fractions"]:
            if absorption.get(word.strip(), 0.0) >= 0.4:
                expected.add((LETTERS.index(result["letter"]), word_latents[word.strip()]))
    assert expected and expected <= named
    # anything else pairs a split latent of a letter with its absorber
    assert len(named - expected) <= 4

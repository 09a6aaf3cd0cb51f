"""End to end on the planted model: the script recovers the planted absorption and names the absorbers.

The planted SAE (``llm.planted.absorbing_sae``) has one latent per letter and one per word; on a
word planted with strength s the letter latent reads (1 - s) of the letter and the word latent's
decoder carries the rest, so SAEBench's absorption fraction of that word is s when s >= 0.4 (the
projection threshold) and 0 below, and the paper's criterion fires exactly where s = 1 (the
letter latent silent). Letter B: every second word fully absorbed; D: every fourth fully; E:
every second at 0.3 (below the threshold). A second, absorption-free SAE on the same hook runs
beside it. (Half-strength absorption is covered by the hand-built metric tests: on this planted
SAE the measured fraction of a half-absorbed word came out 0, not 0.5, and is not yet explained.)
"""

import json

import pytest
from typer.testing import CliRunner

from sae_hacking.first_letter_absorption import app
from sae_hacking.llm.planted import PlantedSpec, absorbing_sae, build_planted_model, save_planted

# Per-letter tolerance on the mean absorption fraction: the learned probe is not exactly the
# letter direction, and the planted encoders' word directions are only nearly orthogonal.
pytestmark = pytest.mark.slow  # builds, saves and evaluates a model: ~1-2 min on one thread

TOLERANCE = 0.08
PLAN = {"B": (2, 1.0), "D": (4, 1.0), "E": (2, 0.3)}


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, float], dict]:
    root = tmp_path_factory.mktemp("planted")
    planted = build_planted_model(PlantedSpec(words_per_letter=30, d_model=256))
    absorption: dict[str, float] = {}
    for letter, (every, strength) in PLAN.items():
        words = [
            w
            for w, first in zip(planted.words, planted.word_letters, strict=True)
            if first == letter
        ]
        absorption.update(dict.fromkeys(words[::every], strength))
    save_planted(planted, root / "model")
    absorbing = absorbing_sae(planted, absorption)
    absorbing.sae.save_model(root / "saes" / "absorbing")
    absorbing_sae(planted, {}).sae.save_model(root / "saes" / "oracle")
    args = ["--model", str(root / "model"), "--sae-release", str(root / "saes")]
    args += ["--sae-ids", "absorbing,oracle", "--device", "cpu", "--output-dir", str(root / "out")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (run_dir,) = (root / "out").iterdir()
    letters = json.loads((run_dir / "letters.json").read_text())
    pairs = json.loads((run_dir / "absorbing_pairs.json").read_text())
    return letters, absorption, {"word_latents": absorbing.word_latents, "pairs": pairs}


def test_planted_absorption_rates_are_recovered_per_letter(planted_run) -> None:
    letters, absorption, _ = planted_run
    absorbing, oracle = letters["saes"]
    for result in absorbing["letters"]:
        fractions = result["word_fractions"]
        if not fractions:
            continue
        strengths = [absorption.get(w.strip(), 0.0) for w in fractions]
        expected = sum(s for s in strengths if s >= 0.4) / len(strengths)
        assert result["absorption_fraction"] == pytest.approx(expected, abs=TOLERANCE), result[
            "letter"
        ]
        full = sum(s == 1.0 for s in strengths) / len(strengths)
        assert result["paper_absorption_rate"] == pytest.approx(full, abs=1e-9), result["letter"]
        assert result["full_absorption_rate"] == pytest.approx(full, abs=TOLERANCE), result[
            "letter"
        ]
        # the letter latent ranks first; a few test words can add split latents (D does here)
        assert result["main_latents"][0] == "abcdefghijklmnopqrstuvwxyz".index(result["letter"])
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
                letter = "ABCDEFGHIJKLMNOPQRSTUVWXYZ".index(result["letter"].upper())
                expected.add((letter, word_latents[word.strip()]))
    assert expected and expected <= named
    # the rest pair split latents of D with its absorber, or come from the planted encoders'
    # nearly-but-not-exactly orthogonal word directions
    assert len(named - expected) <= 4

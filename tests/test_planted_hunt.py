"""The hunt end to end on the planted language model, through the three scripts, scored against the
planted absorption: gemma_cooccurrences -> gemma_selective_ablate -> look_for_pairs."""

import html
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.gemma_cooccurrences import app as cooccurrence_app
from sae_hacking.gemma_selective_ablate import app as ablate_app
from sae_hacking.llm.planted import LETTERS, MODEL_CONFIG_FILE, absorbing_sae, build_planted_model
from sae_hacking.llm.planted_hunt import (
    ABLATOR_HOOK,
    PlantedHunt,
    default_absorption,
    hook_activations,
    measured_absorption,
    planted_corpus,
    write_planted_hunt,
    write_trained_planted_hunt,
)
from sae_hacking.look_for_pairs import app as pairs_app
from sae_hacking.score_hunt import app as score_app


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def invoke(app: object, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)  # pyright: ignore[reportArgumentType]
    assert result.exit_code == 0, result.output


def hunt_scripts(
    case: PlantedHunt, root: Path, prompts: int, *ablate_flags: str
) -> tuple[PlantedHunt, Path, Path]:
    """gemma_cooccurrences over the case's corpus, then gemma_selective_ablate over its first
    ``prompts``: the case and both run directories."""
    model = ["--model", str(case.model_dir), "--device", "cpu"]
    corpus = ["--dataset-path", str(case.corpus), "--max-tokens-in-prompt", "32"]
    sae = ["--sae-release", str(case.ablator_dir), "--batch-size", "64"]
    invoke(cooccurrence_app, [*model, *corpus, *sae, "--output-dir", str(root / "cooc")])
    cooc = only_run(root / "cooc")
    saes = ["--ablator-sae-release", str(case.ablator_dir)]
    saes += ["--reader-sae-release", str(case.reader_dir), "--cooccurrence-dir", str(cooc)]
    sizes = ["--n-prompts", str(prompts), "--abridge-ablations-to", "40", "--batch-size", "32"]
    out = root / "ablate"
    invoke(ablate_app, [*model, *corpus, *saes, *sizes, *ablate_flags, "--output-dir", str(out)])
    return case, cooc, only_run(out)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantedHunt, Path, Path]:
    root = tmp_path_factory.mktemp("planted")
    return hunt_scripts(write_planted_hunt(root), root, 600)


def found_pairs(planted: tuple[PlantedHunt, Path, Path], out: Path, *flags: str) -> set:
    _, cooc, ablation = planted
    inputs = ["--ablation-dir", str(ablation), "--cooccurrence-dir", str(cooc), "--device", "cpu"]
    invoke(pairs_app, [*inputs, *flags, "--output-dir", str(out)])
    written = json.loads((only_run(out) / "pairs.json").read_text(encoding="utf-8"))
    return {tuple(sorted((p["first"]["latent"], p["second"]["latent"]))) for p in written["pairs"]}


def precision_recall(found: set, truth: frozenset) -> tuple[float, float]:
    hits = len(found & truth)
    return hits / max(len(found), 1), hits / len(truth)


def test_the_ranked_hunt_finds_the_planted_pairs_with_p_and_r_at_least_0_9(
    planted: tuple[PlantedHunt, Path, Path], tmp_path: Path
) -> None:
    truth = frozenset(tuple(sorted(p)) for p in planted[0].truth)
    found = found_pairs(planted, tmp_path, "--scoring", "ranked")
    precision, recall = precision_recall(found, truth)
    assert precision >= 0.9
    assert recall >= 0.9


def test_ranked_scoring_refuses_an_unreadable_decoder_in_one_line_and_leaves_no_run(
    planted: tuple[PlantedHunt, Path, Path], tmp_path: Path
) -> None:
    # The ranked score needs the ablator's decoder (its floor and sibling rule read it).
    case, cooc, ablation = planted
    weights = case.ablator_dir / "sae_weights.safetensors"
    saved = weights.read_bytes()
    inputs = ["--ablation-dir", str(ablation), "--cooccurrence-dir", str(cooc), "--device", "cpu"]
    try:
        weights.write_text("not safetensors", encoding="utf-8")
        result = CliRunner().invoke(
            pairs_app, [*inputs, "--scoring", "ranked", "--output-dir", str(tmp_path)]
        )
    finally:
        weights.write_bytes(saved)
    assert result.exit_code != 0
    assert "cannot read the ablator's decoder" in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())


def test_never_co_occurring_and_similar_alone_also_calls_siblings(
    planted: tuple[PlantedHunt, Path, Path], tmp_path: Path
) -> None:
    # Two words that absorb one letter never co-occur and both carry the letter: the thresholded
    # search reports them too, and loses precision.
    truth = frozenset(tuple(sorted(p)) for p in planted[0].truth)
    found = found_pairs(
        planted, tmp_path, "--cooccurrence-threshold", "0", "--cosine-sim-threshold", "0.5"
    )
    precision, recall = precision_recall(found, truth)
    assert recall >= 0.9
    assert precision < 0.8


def test_the_report_shows_both_latents_contexts_and_marks_pairs_against_the_truth(
    planted: tuple[PlantedHunt, Path, Path], tmp_path: Path
) -> None:
    case, cooc, ablation = planted
    truth_file = case.model_dir.parent / "truth.json"
    inputs = ["--ablation-dir", str(ablation), "--cooccurrence-dir", str(cooc), "--device", "cpu"]
    # Thresholds also report siblings, so the page holds true and false pairs.
    result = CliRunner().invoke(
        pairs_app, [*inputs, "--truth", str(truth_file), "--output-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path)
    written = json.loads((run_dir / "pairs.json").read_text(encoding="utf-8"))
    truth = frozenset(tuple(sorted(p)) for p in case.truth)
    found = {tuple(sorted((p["first"]["latent"], p["second"]["latent"]))) for p in written["pairs"]}
    precision, recall = precision_recall(found, truth)
    assert (written["truth"]["precision"], written["truth"]["recall"]) == (precision, recall)
    assert f"(precision {precision:.2f})" in " ".join(result.output.split())
    marks = {
        tuple(sorted((p["first"]["latent"], p["second"]["latent"]))): p["true_pair"]
        for p in written["pairs"]
    }
    assert marks == {pair: pair in truth for pair in found}
    assert True in marks.values() and False in marks.values()

    words = json.loads((case.model_dir / "planted.json").read_text(encoding="utf-8"))["words"]
    absorbed = {words[w - len(LETTERS)] for _, w in truth}
    row = next(p for p in written["pairs"] if p["true_pair"])
    letter_side, word_side = sorted((row["first"], row["second"]), key=lambda s: s["latent"])
    word = words[word_side["latent"] - len(LETTERS)]
    letter = LETTERS[letter_side["latent"]]
    focus = {
        side["latent"]: [c["tokens"][c["focus"]].strip() for c in side["contexts"]]
        for side in (letter_side, word_side)
    }
    # The word latent fires on its word; the letter latent on other words of its letter, never on
    # the words that absorb it.
    assert focus[word_side["latent"]] == [word] * 5
    assert len(focus[letter_side["latent"]]) == 5
    assert all(w[0].upper() == letter and w not in absorbed for w in focus[letter_side["latent"]])
    assert row["decoder_cosine"] > 0 and row["expected_cooccurrence"] > row["cooccurrence"]
    assert word_side["moves"] and letter_side["firing_rate"] > word_side["firing_rate"] > 0

    page = (run_dir / "pairs.html").read_text(encoding="utf-8")
    for shown in (word, *focus[letter_side["latent"]]):
        assert f"<mark> {html.escape(shown)}</mark>" in page
    assert page.count('<tr class="true">') == sum(marks.values())
    assert page.count('<tr class="false">') == len(marks) - sum(marks.values())
    assert html.escape(f"(precision {precision:.2f})") in page


def test_score_hunt_puts_the_planted_pairs_at_the_top_of_the_ranked_hunt(
    planted: tuple[PlantedHunt, Path, Path], tmp_path: Path
) -> None:
    case, _, _ = planted
    found_pairs(planted, tmp_path / "pairs", "--scoring", "ranked")
    truth_file = case.corpus.parent / "truth.json"
    n = len(case.truth)
    out = tmp_path / "score"
    inputs = ["--pairs-dir", str(only_run(tmp_path / "pairs")), "--truth", str(truth_file)]
    invoke(score_app, [*inputs, "--top-n", f"10,{n},100", "--output-dir", str(out)])
    written = json.loads((only_run(out) / "score.json").read_text(encoding="utf-8"))
    at = {row["n"]: row for row in written["at_n"]}
    assert written["truth_pairs"] == n
    assert at[10]["precision"] == 1.0  # the ten best pairs are all planted
    assert at[n]["recall"] >= 0.9
    assert at[n]["precision"] >= 0.9


def test_effects_in_the_reader_hooks_activations_find_the_planted_pairs(
    planted: tuple[PlantedHunt, Path, Path], tmp_path: Path
) -> None:
    case, cooc, _ = planted
    model = ["--model", str(case.model_dir), "--device", "cpu"]
    corpus = ["--dataset-path", str(case.corpus), "--max-tokens-in-prompt", "32"]
    saes = ["--ablator-sae-release", str(case.ablator_dir)]
    saes += ["--reader-sae-release", str(case.reader_dir), "--cooccurrence-dir", str(cooc)]
    sizes = ["--n-prompts", "600", "--abridge-ablations-to", "40", "--batch-size", "32"]
    space = ["--effect-space", "activations"]
    invoke(
        ablate_app, [*model, *corpus, *saes, *sizes, *space, "--output-dir", str(tmp_path / "a")]
    )
    ablation = only_run(tmp_path / "a")
    manifest = json.loads((ablation / "effects" / "effects.json").read_text(encoding="utf-8"))
    assert manifest["reader"]["effect_space"] == "activations"
    assert manifest["reader"]["width"] == case_d_model(case)
    found = found_pairs((case, cooc, ablation), tmp_path / "p", "--scoring", "ranked")
    written = json.loads((only_run(tmp_path / "p") / "pairs.json").read_text(encoding="utf-8"))
    assert written["reader"]["effect_space"] == "activations"  # look_for_pairs says what it read
    precision, recall = precision_recall(found, frozenset(tuple(sorted(p)) for p in case.truth))
    assert precision >= 0.9
    assert recall >= 0.9


def case_d_model(case: PlantedHunt) -> int:
    config = json.loads((case.model_dir / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    return int(config["d_model"])


def test_absorption_measured_from_activations_recovers_the_hand_built_pairs() -> None:
    # The trained case's truth is read off the ablator's activations; on the hand-built ablator
    # that reading must give back exactly the planted pairs.
    planted = build_planted_model()
    absorption = default_absorption(planted)
    ablator = absorbing_sae(planted, absorption, hook_name=ABLATOR_HOOK)
    acts = hook_activations(planted, planted_corpus(planted, 200, 16))
    measured = measured_absorption(planted, ablator.sae, acts)
    found = {(p["letter_latent"], p["word_latent"]) for p in measured}
    assert found == {(letter, word) for letter, word, _ in ablator.absorbed_pairs}
    assert all(p["strength"] == 1.0 for p in measured)


@pytest.mark.slow
def test_a_trained_ablator_absorbs_the_frequent_words_it_is_scored_against(
    tmp_path: Path,
) -> None:
    # The trained case's truth (benchmarks/hunt_planted.py --trained): measured, 55 distinct
    # (letter latent, word latent) pairs over 67 words, the most frequent words among them.
    case = write_trained_planted_hunt(tmp_path)
    absorbed = json.loads((tmp_path / "truth.json").read_text(encoding="utf-8"))["absorbed_pairs"]
    assert len(case.truth) >= 30
    assert all(p["strength"] >= 0.5 and p["letter_latent"] != p["word_latent"] for p in absorbed)
    words = planted_corpus_counts(case.corpus)
    absorbed_words = {p["word"] for p in absorbed}
    frequent = sorted(words, key=words.__getitem__, reverse=True)[:10]
    assert sum(w in absorbed_words for w in frequent) >= 7  # frequent words absorb their letter
    for directory in (case.ablator_dir, case.reader_dir):
        assert (directory / "cfg.json").is_file()


def planted_corpus_counts(corpus: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in corpus.read_text(encoding="utf-8").splitlines():
        for word in line.split()[:-4]:  # the template's four words end every line
            counts[word] = counts.get(word, 0) + 1
    return counts


def test_a_dead_letter_latent_is_in_no_measured_pair() -> None:
    # A letter latent that never fires absorbs nothing a hunt could see: the truth takes the live
    # latent nearest the letter instead, and the other letters' pairs stay as planted.
    planted = build_planted_model()
    ablator = absorbing_sae(planted, default_absorption(planted), hook_name=ABLATOR_HOOK)
    with torch.no_grad():
        ablator.sae.threshold[0] = 1e9  # letter A's latent
    acts = hook_activations(planted, planted_corpus(planted, 200, 16))
    measured = {
        (p["letter_latent"], p["word_latent"])
        for p in measured_absorption(planted, ablator.sae, acts)
    }
    planted_pairs = {(letter, word) for letter, word, _ in ablator.absorbed_pairs}
    assert all(0 not in pair for pair in measured)
    assert {p for p in measured if p[0] != 0} >= {p for p in planted_pairs if p[0] != 0}
    assert {p for p in planted_pairs if p[0] == 0}  # letter A had absorbers


@pytest.mark.slow
def test_the_ranked_hunt_on_the_trained_planted_case_reaches_its_measured_p_and_r(
    tmp_path: Path,
) -> None:
    # benchmarks/hunt_planted.py --trained --effect-space activations, measured: 40 pairs, ranked
    # P 0.59, R 0.75 with the generality rule (0.38 / 0.57 without it; decoder cosine >= 0.45:
    # 0.75 / 0.53). Below the 0.9 target (README).
    truth, found = run_trained_hunt(tmp_path, prompts=3000, steps=1500, ablated=3000)
    precision, recall = precision_recall(found, truth)
    assert len(truth) >= 30
    assert precision >= 0.45
    assert recall >= 0.6


def run_trained_hunt(root: Path, prompts: int, steps: int, ablated: int) -> tuple[frozenset, set]:
    """The trained case through the three scripts (co-occurrence over ``prompts``, effects in the
    reader hook's activations over the first ``ablated``): its truth and the ranked hunt's pairs."""
    case = write_trained_planted_hunt(root, prompts=prompts, steps=steps)
    runs = hunt_scripts(case, root, ablated, "--effect-space", "activations")
    found = found_pairs(runs, root / "pairs", "--scoring", "ranked")
    return frozenset(tuple(sorted(p)) for p in case.truth), found

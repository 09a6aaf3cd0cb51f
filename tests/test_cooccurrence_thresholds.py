"""gemma_cooccurrences.py counting above firing thresholds: a global bar, per-latent bars fitted
(Otsu) from an earlier run's activation histograms, or read from a thresholds file."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import typer
from typer.testing import CliRunner, Result

from sae_hacking.cooccurrence.run import run
from sae_hacking.core.thresholds import histogram_otsu_thresholds
from sae_hacking.core.triangle import triangle_row
from sae_hacking.errors import UserInputError
from sae_hacking.gemma_cooccurrences import app as cooccurrence_app
from sae_hacking.gemma_selective_ablate import app as ablate_app
from sae_hacking.io.cooccurrence_results import (
    load_cooccurrence,
    merge_results,
    read_tensors,
    save_counts,
)
from sae_hacking.io.cooccurrence_results import read_manifest as read_counts_manifest
from sae_hacking.io.effects import read_manifest
from sae_hacking.io.firing_thresholds import THRESHOLDS_FILE
from sae_hacking.llm.planted import (
    LETTERS,
    PlantedSpec,
    absorbing_sae,
    build_planted_model,
    save_planted,
)
from sae_hacking.llm.planted_hunt import letter_reader_sae
from sae_hacking.look_for_pairs import app as pairs_app
from tests.cooccurrence_setup import (
    MAX_TOKENS,
    PROMPTS,
    Crash,
    assert_same_results,
    become_rank,
    config,
    counting_dies_at,
    counts_of,
    free_port,
    only_run_dir,
    reference_counts,
    reference_token_bitmap,
    write_corpus,
)

WIDTH = 512


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt", PROMPTS)


@pytest.fixture(scope="module")
def plain(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run counting activation > 0, whose histograms the thresholded runs fit their bars to."""
    return run(config(corpus, tmp_path_factory.mktemp("plain")))


def assert_matches_reference(run_dir: Path, thresholds: list[float]) -> None:
    contexts: dict[int, list] = {}
    histogram: dict[tuple[int, int], int] = {}
    pairs, firing, tokens = reference_counts(PROMPTS, MAX_TOKENS, contexts, thresholds, histogram)
    results = load_cooccurrence(run_dir)
    assert results.tokens == tokens and results.firing_E.tolist() == firing
    i, j = torch.triu_indices(WIDTH, WIDTH, 1)
    counts = counts_of(run_dir)["pair_counts"]
    assert {(int(a), int(b)): int(c) for a, b, c in zip(i, j, counts, strict=True) if c} == pairs
    got = results.activation_histogram()
    assert got is not None
    nonzero = got.nonzero().tolist()
    assert {(e, b): int(got[e, b]) for e, b in nonzero} == histogram
    # Only firings above the bars mark a token.
    bits = results.token_bits()
    assert bits is not None and torch.equal(bits, reference_token_bitmap(contexts, WIDTH))
    top = results.top_tensors()
    for e in range(WIDTH):
        best = sorted(contexts.get(e, []), key=lambda c: (-c[0], c[1], c[2]))[:5]
        kept = [s for s in range(5) if int(top.prompts_EK[e, s]) >= 0]
        assert [(c[1], c[2]) for c in best] == [
            (int(top.prompts_EK[e, s]), int(top.positions_EK[e, s])) for s in kept
        ]


def test_fitted_thresholds_count_what_a_per_token_reference_counts(
    plain: Path, corpus: Path, tmp_path: Path
) -> None:
    run_dir = run(config(corpus, tmp_path / "out", firing_thresholds_from=plain))
    saved = json.loads((run_dir / THRESHOLDS_FILE).read_text())
    histogram = load_cooccurrence(plain).activation_histogram()
    assert histogram is not None
    assert saved["thresholds"] == histogram_otsu_thresholds(histogram).tolist()
    assert saved["rule"]["rule"] == "per_latent" and saved["rule"]["method"] == "otsu"
    manifest = load_cooccurrence(run_dir).manifest
    assert manifest["firing"] == saved["rule"]
    recorded = json.loads((run_dir / "config.json").read_text())["config"]
    assert recorded["firing_thresholds_from"] == str(plain)
    assert_matches_reference(run_dir, saved["thresholds"])
    # The bars drop weak firings; the histograms still hold every non-zero activation.
    assert load_cooccurrence(run_dir).firing_E.sum() < load_cooccurrence(plain).firing_E.sum()
    assert torch.equal(counts_of(run_dir)["activation_histogram"], histogram)


def test_a_thresholds_file_and_a_global_threshold_count_what_the_reference_counts(
    plain: Path, corpus: Path, tmp_path: Path
) -> None:
    bars = (torch.rand(WIDTH) * 2).tolist()
    bars_file = tmp_path / "bars.json"
    bars_file.write_text(json.dumps({"thresholds": bars}))
    from_file = run(config(corpus, tmp_path / "a", firing_thresholds_from=bars_file))
    assert load_cooccurrence(from_file).manifest["firing"]["method"] == "file"
    assert_matches_reference(from_file, torch.tensor(bars).tolist())
    above = run(config(corpus, tmp_path / "b", firing_threshold=0.7))
    assert load_cooccurrence(above).manifest["firing"] == {"rule": "above", "threshold": 0.7}
    assert_matches_reference(above, [0.7] * WIDTH)


def test_a_crashed_thresholded_run_resumes_to_the_uninterrupted_counts(
    plain: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"batch_size": 2, "firing_thresholds_from": plain}
    whole = counts_of(run(config(corpus, tmp_path / "whole", **settings)))
    with counting_dies_at(monkeypatch, 6), pytest.raises(Crash):
        run(config(corpus, tmp_path / "broken", save_every=2, **settings))
    crashed = only_run_dir(tmp_path / "broken")
    # The bars come from the run's own file on resume, not fitted again from the source.
    (plain / "counts.safetensors").rename(plain / "moved.safetensors")
    try:
        resumed = run(config(corpus, tmp_path / "unused", resume=crashed, **settings))
    finally:
        (plain / "moved.safetensors").rename(plain / "counts.safetensors")
    assert_same_results(counts_of(resumed), whole)


def test_merged_thresholded_halves_equal_one_run_and_other_bars_are_refused(
    plain: Path, tmp_path: Path
) -> None:
    first_half = write_corpus(tmp_path / "first.txt", PROMPTS[:9])
    second_half = write_corpus(tmp_path / "second.txt", PROMPTS[9:])
    whole_corpus = write_corpus(tmp_path / "whole.txt", PROMPTS)
    fitted = {"batch_size": 1, "firing_thresholds_from": plain}
    whole = run(config(whole_corpus, tmp_path / "w", **fitted))
    parts = [run(config(part, tmp_path / "p", **fitted)) for part in (first_half, second_half)]
    merge_results(parts, tmp_path / "merged")
    assert_same_results(counts_of(tmp_path / "merged"), counts_of(whole))
    assert (tmp_path / "merged" / THRESHOLDS_FILE).read_text() == (
        whole / THRESHOLDS_FILE
    ).read_text()
    above = run(config(second_half, tmp_path / "g", batch_size=1, firing_threshold=0.5))
    for other in (above, run(config(second_half, tmp_path / "z", batch_size=1))):
        with pytest.raises(UserInputError, match="merge runs counted at the same thresholds"):
            merge_results([parts[0], other], tmp_path / "refused")


@dataclass(frozen=True)
class TopKCase:
    """The planted model and a top-k copy of its absorbing SAE, a reader SAE, a corpus, the
    absorbed (letter, word) latent pairs and the other (letter, word) pairs."""

    model: Path
    sae: Path
    reader: Path
    corpus: Path
    absorbed: list[tuple[int, int]]
    others: list[tuple[int, int]]

    def flags(self) -> list[str]:
        return ["--model", str(self.model), "--device", "cpu", "--dataset-path", str(self.corpus)]


def absorbed_topk_case(root: Path) -> TopKCase:
    """The first word of each of five letters absorbs 40% of its letter in a k = 2 top-k SAE:
    there the letter latent fires at 0.6 of its strength, still in the top 2."""
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig

    planted = build_planted_model(PlantedSpec(words_per_letter=3))
    firsts = {letter: planted.words[3 * i] for i, letter in enumerate(LETTERS[:5])}
    absorbing = absorbing_sae(planted, dict.fromkeys(firsts.values(), 0.4))
    jump = absorbing.sae
    metadata = SAEMetadata(hook_name=jump.cfg.metadata.hook_name, model_name="planted")
    topk = TopKSAE(TopKSAEConfig(d_in=jump.cfg.d_in, d_sae=jump.cfg.d_sae, k=2, metadata=metadata))
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            getattr(topk, name).copy_(getattr(jump, name))
    save_planted(planted, root / "model")
    topk.save_model(root / "sae")
    letter_reader_sae(planted).save_model(root / "reader")
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(len(planted.words), (60, 10), generator=generator)
    lines = [" ".join(planted.words[i] for i in row.tolist()) for row in picks]
    others = [
        (absorbing.letter_latents[w[0].upper()], absorbing.word_latents[w])
        for w in planted.words
        if w not in firsts.values()
    ]
    return TopKCase(
        root / "model",
        root / "sae",
        root / "reader",
        write_corpus(root / "corpus.txt", lines),
        [(letter, word) for letter, word, _ in absorbing.absorbed_pairs],
        others,
    )


def invoke(app: typer.Typer, args: list[str]) -> Result:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def topk_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[TopKCase, Path, Path]:
    """The case, a co-occurrence run counting activation > 0, and one above bars fitted to it."""
    root = tmp_path_factory.mktemp("topk")
    case = absorbed_topk_case(root)
    flags = [*case.flags(), "--sae-release", str(case.sae), "--max-tokens-in-prompt", "16"]
    invoke(cooccurrence_app, [*flags, "--output-dir", str(root / "plain")])
    plain = only_run_dir(root / "plain")
    fitted_flags = [*flags, "--firing-thresholds-from", str(plain)]
    invoke(cooccurrence_app, [*fitted_flags, "--output-dir", str(root / "fitted")])
    return case, plain, only_run_dir(root / "fitted")


def test_on_a_top_k_sae_fitted_thresholds_stop_weak_firings_making_absorbed_pairs_cooccur(
    topk_runs: tuple[TopKCase, Path, Path],
) -> None:
    case, plain_dir, fitted_dir = topk_runs
    plain, fitted = load_cooccurrence(plain_dir), load_cooccurrence(fitted_dir)
    first, second = (torch.tensor(side) for side in zip(*case.absorbed, strict=True))
    # The letter latent fires weakly with its absorbing word: without bars they co-occur...
    assert bool((plain.pair_counts(first, second) > 0).all())
    # ...with bars fitted to its activations (strong alone, weak when absorbed) they never do,
    assert int(fitted.pair_counts(first, second).sum()) == 0
    # while each letter still co-occurs with its other words, where it fires fully.
    first, second = (torch.tensor(side) for side in zip(*case.others, strict=True))
    assert bool((fitted.pair_counts(first, second) > 0).all())
    assert torch.equal(fitted.pair_counts(first, second), plain.pair_counts(first, second))


def test_ablation_takes_the_cooccurrence_runs_bars_and_the_pair_search_refuses_other_bars(
    topk_runs: tuple[TopKCase, Path, Path], tmp_path: Path
) -> None:
    case, plain, fitted = topk_runs
    flags = [*case.flags(), "--max-tokens-in-prompt", "16", "--n-prompts", "20"]
    flags += ["--ablator-sae-release", str(case.sae), "--reader-sae-release", str(case.reader)]
    flags += ["--abridge-ablations-to", "4", "--batch-size", "10"]
    runs = {}
    for name, cooccurrence in (("fitted", fitted), ("none", None)):
        given = [] if cooccurrence is None else ["--cooccurrence-dir", str(cooccurrence)]
        invoke(ablate_app, [*flags, *given, "--output-dir", str(tmp_path / name)])
        runs[name] = only_run_dir(tmp_path / name)
    ablator = read_manifest(runs["fitted"] / "effects", "--ablation-dir")["ablator"]
    assert ablator["firing"] == load_cooccurrence(fitted).manifest["firing"]
    search = ["--device", "cpu", "--output-dir", str(tmp_path / "pairs")]
    invoke(
        pairs_app,
        ["--ablation-dir", str(runs["fitted"]), "--cooccurrence-dir", str(fitted), *search],
    )
    for ablation, cooccurrence in ((runs["fitted"], plain), (runs["none"], fitted)):
        inputs = ["--ablation-dir", str(ablation), "--cooccurrence-dir", str(cooccurrence)]
        result = CliRunner().invoke(pairs_app, [*inputs, *search])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        assert (
            lines[0].startswith("error: --cooccurrence-dir: ") and "counted firing as" in lines[0]
        )


def test_histograms_holding_fewer_activations_than_firings_are_refused(
    plain: Path, tmp_path: Path
) -> None:
    tensors = read_tensors(plain)
    tensors["activation_histogram"][3] = 0
    save_counts(tmp_path, tensors, read_counts_manifest(plain))
    with pytest.raises(UserInputError, match=r"latent 3 fired on .* its activation histogram"):
        load_cooccurrence(tmp_path)


def _rank_main(rank: int, port: int, corpus: Path, bars: Path, out: Path) -> None:
    become_rank(rank, port)
    run(config(corpus, out, batch_size=1, save_every=3, firing_thresholds_from=bars))


def test_two_gloo_ranks_count_above_bars_the_same_as_one_process(
    corpus: Path, tmp_path: Path
) -> None:
    bars = tmp_path / "bars.json"
    bars.write_text(json.dumps({"thresholds": (torch.rand(WIDTH) * 2).tolist()}))
    single = counts_of(
        run(config(corpus, tmp_path / "single", batch_size=1, firing_thresholds_from=bars))
    )
    mp.start_processes(
        _rank_main,
        args=(free_port(), corpus, bars, tmp_path / "ranks"),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    assert_same_results(counts_of(only_run_dir(tmp_path / "ranks")), single)


def test_rows_counted_above_bars_are_rows_of_the_thresholded_triangle(
    corpus: Path, tmp_path: Path
) -> None:
    full = counts_of(run(config(corpus, tmp_path / "a", max_prompts=8, firing_threshold=0.5)))
    rows = run(config(corpus, tmp_path / "b", max_prompts=8, rows=(5, 100), firing_threshold=0.5))
    for r, latent in enumerate((5, 100)):
        expected = triangle_row(full["pair_counts"], latent, WIDTH).long()
        expected[latent] = full["firing_counts"][latent]
        assert torch.equal(counts_of(rows)["row_counts"][r].long(), expected)
    assert int(full["pair_counts"].sum()) > 0


def test_a_run_whose_bars_file_was_changed_is_refused_by_a_merge(
    plain: Path, corpus: Path, tmp_path: Path
) -> None:
    run_dir = run(config(corpus, tmp_path / "out", max_prompts=4, firing_thresholds_from=plain))
    other = run(config(corpus, tmp_path / "out", max_prompts=4, firing_thresholds_from=plain))
    saved = json.loads((run_dir / THRESHOLDS_FILE).read_text())
    saved["thresholds"][0] += 1.0
    (run_dir / THRESHOLDS_FILE).write_text(json.dumps(saved))
    with pytest.raises(UserInputError, match="is not the thresholds its counts were made with"):
        merge_results([other, run_dir], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()

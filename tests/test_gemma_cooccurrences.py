import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from typer.testing import CliRunner

from sae_hacking.cooccurrence.run import run
from sae_hacking.core.triangle import triangle_row, triangle_size
from sae_hacking.errors import UserInputError
from sae_hacking.gemma_cooccurrences import app
from sae_hacking.io.bundle import load_manifest
from sae_hacking.io.cooccurrence_results import (
    load_cooccurrence,
    merge_results,
    read_manifest,
    read_tensors,
    read_vocabulary,
    save_counts,
)
from sae_hacking.llm import tiny_tokenizer
from tests.cooccurrence_setup import (
    PROMPTS,
    assert_same_results,
    become_rank,
    config,
    counts_of,
    free_port,
    reference_counts,
    reference_token_bitmap,
    write_corpus,
)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus.txt", PROMPTS)


def test_counts_match_a_per_token_reference_on_the_tiny_model(corpus: Path, tmp_path: Path) -> None:
    run_dir = run(config(corpus, tmp_path / "out"))
    results = load_cooccurrence(run_dir)
    contexts: dict[int, list] = {}
    pairs, firing, tokens = reference_counts(PROMPTS, 12, contexts)
    assert results.tokens == tokens and results.prompts == len(PROMPTS)
    assert results.firing_E.tolist() == firing
    i, j = torch.triu_indices(512, 512, 1)
    counts = counts_of(run_dir)["pair_counts"]
    got = {(int(a), int(b)): int(c) for a, b, c in zip(i, j, counts, strict=True) if c}
    assert got == pairs
    bits = results.token_bits()
    assert bits is not None and torch.equal(bits, reference_token_bitmap(contexts, 512))
    assert json.loads((run_dir / "config.json").read_text())["config"]["model"] == "tiny"
    top = results.top_tensors()
    for e in range(512):
        best = sorted(contexts.get(e, []), key=lambda c: (-c[0], c[1], c[2]))[:5]
        kept = [s for s in range(5) if int(top.prompts_EK[e, s]) >= 0]
        assert [(c[1], c[2], c[3]) for c in best] == [
            (int(top.prompts_EK[e, s]), int(top.positions_EK[e, s]), top.tokens_EKZ[e, s].tolist())
            for s in kept
        ]
        assert torch.allclose(top.activations_EK[e, kept], torch.tensor([c[0] for c in best]))


def test_prompt_length_defaults_to_the_model_context_on_long_documents(tmp_path: Path) -> None:
    """The tiny model's context is 256 tokens; the default of 1024 used to run past it and crash
    inside transformer-lens's rotary embedding at the first long document."""
    long_document = " ".join(PROMPTS * 6)
    corpus = tmp_path / "long.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"text": t}) for t in ["A short one.", long_document]) + "\n"
    )
    out = tmp_path / "out"
    args = ["--model", "tiny", "--device", "cpu", "--dataset-path", str(corpus)]
    result = CliRunner().invoke(app, [*args, "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    assert (
        json.loads((run_dir / "config.json").read_text())["config"]["max_tokens_in_prompt"] == 256
    )
    results = load_cooccurrence(run_dir)
    assert results.prompts == 2 and results.manifest["max_tokens_in_prompt"] == 256
    # Every counted token: the short prompt's and 255 of the long one's (BOS is not counted).
    assert results.tokens == len(tiny_tokenizer()("A short one.")["input_ids"]) - 1 + 255


def test_loader_gives_pair_counts_and_ever_cooccurred_bits(corpus: Path, tmp_path: Path) -> None:
    run_dir = run(config(corpus, tmp_path / "out", max_prompts=8))
    results = load_cooccurrence(run_dir)
    counts = counts_of(run_dir)["pair_counts"]
    first, second = torch.randint(0, 512, (2, 2000))
    keep = first != second
    first, second = first[keep], second[keep]
    got = results.pair_counts(second, first)  # either order
    i, j = torch.minimum(first, second), torch.maximum(first, second)
    expected = counts[i * 512 - i * (i + 1) // 2 + j - i - 1]
    assert torch.equal(got, expected.long())
    assert torch.equal(results.ever_cooccurred(first, second), expected > 0)
    assert results.prompts == 8 and load_manifest(run_dir, "ever_cooccurred")["complete"]


def test_rows_mode_counts_rows_of_the_full_triangle(corpus: Path, tmp_path: Path) -> None:
    full = counts_of(run(config(corpus, tmp_path / "a", max_prompts=8)))
    rows = counts_of(run(config(corpus, tmp_path / "b", max_prompts=8, rows=(5, 100))))
    for r, latent in enumerate((5, 100)):
        expected = triangle_row(full["pair_counts"], latent, 512).long()
        expected[latent] = full["firing_counts"][latent]
        assert torch.equal(rows["row_counts"][r].long(), expected)


def test_resume_with_other_flags_is_refused(corpus: Path, tmp_path: Path) -> None:
    run_dir = run(config(corpus, tmp_path / "out", max_prompts=4))
    with pytest.raises(UserInputError, match="already complete"):
        run(config(corpus, tmp_path / "x", max_prompts=4, resume=run_dir))


def test_merge_of_two_halves_equals_one_run_over_both(corpus: Path, tmp_path: Path) -> None:
    first_half, second_half = tmp_path / "first.txt", tmp_path / "second.txt"
    first_half.write_text("\n".join(PROMPTS[:9]) + "\n")
    second_half.write_text("\n".join(PROMPTS[9:]) + "\n")
    whole = run(config(corpus, tmp_path / "w", batch_size=1))
    parts = [run(config(part, tmp_path / "p", batch_size=1)) for part in (first_half, second_half)]
    merge_results(parts, tmp_path / "merged")
    # Prompts of merged runs are numbered as if the corpora were one after another.
    assert_same_results(counts_of(tmp_path / "merged"), counts_of(whole))
    vocabulary = read_vocabulary(tmp_path / "merged")
    assert vocabulary == read_vocabulary(whole) and len(vocabulary) > 100
    assert load_cooccurrence(tmp_path / "merged").tokens == load_cooccurrence(whole).tokens


def _rank_main(rank: int, port: int, corpus: Path, out: Path) -> None:
    become_rank(rank, port)
    run(config(corpus, out, batch_size=1, save_every=3))


def test_two_gloo_ranks_count_the_same_as_one_process(corpus: Path, tmp_path: Path) -> None:
    single = counts_of(run(config(corpus, tmp_path / "single", batch_size=1)))
    # fork: the ranks inherit the imported modules instead of importing them again (seconds each).
    mp.start_processes(
        _rank_main,
        args=(free_port(), corpus, tmp_path / "ranks"),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    (run_dir,) = (tmp_path / "ranks").iterdir()
    assert_same_results(counts_of(run_dir), single)
    manifest = load_manifest(run_dir, "counts")
    assert manifest["world"] == 2 and [p["prompts"] for p in manifest["progress"]] == [9, 9]


def test_triangle_size_of_the_tiny_sae_is_what_the_manifest_says(
    corpus: Path, tmp_path: Path
) -> None:
    run_dir = run(config(corpus, tmp_path / "out", max_prompts=2))
    assert load_manifest(run_dir, "counts")["tensors"]["pair_counts"]["shape"] == [
        triangle_size(512)
    ]


def test_a_run_from_before_token_bitmaps_has_unknown_distinct_tokens(
    corpus: Path, tmp_path: Path
) -> None:
    run_dir = run(config(corpus, tmp_path / "out", max_prompts=2))
    distinct = load_cooccurrence(run_dir).distinct_tokens()
    fired = load_cooccurrence(run_dir).firing_E > 0
    assert distinct is not None and bool((distinct[fired] >= 1).all())
    assert bool((distinct[~fired] == 0).all())
    old = tmp_path / "old"
    old.mkdir()
    tensors = read_tensors(run_dir)
    del tensors["token_bitmap"]
    save_counts(old, tensors, read_manifest(run_dir))
    assert load_cooccurrence(old).distinct_tokens() is None

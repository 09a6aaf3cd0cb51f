"""The selective-ablation script end to end on the tiny model: outputs, resume, bad input."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from typer.testing import CliRunner

import sae_hacking.ablation.run as ablation_run
from sae_hacking.ablation.config import SelectiveAblationConfig, default_saes
from sae_hacking.gemma_selective_ablate import app
from sae_hacking.io.effects import EffectStore
from sae_hacking.llm.tokenizer import TINY_TEXT, tiny_tokenizer

TINY = [
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--ablator-sae-release",
    "tiny",
    "--ablator-sae-id",
    "blocks.1.hook_resid_post/jumprelu/128",
    "--reader-sae-release",
    "tiny",
    "--reader-sae-id",
    "blocks.2.hook_mlp_out/jumprelu/128",
    "--abridge-ablations-to",
    "4",
    "--max-tokens-in-prompt",
    "24",
    "--batch-size",
    "2",
    "--max-batch-ablations",
    "5",
]


def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, catch_exceptions=False)


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def test_script_writes_compacted_effects_for_ablated_latents_only(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(
        [
            *TINY,
            "--dataset-path",
            str(corpus(tmp_path)),
            "--n-prompts",
            "6",
            "--output-dir",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run(out)
    assert (run_dir / "config.json").is_file()
    store = EffectStore(run_dir / "effects", "--ablation-dir")
    assert 4 <= store.latents_R.shape[0] <= 6 * 4
    assert int(store.counts_R.sum()) <= 6 * 4
    rows = store.rows(0, store.latents_R.shape[0])
    assert rows.shape[1] == 128 and bool((rows != 0).any())


def test_resumed_run_ends_identical_to_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = corpus(tmp_path)
    args = [*TINY, "--dataset-path", str(data), "--n-prompts", "10", "--save-every", "2"]
    assert invoke([*args, "--output-dir", str(tmp_path / "whole")]).exit_code == 0
    whole = EffectStore(only_run(tmp_path / "whole") / "effects", "x")

    real = ablation_run.batched_ablation_effects
    calls = {"n": 0}

    def dies_on_the_fourth_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ablation_run, "batched_ablation_effects", dies_on_the_fourth_batch)
    killed = CliRunner().invoke(app, [*args, "--output-dir", str(tmp_path / "cut")])
    assert killed.exit_code != 0 and calls["n"] == 4  # click turns the interrupt into an abort
    monkeypatch.setattr(ablation_run, "batched_ablation_effects", real)
    cut = only_run(tmp_path / "cut")
    assert not (cut / "effects").exists()
    # The saved run wins; a flag that contradicts it is refused (it was silently ignored).
    refused = CliRunner().invoke(app, [*args, "--resume", str(cut), "--abridge-ablations-to", "5"])
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "error: --abridge-ablations-to: 5 contradicts the resumed run's 4; leave it out to "
        "resume, or start a new run"
    )
    stale = cut / "partial" / "rank-0" / ".effects.json.k2j3.tmp"  # a kill mid-write leaves these
    stale.write_text("{half")
    assert invoke([*args, "--resume", str(cut)]).exit_code == 0
    assert not stale.exists()
    resumed = EffectStore(cut / "effects", "x")
    assert torch.equal(resumed.latents_R, whole.latents_R)
    assert torch.equal(resumed.counts_R, whole.counts_R)
    n = whole.latents_R.shape[0]
    assert torch.equal(resumed.rows(0, n), whole.rows(0, n))


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--selected-features", "128"], "--selected-features"),
        (["--reader-sae-id", "blocks.0.hook_resid_post/jumprelu/128"], "--reader-sae-id"),
        (["--exclude-latent-threshold", "0.1"], "--exclude-latent-threshold"),
        (["--abridge-ablations-to", "0"], "--abridge-ablations-to"),
        (["--resume", "nowhere"], "--resume"),
        (["--max-tokens-in-prompt", "512"], "--max-tokens-in-prompt"),
        (["--max-prompts", "0"], "--max-prompts"),
    ],
)
def test_bad_input_is_one_line_naming_the_flag(tmp_path: Path, extra: list[str], flag: str) -> None:
    result = CliRunner().invoke(
        app,
        [
            *TINY,
            "--dataset-path",
            str(corpus(tmp_path)),
            "--output-dir",
            str(tmp_path / "o"),
            *extra,
        ],
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and flag in lines[0], result.output
    # A refused run leaves no run directory behind.
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("count_bos", [False, True])
def test_count_bos_decides_whether_bos_activations_pick_the_ablations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_bos: bool
) -> None:
    """The same --count-bos as gemma_cooccurrences.py: BOS is left out of the activation sums that
    choose each prompt's top K latents unless it is given."""
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    real = ablation_run.batched_ablation_effects

    def spy(*args, **kwargs):
        tokens_BS, attention_mask_BS, counted_BS = args[4:7]
        seen.append((tokens_BS, attention_mask_BS, counted_BS))
        return real(*args, **kwargs)

    monkeypatch.setattr(ablation_run, "batched_ablation_effects", spy)
    flags = ["--dataset-path", str(corpus(tmp_path)), "--max-prompts", "2"]
    flags += ["--output-dir", str(tmp_path / "o")] + (["--count-bos"] if count_bos else [])
    assert invoke([*TINY, *flags]).exit_code == 0
    tokens_BS, attention_mask_BS, counted_BS = seen[0]
    first_B = attention_mask_BS.argmax(dim=1)
    rows_B = torch.arange(tokens_BS.shape[0])
    bos = tiny_tokenizer().bos_token_id
    assert tokens_BS[rows_B, first_B].tolist() == [bos] * len(rows_B)
    assert bool((counted_BS[rows_B, first_B] == count_bos).all())
    assert int(counted_BS.sum()) == int(attention_mask_BS.sum()) - (0 if count_bos else 2)


def test_tiny_model_alone_picks_the_tiny_ablator_and_reader() -> None:
    assert default_saes("tiny") == (
        "tiny",
        "blocks.3.hook_resid_post/jumprelu/512",
        "tiny",
        "blocks.4.hook_resid_post/jumprelu/512",
    )
    assert default_saes("google/gemma-2-2b")[:2] == (
        "gemma-scope-2b-pt-res-canonical",
        "layer_20/width_65k/canonical",
    )


def gloo_config(data: Path, out: Path) -> SelectiveAblationConfig:
    return SelectiveAblationConfig(
        model="tiny",
        ablator_sae_release="tiny",
        ablator_sae_id="blocks.1.hook_resid_post/jumprelu/128",
        reader_sae_release="tiny",
        reader_sae_id="blocks.2.hook_mlp_out/jumprelu/128",
        dataset_path=(data,),
        max_prompts=8,
        batch_size=1,  # no padding, so each prompt's effects do not depend on its batch-mates
        max_tokens_in_prompt=24,
        abridge_ablations_to=4,
        save_every=2,
        device="cpu",
        output_dir=out,
    )


def _rank_main(rank: int, port: int, data: Path, out: Path) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    ablation_run.run(gloo_config(data, out))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_sum_to_the_effects_of_one_process(tmp_path: Path) -> None:
    data = corpus(tmp_path)
    single = EffectStore(ablation_run.run(gloo_config(data, tmp_path / "one")) / "effects", "x")
    # fork: the ranks inherit the imported modules instead of importing them again (seconds each).
    mp.start_processes(
        _rank_main,
        args=(_free_port(), data, tmp_path / "two"),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    run_dir = only_run(tmp_path / "two")
    assert sorted(p.name for p in (run_dir / "partial").iterdir()) == ["rank-0", "rank-1"]
    both = EffectStore(run_dir / "effects", "x")
    assert torch.equal(both.latents_R, single.latents_R)
    assert torch.equal(both.counts_R, single.counts_R)
    n = single.latents_R.shape[0]
    # Only the order of summing prompts differs (per rank, then across ranks).
    assert torch.allclose(both.rows(0, n), single.rows(0, n), rtol=1e-5, atol=1e-6)


def test_a_corpus_that_runs_out_before_max_prompts_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "three.txt"
    data.write_text("\n".join(TINY_TEXT.splitlines()[:3]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--dataset-path", str(data), "--n-prompts", "10", "--output-dir", str(out)]
    result = invoke([*TINY, *args])
    assert result.exit_code == 0, result.output
    assert "the corpus ran out: 3 prompts ablated of the 10" in result.output
    summary = json.loads((only_run(out) / "summary.json").read_text(encoding="utf-8"))
    assert (summary["prompts"], summary["max_prompts"], summary["corpus_ran_out"]) == (3, 10, True)


def test_a_corpus_refused_while_ablating_leaves_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_hacking.llm import corpus as corpus_module

    monkeypatch.setattr(corpus_module, "CHECKED_TEXTS", 2)  # the bad line lies past the check
    lines = [json.dumps({"text": text}) for text in TINY_TEXT.splitlines()[:4]] + ["{not json"]
    data = tmp_path / "corpus.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["--dataset-path", str(data), "--n-prompts", "10", "--output-dir", str(out)]
    result = CliRunner().invoke(app, [*TINY, *args])
    assert result.exit_code != 0 and "--dataset-path" in result.output, result.output
    assert list(out.iterdir()) == []

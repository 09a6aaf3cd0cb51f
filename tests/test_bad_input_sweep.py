"""Bad input and damaged files, one table: each case is refused in one line naming its flag or
file, or recovered from exactly; none is a traceback and none is counted as if it were data.

Cases call the library (a CLI error is the same ``UserInputError`` printed as one line); the few
that need a script's edge (exit status, what is left on disk) go through typer's runner.
"""

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sae_lens import HookedSAETransformer

from sae_hacking.errors import UserInputError
from sae_hacking.io.bundle import load_bundle, save_bundle
from sae_hacking.io.cooccurrence_results import (
    load_cooccurrence,
    merge_results,
    open_mergeable,
    read_manifest,
    read_tensors,
    save_counts,
)
from sae_hacking.io.effects import StoreInfo, compact, write_manifest, write_shard
from sae_hacking.io.rundir import make_run_dir
from sae_hacking.llm import CorpusSpec, iter_texts, load_sae, tiny_model, tiny_sae
from tests.cooccurrence_setup import PROMPTS, config, write_corpus


@dataclass(frozen=True)
class Shared:
    """Inputs built once for the module; a case copies what it damages into its own folder."""

    run: Path  # a finished co-occurrence run of the tiny model
    effects: Path  # a compacted effects store
    tiny: HookedSAETransformer


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    from sae_hacking.cooccurrence.run import run

    root = tmp_path_factory.mktemp("shared")
    corpus = write_corpus(root / "corpus.txt", PROMPTS)
    run_dir = run(config(corpus, root / "out", max_prompts=8))
    store = root / "effects"
    generator = torch.Generator().manual_seed(0)
    info = StoreInfo({"id": "a", "width": 40}, {"id": "r", "width": 6}, "tiny")
    raw = root / "raw"
    shards = []
    for number in range(3):
        latents_R = torch.randperm(40, generator=generator)[:7].sort().values
        rows_RE = torch.randn(7, 6, generator=generator)
        shards.append(write_shard(raw, f"shard-{number}", latents_R, rows_RE, torch.ones(7).long()))
    write_manifest(raw, info, shards, {})
    compact([raw], store, "--ablation-dir", rows_per_shard=8)
    return Shared(run_dir, store, tiny_model())


# Damage done to files, the way a full disk, a kill or a bad copy does it.


def data_start(path: Path) -> int:
    """Where a safetensors file's tensor data begins."""
    with open(path, "rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
    return 8 + header_len


def flip_byte(path: Path, offset: int) -> None:
    """Flip every bit of one byte ``offset`` bytes into the tensor data."""
    data = bytearray(path.read_bytes())
    data[data_start(path) + offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def garble_header(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[10:30] = b"\x00\xff#garbled bytes##\x01"
    path.write_bytes(bytes(data))


def copy_of(source: Path, tmp: Path, name: str = "copy") -> Path:
    target = tmp / name
    shutil.copytree(source, target)
    return target


# Corpus files.


def corpus_texts(tmp: Path, name: str, content: bytes, text_field: str = "text") -> list[str]:
    path = tmp / name
    path.write_bytes(content)
    return list(iter_texts(CorpusSpec(dataset_paths=(path,), text_field=text_field)))


def check_corpus_of(tmp: Path, content: bytes) -> None:
    from sae_hacking.llm.corpus import check_corpus

    path = tmp / "c.jsonl"
    path.write_bytes(content)
    check_corpus(CorpusSpec(dataset_paths=(path,)))


LATIN1 = "caf\u00e9 au lait\n".encode("latin-1")


def parquet_with_null(tmp: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp / "corpus.parquet"
    pq.write_table(pa.table({"text": ["fine", None, "also fine"]}), path)
    return list(iter_texts(CorpusSpec(dataset_paths=(path,))))


# Co-occurrence runs.


def load_damaged_run(shared: Shared, tmp: Path, damage: Callable[[Path], object]) -> Any:
    run_dir = copy_of(shared.run, tmp)
    damage(run_dir)
    return load_cooccurrence(run_dir)


def rewrite_counts(shared: Shared, tmp: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A run whose counts were rewritten consistently (manifest and checksums agree) but wrongly."""
    run_dir = copy_of(shared.run, tmp)
    tensors = read_tensors(run_dir)
    manifest = {k: v for k, v in read_manifest(run_dir).items() if k not in ("format", "tensors")}
    change({"tensors": tensors, "manifest": manifest})
    (run_dir / "ever_cooccurred.safetensors").unlink()
    (run_dir / "ever_cooccurred.json").unlink()
    save_counts(run_dir, tensors, manifest)
    return run_dir


def pair_above_firing(state: dict[str, Any]) -> None:
    firing = state["tensors"]["firing_counts"]
    state["tensors"]["pair_counts"][0] = int(firing[0]) + 1


def firing_above_tokens(state: dict[str, Any]) -> None:
    state["tensors"]["firing_counts"][5] = state["manifest"]["tokens"] + 1


def no_tokens(state: dict[str, Any]) -> None:
    # As a run over an empty corpus saves it: every count, histogram and token bitmap empty.
    for tensor in state["tensors"].values():
        tensor.zero_()
    state["manifest"]["tokens"] = 0


def truncated_json_recovers(shared: Shared, tmp: Path) -> None:
    run_dir = copy_of(shared.run, tmp)
    truncate(run_dir / "counts.json", 0.5)
    results = load_cooccurrence(run_dir)
    assert results.manifest == read_manifest(shared.run)
    assert torch.equal(results.firing_E, load_cooccurrence(shared.run).firing_E)


def merge_with(shared: Shared, tmp: Path, damage: Callable[[Path], object]) -> None:
    damaged = copy_of(shared.run, tmp, "damaged")
    damage(damaged)
    merge_results([shared.run, damaged], tmp / "merged")


def resume_read(shared: Shared, tmp: Path, damage: Callable[[Path], object]) -> None:
    run_dir = copy_of(shared.run, tmp)
    damage(run_dir)
    read_tensors(run_dir)


# Effect stores.


def open_damaged_store(shared: Shared, tmp: Path, damage: Callable[[Path], object]) -> None:
    store = copy_of(shared.effects, tmp)
    damage(store)
    # Summing a store opens it as every reader does: manifest, then each shard checked.
    compact([store], tmp / "summed", "--ablation-dir")


def first_shard(store: Path) -> Path:
    return sorted(store.glob("effects-*.safetensors"))[0]


def rewrite_shard(store: Path, latents: list[int], counts: list[int]) -> None:
    """A shard written consistently (checksums agree) whose rows break what a store promises."""
    rows = torch.zeros(len(latents), 6)
    entry = write_shard(store, "effects-00000", torch.tensor(latents), rows, torch.tensor(counts))
    manifest = json.loads((store / "effects.json").read_text())
    manifest["shards"][0] = entry
    (store / "effects.json").write_text(json.dumps(manifest))


# Bundles (toy checkpoints and any other tensor file with a manifest).


def load_damaged_bundle(tmp: Path, damage: Callable[[Path], object]) -> None:
    save_bundle(tmp, "state", {"w": torch.arange(64.0), "b": torch.ones(3)}, {"step": 5})
    damage(tmp / "state.safetensors")
    load_bundle(tmp, "state")


# SAEs and the prompt server.


def highlight_status(shared: Shared, sae_id: str) -> None:
    from sae_hacking.highlight.app import create_app
    from sae_hacking.highlight.highlighter import ModelHighlighter
    from sae_hacking.highlight.server import registry_sae
    from sae_hacking.llm import TINY_ABLATOR_ID, TINY_RELEASE

    highlighter = ModelHighlighter(
        shared.tiny,
        "tiny",
        lambda release, sae_id: registry_sae(
            shared.tiny, release, sae_id, torch.device("cpu"), "float32"
        ),
        (TINY_RELEASE, TINY_ABLATOR_ID),
        sae_cache_size=1,
        max_prompt_tokens=64,
    )
    test = TestClient(
        create_app(highlighter), base_url="http://127.0.0.1", raise_server_exceptions=False
    )
    body = {"prompt": "The snake", "sae_release": "tiny", "sae_id": sae_id}
    response = test.post("/api/highlight", json=body)
    # The sweep's one currency: a refusal is a UserInputError naming the field and the problem.
    if 400 <= response.status_code < 500:
        raise UserInputError("sae_id", f"{response.status_code} {response.json()['error']}")
    raise AssertionError(f"status {response.status_code}: {response.text}")


# Run directories.


def unwritable_output_dir(tmp: Path) -> None:
    # /sys refuses new entries even to root, like a read-only mount or a directory of another user.
    make_run_dir(Path("/sys"), "run")


def stale_temporaries_removed(tmp: Path) -> None:
    from sae_hacking.io.atomic import atomic_write_json, remove_stale_temporaries

    atomic_write_json(tmp / "counts.json", {"x": 1})
    (tmp / ".counts.safetensors.k2j3.tmp").write_bytes(b"half a file")
    (tmp / "notes.tmp").write_text("a user's file, not ours")
    remove_stale_temporaries(tmp)
    assert sorted(p.name for p in tmp.iterdir()) == ["counts.json", "notes.tmp"]


def run_dir_removed_when_nothing_was_written(tmp: Path) -> None:
    from sae_hacking.io.rundir import fresh_run_dir

    with (
        pytest.raises(UserInputError, match="line 3"),
        fresh_run_dir(tmp / "out", "run") as run_dir,
    ):
        (run_dir / "config.json").write_text("{}")
        raise UserInputError("--dataset-path", "line 3 of 'x.jsonl' is not JSON")
    assert list((tmp / "out").iterdir()) == []
    with pytest.raises(UserInputError), fresh_run_dir(tmp / "kept", "run") as run_dir:
        (run_dir / "config.json").write_text("{}")
        (run_dir / "counts.safetensors").write_bytes(b"a checkpoint")
        raise UserInputError("--dataset-path", "line 9000 is not JSON")
    assert len(list((tmp / "kept").iterdir())) == 1  # a checkpoint is never thrown away


@dataclass(frozen=True)
class Case:
    """One bad input: what to call, and the flag and words of its one-line refusal.

    ``flag`` None: a recovery, whose call asserts the exact result itself.
    """

    name: str
    call: Callable[[Shared, Path], object]
    flag: str | None
    fragment: str = ""


def flip_counts(run_dir: Path) -> None:
    flip_byte(run_dir / "counts.safetensors", 3)


def flip_last_count(run_dir: Path) -> None:
    # The last bytes of the file are those of the last tensor stored.
    path = run_dir / "counts.safetensors"
    flip_byte(path, path.stat().st_size - data_start(path) - 2)


CASES = [
    # Corpus files: never a traceback, never "None" counted as a prompt.
    Case(
        "txt-not-utf8", lambda s, t: corpus_texts(t, "c.txt", LATIN1), "--dataset-path", "not UTF-8"
    ),
    Case(
        "jsonl-not-utf8",
        lambda s, t: corpus_texts(t, "c.jsonl", b'{"text": "' + LATIN1.strip() + b'"}\n'),
        "--dataset-path",
        "not UTF-8",
    ),
    Case(
        "jsonl-malformed-line",
        lambda s, t: corpus_texts(t, "c.jsonl", b'{"text": "a"}\n{"text": "b"\n'),
        "--dataset-path",
        "line 2",
    ),
    Case(
        "jsonl-line-is-a-string",
        lambda s, t: corpus_texts(t, "c.jsonl", b'{"text": "a"}\n"just a string"\n'),
        "--dataset-path",
        "line 2",
    ),
    Case(
        "jsonl-line-is-a-number",
        lambda s, t: corpus_texts(t, "c.jsonl", b"3\n"),
        "--dataset-path",
        "line 1",
    ),
    Case(
        "jsonl-line-is-a-list",
        lambda s, t: corpus_texts(t, "c.jsonl", b'["a", "b"]\n'),
        "--dataset-path",
        "line 1",
    ),
    Case(
        "jsonl-text-null",
        lambda s, t: corpus_texts(t, "c.jsonl", b'{"text": "a"}\n{"text": null}\n'),
        "--text-field",
        "line 2",
    ),
    Case(
        "jsonl-text-list",
        lambda s, t: corpus_texts(t, "c.jsonl", b'{"text": ["a", "b"]}\n'),
        "--text-field",
        "line 1",
    ),
    Case(
        "jsonl-text-number",
        lambda s, t: corpus_texts(t, "c.jsonl", b'{"text": 12}\n'),
        "--text-field",
        "line 1",
    ),
    Case("parquet-text-null", lambda s, t: parquet_with_null(t), "--text-field", "row 2"),
    Case(
        "corpus-checked-before-any-run",
        lambda s, t: check_corpus_of(t, b'{"text": "a"}\n{"text": "b"}\n{"text": null}\n'),
        "--text-field",
        "line 3",
    ),
    Case(
        "empty-txt", lambda s, t: corpus_texts(t, "c.txt", b"\n  \n\n"), "--dataset-path", "no text"
    ),
    Case("empty-jsonl", lambda s, t: corpus_texts(t, "c.jsonl", b""), "--dataset-path", "no text"),
    # Co-occurrence runs: a damaged file is refused, never counted.
    Case(
        "counts-byte-flipped",
        lambda s, t: load_damaged_run(s, t, flip_counts),
        "--cooccurrence-dir",
        "checksum",
    ),
    Case(
        "counts-firing-byte-flipped",
        lambda s, t: load_damaged_run(s, t, flip_last_count),
        "--cooccurrence-dir",
        "checksum",
    ),
    Case(
        "counts-truncated",
        lambda s, t: load_damaged_run(s, t, lambda d: truncate(d / "counts.safetensors")),
        "--cooccurrence-dir",
        "counts.safetensors",
    ),
    Case(
        "counts-header-garbled",
        lambda s, t: load_damaged_run(s, t, lambda d: garble_header(d / "counts.safetensors")),
        "--cooccurrence-dir",
        "counts.safetensors",
    ),
    Case(
        "counts-empty-file",
        lambda s, t: load_damaged_run(s, t, lambda d: (d / "counts.safetensors").write_bytes(b"")),
        "--cooccurrence-dir",
        "counts.safetensors",
    ),
    Case(
        "ever-byte-flipped",
        lambda s, t: load_damaged_run(
            s, t, lambda d: flip_byte(d / "ever_cooccurred.safetensors", 0)
        ),
        "--cooccurrence-dir",
        "checksum",
    ),
    Case("counts-json-truncated", truncated_json_recovers, None),
    Case(
        "pair-count-above-firing",
        lambda s, t: load_cooccurrence(rewrite_counts(s, t, pair_above_firing)),
        "--cooccurrence-dir",
        "more often than",
    ),
    Case(
        "firing-above-tokens",
        lambda s, t: load_cooccurrence(rewrite_counts(s, t, firing_above_tokens)),
        "--cooccurrence-dir",
        "more tokens than",
    ),
    Case(
        "run-with-no-tokens",
        lambda s, t: load_cooccurrence(rewrite_counts(s, t, no_tokens)),
        "--cooccurrence-dir",
        "counted no tokens",
    ),
    Case(
        "merge-byte-flipped",
        lambda s, t: merge_with(s, t, flip_counts),
        "RUNS",
        "checksum",
    ),
    Case(
        "merge-truncated",
        lambda s, t: merge_with(s, t, lambda d: truncate(d / "counts.safetensors")),
        "RUNS",
        "counts.safetensors",
    ),
    Case(
        "merge-no-tokens",
        lambda s, t: open_mergeable([s.run, rewrite_counts(s, t, no_tokens)]),
        "RUNS",
        "counted no tokens",
    ),
    Case(
        "resume-byte-flipped",
        lambda s, t: resume_read(s, t, flip_counts),
        "--resume",
        "checksum",
    ),
    Case(
        "resume-truncated",
        lambda s, t: resume_read(s, t, lambda d: truncate(d / "counts.safetensors")),
        "--resume",
        "counts.safetensors",
    ),
    # Effect stores.
    Case(
        "effects-byte-flipped",
        lambda s, t: open_damaged_store(s, t, lambda d: flip_byte(first_shard(d), 40)),
        "--ablation-dir",
        "checksum",
    ),
    Case(
        "effects-truncated",
        lambda s, t: open_damaged_store(s, t, lambda d: truncate(first_shard(d))),
        "--ablation-dir",
        "effects-00000.safetensors",
    ),
    Case(
        "effects-shard-missing",
        lambda s, t: open_damaged_store(s, t, lambda d: first_shard(d).unlink()),
        "--ablation-dir",
        "effects-00000.safetensors",
    ),
    Case(
        "effects-json-truncated",
        lambda s, t: open_damaged_store(s, t, lambda d: truncate(d / "effects.json")),
        "--ablation-dir",
        "effects.json",
    ),
    Case(
        "effects-json-not-an-object",
        lambda s, t: open_damaged_store(s, t, lambda d: (d / "effects.json").write_text("[1]")),
        "--ablation-dir",
        "effects.json",
    ),
    Case(
        "effects-latents-unsorted",
        lambda s, t: open_damaged_store(s, t, lambda d: rewrite_shard(d, [5, 2, 9], [1, 1, 1])),
        "--ablation-dir",
        "sorted",
    ),
    Case(
        "effects-latent-out-of-range",
        lambda s, t: open_damaged_store(s, t, lambda d: rewrite_shard(d, [1, 2, 40], [1, 1, 1])),
        "--ablation-dir",
        "out of range",
    ),
    Case(
        "effects-zero-count",
        lambda s, t: open_damaged_store(s, t, lambda d: rewrite_shard(d, [1, 2, 3], [1, 0, 1])),
        "--ablation-dir",
        "count",
    ),
    # Bundles.
    Case(
        "bundle-byte-flipped",
        lambda s, t: load_damaged_bundle(t, lambda p: flip_byte(p, 9)),
        "--resume",
        "checksum",
    ),
    Case(
        "bundle-truncated",
        lambda s, t: load_damaged_bundle(t, truncate),
        "--resume",
        "state.safetensors",
    ),
    Case(
        "bundle-manifest-garbled",
        lambda s, t: load_damaged_bundle(t, lambda p: (p.parent / "state.json").write_text("{")),
        "--resume",
        "state.json",
    ),
    # SAEs.
    Case(
        "tiny-sae-zero-width",
        lambda s, t: tiny_sae(s.tiny, "blocks.3.hook_resid_post/jumprelu/0"),
        "--sae-id",
        "at least 1",
    ),
    Case(
        "tiny-sae-enormous-width",
        lambda s, t: tiny_sae(s.tiny, "blocks.3.hook_resid_post/jumprelu/10000000000000"),
        "--sae-id",
        "latents",
    ),
    Case(
        "sae-release-a-path",
        lambda s, t: load_sae("../../etc/passwd", "x"),
        "--sae-release",
        "../../etc/passwd",
    ),
    Case(
        "api-zero-width",
        lambda s, t: highlight_status(s, "blocks.3.hook_resid_post/jumprelu/0"),
        "sae_id",
        "422",
    ),
    Case(
        "api-enormous-width",
        lambda s, t: highlight_status(s, "blocks.3.hook_resid_post/jumprelu/10000000000000"),
        "sae_id",
        "422",
    ),
    # Run directories.
    Case("output-dir-unwritable", lambda s, t: unwritable_output_dir(t), "--output-dir", "/sys"),
    Case("stale-temporaries", lambda s, t: stale_temporaries_removed(t), None),
    Case("run-dir-removed", lambda s, t: run_dir_removed_when_nothing_was_written(t), None),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_refused_in_one_line_or_recovered(
    case: Case, shared: Shared, tmp_path: Path
) -> None:
    if case.flag is None:
        case.call(shared, tmp_path)
        return
    with pytest.raises(UserInputError) as caught:
        case.call(shared, tmp_path)
    error = caught.value
    assert error.flag == case.flag, str(error)
    assert case.fragment in error.problem, str(error)
    assert "\n" not in str(error), str(error)


def test_the_sweep_names_each_case_once() -> None:
    assert len({case.name for case in CASES}) == len(CASES)


def test_a_server_answering_info_with_non_json_is_one_line(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    from sae_hacking.highlight.client import run
    from sae_hacking.highlight.config import ClientConfig
    from tests.highlight.fakes import live_server

    app = FastAPI()
    app.get("/api/info", response_class=PlainTextResponse)(lambda: "<html>not a prompt server")
    with live_server(app) as url:
        config = ClientConfig(prompt="hello", server_url=url, output_dir=tmp_path / "out")
        with pytest.raises(UserInputError) as caught:
            run(config)
    assert caught.value.flag == "--server-url"
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists()


def test_a_corpus_refused_while_counting_leaves_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_hacking.cooccurrence.run import run
    from sae_hacking.llm import corpus as corpus_module

    monkeypatch.setattr(corpus_module, "CHECKED_TEXTS", 2)  # the bad line lies past the check
    lines = [json.dumps({"text": prompt}) for prompt in PROMPTS[:6]] + ["{not json"]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserInputError) as caught:
        run(config(corpus, tmp_path / "out"))
    assert caught.value.flag == "--dataset-path", str(caught.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_cooccurrence_run_that_counted_no_token_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_hacking.cooccurrence.run import run

    counting_nothing(monkeypatch)
    corpus = write_corpus(tmp_path / "corpus.txt", PROMPTS[:6])
    with pytest.raises(UserInputError) as caught:
        run(config(corpus, tmp_path / "out"))
    assert caught.value.flag == "max_tokens_in_prompt", str(caught.value)
    assert "no token" in caught.value.problem
    assert list((tmp_path / "out").iterdir()) == []


def counting_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every prompt give nothing to count after BOS (what a 1-token prompt length did)."""
    from sae_hacking.cooccurrence import run as cooccurrence_run
    from sae_hacking.llm.corpus import TokenBatch

    real = cooccurrence_run.iter_token_batches

    def only_bos(*args: Any, **kwargs: Any) -> Any:
        for batch in real(*args, **kwargs):
            counted_BS = torch.zeros_like(batch.counted_BS)
            yield TokenBatch(batch.tokens_BS, batch.attention_mask_BS, counted_BS)

    monkeypatch.setattr(cooccurrence_run, "iter_token_batches", only_bos)


def test_a_run_that_counted_no_token_leaves_no_checkpoints_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_hacking.cooccurrence.run import run

    counting_nothing(monkeypatch)
    corpus = write_corpus(tmp_path / "corpus.txt", PROMPTS[:6])
    with pytest.raises(UserInputError, match="no token"):
        run(config(corpus, tmp_path / "out", batch_size=2, save_every=1))
    assert list((tmp_path / "out").iterdir()) == []


def _count_nothing_on_rank(rank: int, port: int, corpus: Path, out: Path) -> None:
    import os

    from sae_hacking.cooccurrence.run import run

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
    try:
        run(config(corpus, out, batch_size=1, save_every=1))
    except UserInputError as error:
        assert "no token" in error.problem, str(error)
        return
    raise AssertionError("a run that counted no token was accepted")


def test_two_ranks_that_counted_no_token_leave_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    import torch.multiprocessing as mp

    counting_nothing(monkeypatch)  # the forked ranks inherit the patch
    corpus = write_corpus(tmp_path / "corpus.txt", PROMPTS[:4])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(
        _count_nothing_on_rank,
        args=(port, corpus, tmp_path / "out"),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    assert list((tmp_path / "out").iterdir()) == []

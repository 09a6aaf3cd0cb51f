"""Stopping and resuming gemma_cooccurrences.py: in-process crashes, torn checkpoints, SIGKILL."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.config import ConfigError
from sae_hacking.cooccurrence.run import run
from sae_hacking.core.triangle import triangle_size, unpack_bits
from sae_hacking.errors import UserInputError
from sae_hacking.gemma_cooccurrences import app
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import load_bundle, load_manifest
from sae_hacking.io.cooccurrence_results import (
    load_cooccurrence,
    read_manifest,
    save_ever_cooccurred,
)
from tests.cooccurrence_setup import (
    MAX_TOKENS,
    PROMPTS,
    Crash,
    assert_same_results,
    config,
    counting_dies_at,
    counts_of,
    only_run_dir,
    write_corpus,
)

WIDTH = 512


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus.txt", PROMPTS)


@pytest.fixture
def crashed(corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run (batches of 2, a checkpoint every 2) that dies counting its sixth batch."""
    with counting_dies_at(monkeypatch, 6), pytest.raises(Crash):
        run(config(corpus, tmp_path / "broken", batch_size=2, save_every=2))
    return only_run_dir(tmp_path / "broken")


def test_crashed_run_resumes_to_exactly_the_uninterrupted_counts(
    crashed: Path, corpus: Path, tmp_path: Path
) -> None:
    whole = counts_of(run(config(corpus, tmp_path / "whole", batch_size=2)))
    manifest = read_manifest(crashed)
    assert manifest["progress"] == [{"prompts": 8, "tokens": manifest["tokens"]}]
    with pytest.raises(UserInputError, match="unfinished run"):
        load_cooccurrence(crashed)
    with pytest.raises(ConfigError, match=r"^batch_size: 4 contradicts the resumed run's 2"):
        run(config(corpus, tmp_path / "unused", batch_size=4, resume=crashed))
    resumed = counts_of(
        run(config(corpus, tmp_path / "unused", batch_size=2, save_every=2, resume=crashed))
    )
    assert_same_results(resumed, whole)
    assert (crashed / "resumes.jsonl").is_file()


def test_a_stopped_run_has_ever_cooccurred_bits_of_its_last_checkpoint(crashed: Path) -> None:
    results = load_cooccurrence(crashed, allow_partial=True)
    assert not results.complete and results.prompts == 8 and results.ever_is_current()
    counts_P = counts_of(crashed)["pair_counts"]
    bits, ever_manifest = load_bundle(crashed, "ever_cooccurred")
    assert torch.equal(unpack_bits(bits["bits"], triangle_size(WIDTH)), counts_P > 0)
    assert ever_manifest["progress"] == results.manifest["progress"]
    first, second = torch.randint(0, WIDTH, (2, 3000))
    keep = first != second
    got = results.ever_cooccurred(first[keep], second[keep])
    assert torch.equal(got, results.pair_counts(first[keep], second[keep]) > 0)
    assert got.any() and not got.all()


def test_torn_checkpoints_read_and_resume_from_the_counts_file(
    crashed: Path, corpus: Path, tmp_path: Path
) -> None:
    """Killed between the two files of a checkpoint: bits of a later checkpoint than the counts,
    or a JSON copy of an earlier one. Readers and resume follow the counts file's own header."""
    manifest = read_manifest(crashed)
    later = {**manifest, "tokens": manifest["tokens"] + 9, "progress": [{"prompts": 10}]}
    save_ever_cooccurred(crashed, torch.ones(triangle_size(WIDTH), dtype=torch.int32), later)
    atomic_write_json(crashed / "counts.json", {**manifest, "progress": [{"prompts": 4}]})
    assert load_manifest(crashed, "counts")["progress"] == [{"prompts": 4}]

    results = load_cooccurrence(crashed, allow_partial=True)
    assert results.prompts == 8 and not results.ever_is_current()
    first, second = torch.randint(0, WIDTH, (2, 3000))
    keep = first != second
    got = results.ever_cooccurred(first[keep], second[keep])
    assert torch.equal(got, results.pair_counts(first[keep], second[keep]) > 0)
    assert not got.all()

    whole = counts_of(run(config(corpus, tmp_path / "whole", batch_size=2)))
    resumed = run(config(corpus, tmp_path / "unused", batch_size=2, resume=crashed))
    assert_same_results(counts_of(resumed), whole)
    assert load_cooccurrence(resumed).ever_is_current()


def _checkpoint_written(output_dir: Path) -> bool:
    runs = [path for path in output_dir.iterdir() if path.is_dir()] if output_dir.is_dir() else []
    return bool(runs) and (runs[0] / "counts.safetensors").is_file()


def _script_in_this_interpreter(argv: list[str]) -> None:
    torch.set_num_threads(1)
    app(argv)


@dataclass(frozen=True)
class Child:
    """A started process: its id, a non-blocking exit code (None while it runs), and a wait."""

    pid: int
    poll: Callable[[], int | None]
    wait: Callable[[], int | None]


def _start_script(how: str, argv: list[str]) -> Child:
    """Start gemma_cooccurrences.py in another process: forked from this one (its imports already
    done, so it starts at once) or a fresh interpreter (``python -m``, ~5-30 s of imports here)."""
    if how == "fork":
        process = multiprocessing.get_context("fork").Process(
            target=_script_in_this_interpreter, args=(argv,)
        )
        process.start()
        assert process.pid is not None

        def joined() -> int | None:
            process.join()
            return process.exitcode

        return Child(process.pid, lambda: process.exitcode, joined)
    child = subprocess.Popen(
        [sys.executable, "-m", "sae_hacking.gemma_cooccurrences", *argv],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Child(child.pid, child.poll, child.wait)


@pytest.mark.parametrize("how", ["fork", pytest.param("interpreter", marks=pytest.mark.slow)])
def test_sigkilled_script_resumes_to_exactly_the_uninterrupted_counts(
    tmp_path: Path, how: str
) -> None:
    """The script in its own process, killed with SIGKILL once a checkpoint is on disk, then
    resumed through the command line, ends with the counts of one uninterrupted run."""
    prompts = [f"{n} {PROMPTS[n % len(PROMPTS)]}" for n in range(400)]
    corpus = write_corpus(tmp_path / "long.txt", prompts)
    flags = ["--model", "tiny", "--dataset-path", str(corpus), "--device", "cpu"]
    flags += ["--max-tokens-in-prompt", str(MAX_TOKENS), "--batch-size", "2"]
    killed_dir = tmp_path / "killed"
    child = _start_script(how, [*flags, "--save-every", "1", "--output-dir", str(killed_dir)])
    try:
        deadline = time.monotonic() + 300
        while not _checkpoint_written(killed_dir) and child.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.005)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        exit_code = child.wait()
    assert exit_code == -signal.SIGKILL, "the run ended before it could be killed"
    run_dir = only_run_dir(killed_dir)
    stopped = read_manifest(run_dir)
    assert not stopped["complete"] and 0 < stopped["prompts"] < len(prompts)

    refused = CliRunner().invoke(app, [*flags, "--batch-size", "3", "--resume", str(run_dir)])
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        "error: --batch-size: 3 contradicts the resumed run's 2; leave it out to resume, "
        "or start a new run"
    )
    result = CliRunner().invoke(app, [*flags, "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    whole = run(config(corpus, tmp_path / "whole", batch_size=2))
    resumed, expected = counts_of(run_dir), counts_of(whole)
    assert_same_results(resumed, expected)
    assert read_manifest(run_dir)["prompts"] == len(prompts)


def test_resume_removes_the_temporaries_a_kill_left(crashed: Path, corpus: Path) -> None:
    stale = crashed / ".counts.safetensors.x7q2.tmp"
    stale.write_bytes(b"half a checkpoint")
    run(config(corpus, crashed.parent / "unused", batch_size=2, resume=crashed))
    assert not stale.exists()

"""Shared setup for the gemma_cooccurrences.py tests: a small corpus and the tiny-model config."""

import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from sae_hacking.cooccurrence import run as cooccurrence_run
from sae_hacking.cooccurrence.config import CooccurrenceConfig
from sae_hacking.io.bundle import load_bundle
from sae_hacking.llm import TINY_ABLATOR_ID, tiny_model, tiny_sae
from sae_hacking.llm.tokenizer import TINY_TEXT

PROMPTS = [line for line in TINY_TEXT.splitlines() if line.strip()][:18]
MAX_TOKENS = 12


def write_corpus(path: Path, prompts: list[str]) -> Path:
    """One prompt per line."""
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return path


def config(corpus: Path, out: Path, **overrides: object) -> CooccurrenceConfig:
    """The tiny model on CPU over ``corpus``, prompts cut to a few tokens."""
    settings: dict = {
        "model": "tiny",
        "dataset_path": (corpus,),
        "max_tokens_in_prompt": MAX_TOKENS,
        "batch_size": 4,
        "device": "cpu",
        "output_dir": out,
    }
    settings.update(overrides)
    return CooccurrenceConfig(**settings)


def counts_of(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run's counts bundle."""
    tensors, _ = load_bundle(run_dir, "counts")
    return tensors


def assert_same_results(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Equal counts, firing counts, activation histograms, token bitmaps and top contexts (which
    the run keeps by default)."""
    assert "top_prompts" in expected and set(got) == set(expected)
    assert bool((expected["top_prompts"] >= 0).any())
    assert int(expected["activation_histogram"].sum()) >= int(expected["firing_counts"].sum()) > 0
    fired_E = expected["firing_counts"] > 0
    assert torch.equal(expected["token_bitmap"].bool().any(dim=1), fired_E)
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key


def only_run_dir(output_dir: Path) -> Path:
    """The single run directory a script made under ``output_dir``."""
    (run_dir,) = [path for path in output_dir.iterdir() if path.is_dir()]
    return run_dir


def reference_bin(activation: float) -> int:
    """The histogram bin of a positive activation: 8 per octave from 2^-10, ends clamped."""
    return min(max(math.floor((math.log2(activation) + 10) * 8), 0), 191)


def reference_token_bit(token: int) -> int:
    """The bitmap bit of a token id: the top 10 of the low 32 bits of id * 2654435761."""
    return ((token * 2654435761) % 2**32) >> 22


def reference_token_bitmap(contexts: dict[int, list], width: int) -> torch.Tensor:
    """Each latent's bitmap of the tokens it fired on, from ``reference_counts``' contexts (the
    token itself sits at index 8 of each window)."""
    bits = torch.zeros(width, 1024, dtype=torch.uint8)
    for latent, seen in contexts.items():
        for _, _, _, window in seen:
            bits[latent, reference_token_bit(window[8])] = 1
    return bits


def reference_counts(
    prompts: list[str],
    max_tokens: int,
    contexts: dict[int, list],
    thresholds: list[float] | None = None,
    histogram: dict[tuple[int, int], int] | None = None,
) -> tuple[dict[tuple[int, int], int], list[int], int]:
    """Each prompt alone (no padding), token by token, pairs of firing latents (activation above
    ``thresholds``, default 0) counted in a dict; every firing's (activation, prompt, position,
    token window) listed in ``contexts``, every non-zero activation's (latent, bin) in
    ``histogram``."""
    model = tiny_model()
    sae = tiny_sae(model, TINY_ABLATOR_ID)
    assert model.tokenizer is not None
    bars = thresholds or [0.0] * sae.cfg.d_sae
    pairs: dict[tuple[int, int], int] = {}
    firing = [0] * sae.cfg.d_sae
    tokens = 0
    contexts.clear()
    for prompt_index, prompt in enumerate(prompts):
        ids = model.tokenizer(prompt, return_tensors="pt", truncation=True, max_length=max_tokens)[
            "input_ids"
        ]
        _, cache = model.run_with_cache(ids, names_filter=["blocks.3.hook_resid_post"])
        acts = sae.encode(cache["blocks.3.hook_resid_post"][0, 1:])  # position 0 is BOS
        for position, token_acts in enumerate(acts, start=1):
            tokens += 1
            values = token_acts.tolist()
            on = [e for e, a in enumerate(values) if a > 0 and a > bars[e]]
            window = [
                int(ids[0, c]) if 0 <= c < ids.shape[1] else -1
                for c in range(position - 8, position + 3)
            ]
            if histogram is not None:
                for e, a in enumerate(values):
                    if a > 0:
                        key = (e, reference_bin(a))
                        histogram[key] = histogram.get(key, 0) + 1
            for e in on:
                firing[e] += 1
                seen = (values[e], prompt_index, position, window)
                contexts.setdefault(e, []).append(seen)
            for x, i in enumerate(on):
                for j in on[x + 1 :]:
                    pairs[(i, j)] = pairs.get((i, j), 0) + 1
    return pairs, firing, tokens


class Crash(Exception):
    pass


@contextmanager
def counting_dies_at(monkeypatch: pytest.MonkeyPatch, batch: int) -> Iterator[None]:
    """Within the block, a run raises ``Crash`` counting its ``batch``-th batch."""
    real, calls = cooccurrence_run.add_entry_counts_, {"n": 0}

    def dies(*args: object) -> None:
        calls["n"] += 1
        if calls["n"] == batch:
            raise Crash
        real(*args)  # pyright: ignore[reportArgumentType]

    monkeypatch.setattr(cooccurrence_run, "add_entry_counts_", dies)
    try:
        yield
    finally:
        monkeypatch.setattr(cooccurrence_run, "add_entry_counts_", real)


def become_rank(rank: int, port: int, world: int = 2) -> None:
    """Set this process up as torchrun would set up rank ``rank`` of ``world`` (one thread)."""
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

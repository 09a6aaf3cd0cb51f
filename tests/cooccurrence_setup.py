"""Shared setup for the gemma_cooccurrences.py tests: a small corpus and the tiny-model config."""

from pathlib import Path

import torch

from sae_hacking.cooccurrence.config import CooccurrenceConfig
from sae_hacking.io.bundle import load_bundle
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
    """Equal counts, firing counts and top contexts (which the run keeps by default)."""
    assert "top_prompts" in expected and set(got) == set(expected)
    assert bool((expected["top_prompts"] >= 0).any())
    for key, tensor in expected.items():
        assert torch.equal(got[key], tensor), key


def only_run_dir(output_dir: Path) -> Path:
    """The single run directory a script made under ``output_dir``."""
    (run_dir,) = [path for path in output_dir.iterdir() if path.is_dir()]
    return run_dir

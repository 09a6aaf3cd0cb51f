"""The absorption hunt's planted language-model case: model, ablator, reader, corpus and truth on disk.

``write_planted_hunt`` saves what the language-model scripts take: the planted model as a model
directory (``--model DIR``), the absorbing JumpReLU ablator at the embeddings and a reader SAE at
``blocks.1.hook_resid_post`` as sae-lens directories (``--sae-release DIR``), a corpus of one
prompt per line (``--dataset-path``), and ``truth.json`` with the planted (letter latent, word
latent) pairs. The reader is hand-built like the ablator: a JumpReLU latent per letter direction
and one per token's own direction, so the copy head's letter at the last token is read by exactly
one reader latent and cut off below its threshold.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sae_hacking.llm.planted import (
    LETTERS,
    PlantedModel,
    PlantedSpec,
    absorbing_sae,
    build_planted_model,
    save_planted,
)

READER_HOOK = "blocks.1.hook_resid_post"
ABLATOR_HOOK = "blocks.0.hook_resid_pre"
TEMPLATE = "has the first letter:"


def letter_reader_sae(
    planted: PlantedModel, hook_name: str = READER_HOOK, threshold_fraction: float = 0.25
) -> Any:
    """A sae-lens JumpReLU SAE: latent ``i < 26`` reads letter ``i``, then one per word direction."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    spec = planted.spec
    assert spec.d_model is not None
    directions_EM = torch.cat([planted.letter_dirs_AM, planted.word_dirs_CM])
    width = directions_EM.shape[0]
    threshold_E = torch.cat(
        [
            torch.full((len(LETTERS),), threshold_fraction * spec.letter_norm),
            torch.full((planted.word_dirs_CM.shape[0],), threshold_fraction * spec.word_norm),
        ]
    )
    cfg = JumpReLUSAEConfig(
        d_in=spec.d_model,
        d_sae=width,
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(hook_name=hook_name, model_name="planted"),
    )
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(directions_EM.T)
        sae.W_dec.copy_(directions_EM)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.copy_(threshold_E)
    return sae


def planted_corpus(
    planted: PlantedModel, prompts: int, words_per_prompt: int, seed: int = 0
) -> list[str]:
    """Prompts of random words ending in the first-letter template, one line each.

    Every word is equally likely, so a letter latent fires about ``words_per_letter`` times as
    often as one word's latent, as a letter latent on a language model fires on many words.
    """
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(planted.words), (prompts, words_per_prompt), generator=generator)
    return [" ".join(planted.words[i] for i in row.tolist()) + f" {TEMPLATE}" for row in picks]


@dataclass(frozen=True)
class PlantedHunt:
    """Where the planted case lies on disk, and its truth."""

    model_dir: Path
    ablator_dir: Path
    reader_dir: Path
    corpus: Path
    truth: frozenset[tuple[int, int]]


def write_planted_hunt(
    root: Path,
    absorption: dict[str, float] | None = None,
    prompts: int = 600,
    words_per_prompt: int = 16,
    spec: PlantedSpec | None = None,
) -> PlantedHunt:
    """Build and save the planted case under ``root``.

    The default absorption (``default_absorption``): for the first ten letters the first two
    words absorb their letter fully (siblings: two absorbers of one letter), for the next four
    one word does.
    """
    planted = build_planted_model(spec or PlantedSpec())
    if absorption is None:
        absorption = default_absorption(planted)
    ablator = absorbing_sae(planted, absorption, hook_name=ABLATOR_HOOK)
    reader = letter_reader_sae(planted)
    model_dir, ablator_dir, reader_dir = root / "model", root / "ablator", root / "reader"
    save_planted(planted, model_dir)
    ablator.sae.save_model(ablator_dir)
    reader.save_model(reader_dir)
    corpus = root / "corpus.txt"
    lines = planted_corpus(planted, prompts, words_per_prompt)
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    truth = frozenset((letter, word) for letter, word, _ in ablator.absorbed_pairs)
    (root / "truth.json").write_text(
        json.dumps(
            {
                "absorbed_pairs": [
                    {"letter_latent": a, "word_latent": w, "strength": s}
                    for a, w, s in ablator.absorbed_pairs
                ]
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return PlantedHunt(model_dir, ablator_dir, reader_dir, corpus, truth)


def default_absorption(planted: PlantedModel) -> dict[str, float]:
    """Full absorption by two words of each of the first ten letters and one of the next four."""
    by_letter: dict[str, list[str]] = {}
    for word, letter in zip(planted.words, planted.word_letters, strict=True):
        by_letter.setdefault(letter, []).append(word)
    absorption: dict[str, float] = {}
    for letter in LETTERS[:10]:
        absorption.update(dict.fromkeys(by_letter[letter][:2], 1.0))
    for letter in LETTERS[10:14]:
        absorption[by_letter[letter][0]] = 1.0
    return absorption

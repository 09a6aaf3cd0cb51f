"""The planted first-letter task: a planted model whose SAEs absorb letters at known rates, on disk.

Built on ``llm.planted`` with three choices that make SAEBench's metric read the planted rates
(measured, see the README's first-letter results):

- The residual stream is rotated by a random orthogonal matrix. The planted model puts each letter
  on a coordinate axis, and SAEBench's probe trainer (Adam) moves every coordinate about equally
  fast, so a letter's probe weighs the 25 other letters' axes as much as its own: cosine ~0.14
  with its letter, which puts a half-strength absorber's decoder (cosine 0.45 with the letter) at
  ~0.06 with the probe, under the 0.1 absorber threshold. Rotated, the cosine is 0.25-0.51.
- ``d_model`` is left to the planted model, wide enough for exactly orthogonal word directions:
  at d_model 256 the letter latent of a letter with many absorbed words read each word with
  +-0.5 of cross-talk from the others' nearly orthogonal directions.
- Letter and word norms are 16 rather than 4, so the part every word's activation shares
  (constant, "is a word" and position coordinates, norm 1.55) is small beside the letter: the
  probe weighs that part like a second bias, SAEBench's denominator ``x . u`` includes it and no
  latent carries it, so a partial absorber reads low by that share (0.14-0.29 for 0.5 at norm 4).
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from sae_hacking.llm.planted import (
    PlantedModel,
    PlantedSpec,
    absorbing_sae,
    build_planted_model,
    save_planted,
)

# letter: (every n-th word of the letter, absorption strength)
DEFAULT_PLAN: dict[str, tuple[int, float]] = {
    "B": (2, 1.0),
    "D": (4, 1.0),
    "E": (2, 0.3),
    "F": (2, 0.5),
    "G": (1, 0.5),
}
ABSORBING = "absorbing"
ORACLE = "oracle"
NORM = 16.0


def rotate_residual(planted: PlantedModel, seed: int) -> PlantedModel:
    """The same model in a randomly rotated residual basis: every output unchanged, no feature on an axis.

    Exact for the planted model's architecture (attention only, no normalisation): embeddings and
    attention outputs map through R, what reads the residual stream through R^T.
    """
    model = planted.model
    if not model.cfg.attn_only or model.cfg.normalization_type is not None:
        raise ValueError("rotate_residual needs an attention-only model without normalisation")
    generator = torch.Generator().manual_seed(seed)
    size = model.cfg.d_model
    q_MM, r_MM = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    R_MM = (q_MM * torch.sign(torch.diagonal(r_MM))).float()
    with torch.no_grad():
        model.embed.W_E.copy_(model.embed.W_E @ R_MM)
        model.pos_embed.W_pos.copy_(model.pos_embed.W_pos @ R_MM)
        for block in model.blocks:
            attn = block.attn
            for W_HMD in (attn.W_Q, attn.W_K, attn.W_V):
                W_HMD.copy_(torch.einsum("mn,hmd->hnd", R_MM, W_HMD))
            attn.W_O.copy_(attn.W_O @ R_MM)
            attn.b_O.copy_(attn.b_O @ R_MM)
        model.unembed.W_U.copy_(R_MM.T @ model.unembed.W_U)
    return replace(
        planted,
        letter_dirs_AM=planted.letter_dirs_AM @ R_MM,
        word_dirs_CM=planted.word_dirs_CM @ R_MM,
    )


@dataclass(frozen=True)
class LetterPlant:
    """A saved planted task: ``model_dir`` for ``--model``, ``sae_dir`` for ``--sae-release``."""

    model_dir: Path
    sae_dir: Path
    sae_ids: tuple[str, ...]
    absorption: dict[str, float]  # word (no leading space) -> planted strength
    word_latents: dict[str, int]  # word -> its latent in the absorbing SAE


def words_to_absorb(
    planted: PlantedModel, plan: Mapping[str, tuple[int, float]]
) -> dict[str, float]:
    """Every ``n``-th word of each planned letter, at the letter's strength."""
    absorption: dict[str, float] = {}
    for letter, (every, strength) in plan.items():
        words = [
            w
            for w, first in zip(planted.words, planted.word_letters, strict=True)
            if first == letter
        ]
        absorption.update(dict.fromkeys(words[::every], strength))
    return absorption


def save_letter_plant(
    root: Path,
    words_per_letter: int = 30,
    plan: Mapping[str, tuple[int, float]] = DEFAULT_PLAN,
    seed: int = 0,
) -> LetterPlant:
    """Build, rotate and save the planted model, an absorbing SAE and an absorption-free one."""
    spec = PlantedSpec(
        words_per_letter=words_per_letter, letter_norm=NORM, word_norm=NORM, seed=seed
    )
    planted = rotate_residual(build_planted_model(spec), seed)
    absorption = words_to_absorb(planted, plan)
    model_dir, sae_dir = root / "model", root / "saes"
    save_planted(planted, model_dir)
    absorbing = absorbing_sae(planted, absorption)
    absorbing.sae.save_model(sae_dir / ABSORBING)
    absorbing_sae(planted, {}).sae.save_model(sae_dir / ORACLE)
    (root / "plant.json").write_text(
        json.dumps({"plan": dict(plan), "absorption": absorption}, indent=1), encoding="utf-8"
    )
    return LetterPlant(model_dir, sae_dir, (ABSORBING, ORACLE), absorption, absorbing.word_latents)

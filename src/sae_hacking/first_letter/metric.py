"""SAEBench 0.6's absorption fraction and full absorption, for all of a letter's words at once.

Definitions (its ``FeatureAbsorptionCalculator.calculate_absorption``), per probe true positive
with hook activation x, folded latent activations a (decoder rows of unit norm) and unit probe
direction u:

- a latent's probe projection is ``a_e * cos(u, d_e)``; the word's is ``x . u``;
- absorbing candidates are latents outside the main ones with cosine >= ``absorber_cosine`` and a
  positive projection; the top ``max_absorbers`` of them carry ``A`` of the projection;
- absorption fraction: 0 when the main latents carry the whole projection or ``A / (x . u)`` is
  below ``projection_threshold``; else 1 when the main latents carry nothing; else
  ``min(A, x.u - main) / (min(A, x.u - main) + main)``;
- full absorption: every main latent silent (activation < 1e-8), the latent of largest projection
  has cosine >= ``full_absorption_cosine``, ``x . u >= 0``, and that latent carries at least
  ``projection_threshold`` of ``x . u``.

A word whose projection ``x . u`` is exactly 0 scores 0 on both (SAEBench divides by zero there).
"""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

SILENT = 1e-8


@dataclass(frozen=True)
class Thresholds:
    """The metric's thresholds (SAEBench's defaults)."""

    absorber_cosine: float = 0.1
    full_absorption_cosine: float = 0.025
    projection_threshold: float = 0.4
    max_absorbers: int = 3


@dataclass(frozen=True)
class WordAbsorption:
    """Per word of one letter: the two scores and the latents behind them."""

    fraction_T: Float[Tensor, " T"]
    full_T: Bool[Tensor, " T"]
    absorbers_TK: Int[Tensor, "T K"]  # candidate absorbers by projection, -1 where none
    absorber_projection_TK: Float[Tensor, "T K"]
    top_latent_T: Int[Tensor, " T"]  # the latent of largest projection (full absorption's)


def probe_cosines(
    direction_M: Float[Tensor, " M"], decoder_EM: Float[Tensor, "E M"]
) -> Float[Tensor, " E"]:
    """Cosine of every decoder row with the probe direction."""
    return torch.nn.functional.cosine_similarity(direction_M[None, :], decoder_EM, dim=-1)


def word_absorption(
    latents_TE: Float[Tensor, "T E"],
    acts_TM: Float[Tensor, "T M"],
    direction_M: Float[Tensor, " M"],
    cosine_E: Float[Tensor, " E"],
    main: list[int],
    thresholds: Thresholds,
) -> WordAbsorption:
    """Both absorption scores of each word, given its folded latents and hook activation."""
    device = latents_TE.device
    width = latents_TE.shape[1]
    unit_M = direction_M / direction_M.norm()
    total_T = acts_TM @ unit_M
    projection_TE = latents_TE * cosine_E
    is_main_E = torch.zeros(width, dtype=torch.bool, device=device)
    is_main_E[main] = True
    main_T = projection_TE[:, is_main_E].sum(1)

    candidate_TE = ~is_main_E & (cosine_E >= thresholds.absorber_cosine) & (projection_TE > 0)
    masked_TE = torch.where(candidate_TE, projection_TE, -torch.inf)
    k = min(thresholds.max_absorbers, width)
    values_TK, latents_TK = masked_TE.topk(k, dim=1)
    valid_TK = torch.isfinite(values_TK)
    absorbed_TK = torch.where(valid_TK, values_TK, 0.0)
    absorbed_T = absorbed_TK.sum(1)

    zero_T = total_T == 0
    share_T = absorbed_T / torch.where(zero_T, 1.0, total_T)
    none_T = (main_T >= total_T) | (share_T < thresholds.projection_threshold) | zero_T
    credited_T = torch.minimum(absorbed_T, total_T - main_T)
    partial_T = (credited_T / (credited_T + main_T).clamp(min=1e-30)).clamp(0.0, 1.0)
    fraction_T = torch.where(none_T, 0.0, torch.where(main_T <= 0, 1.0, partial_T))

    top_T = projection_TE.argmax(dim=1)
    top_projection_T = projection_TE.gather(1, top_T[:, None]).squeeze(1)
    main_silent_T = (latents_TE[:, is_main_E] < SILENT).all(dim=1)
    full_T = (
        main_silent_T
        & (cosine_E[top_T] >= thresholds.full_absorption_cosine)
        & (total_T > 0)
        & (top_projection_T >= thresholds.projection_threshold * total_T)
    )
    return WordAbsorption(
        fraction_T=fraction_T,
        full_T=full_T,
        absorbers_TK=torch.where(valid_TK, latents_TK, -1),
        absorber_projection_TK=absorbed_TK,
        top_latent_T=top_T,
    )

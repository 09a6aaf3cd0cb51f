"""Selective ablation as pure tensor functions: which latents to ablate, what ablating one does.

Zeroing ablator latent i while keeping the SAE's error term turns the activation x at the ablator
hook into ``x - a_i(s) d_i`` at every position s, where ``d_i`` is the decoder row as the SAE
applies it; positions where the latent did not fire are unchanged (``a_i(s) = 0``).
"""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor


@dataclass(frozen=True)
class AblationChoice:
    """Per prompt, the latents to ablate (``valid_BK`` marks real choices) and whether to ablate at all."""

    latents_BK: Int[Tensor, "B K"]
    valid_BK: Bool[Tensor, "B K"]
    chosen_B: Bool[Tensor, " B"]


@jaxtyped(typechecker=beartype)
def choose_ablations(
    acts_BSE: Float[Tensor, "B S E"],
    counted_BS: Bool[Tensor, "B S"],
    k: int,
    ablatable_E: Bool[Tensor, " E"],
    selected_D: Int[Tensor, " D"],
    firing_thresholds_E: Float[Tensor, " E"] | None = None,
) -> AblationChoice:
    """Each prompt's top-``k`` ablatable latents by activation summed over counted tokens (with
    ``firing_thresholds_E``, only activations above each latent's bar count).

    A latent whose summed activation is 0 never fired there, so ablating it changes nothing: such
    slots are marked invalid instead of being ablated and counted (the original counted them). A
    prompt is chosen when one of ``selected_D`` is among its valid latents (all prompts when
    ``selected_D`` is empty).
    """
    if firing_thresholds_E is not None:
        acts_BSE = acts_BSE * (acts_BSE > firing_thresholds_E.to(acts_BSE.device))
    summed_BE = (acts_BSE * counted_BS[..., None].to(acts_BSE.dtype)).sum(dim=1)
    summed_BE = summed_BE.masked_fill(~ablatable_E, -1.0)
    values_BK, latents_BK = summed_BE.topk(k, dim=-1, sorted=True)
    valid_BK = values_BK > 0
    if selected_D.numel() == 0:
        chosen_B = valid_BK.any(dim=-1)
    else:
        is_selected_BKD = latents_BK[..., None] == selected_D.to(latents_BK.device)
        chosen_B = (is_selected_BKD.any(dim=-1) & valid_BK).any(dim=-1)
    return AblationChoice(latents_BK, valid_BK, chosen_B)


@jaxtyped(typechecker=beartype)
def ablatable_latents(
    firing_counts_E: Int[Tensor, " E"] | None,
    n_tokens: int,
    exclude_threshold: float | None,
    width: int,
) -> Bool[Tensor, " E"]:
    """Latents allowed to be ablated: those firing on at most ``exclude_threshold`` of the tokens."""
    if exclude_threshold is None or firing_counts_E is None:
        return torch.ones(width, dtype=torch.bool)
    return firing_counts_E.double() <= exclude_threshold * max(n_tokens, 1)


@jaxtyped(typechecker=beartype)
def ablation_deltas(
    acts_KS: Float[Tensor, "K S"], directions_KM: Float[Tensor, "K M"]
) -> Float[Tensor, "K S M"]:
    """What ablating each latent subtracts from the activation at each position: ``a_i(s) d_i``."""
    return acts_KS[:, :, None] * directions_KM[:, None, :]


@jaxtyped(typechecker=beartype)
def decoder_directions(
    W_dec_EM: Float[Tensor, "E M"], latents_K: Int[Tensor, " K"], rescale_by_norm: bool
) -> Float[Tensor, "K M"]:
    """The decoder rows as the SAE's decode applies them (unit rows where acts are rescaled by norm)."""
    rows_KM = W_dec_EM[latents_K]
    if rescale_by_norm:
        rows_KM = rows_KM / rows_KM.norm(dim=-1, keepdim=True)
    return rows_KM


@jaxtyped(typechecker=beartype)
def last_real_positions(
    attention_mask_BS: Int[Tensor, "B S"] | Bool[Tensor, "B S"],
) -> Int[Tensor, " B"]:
    """The index of each prompt's last real token (works for left and right padding)."""
    mask_BS = attention_mask_BS.bool()
    positions_BS = torch.arange(mask_BS.shape[1], device=mask_BS.device).expand_as(mask_BS)
    return torch.where(mask_BS, positions_BS, -1).amax(dim=1)

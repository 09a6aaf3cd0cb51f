"""AuxK: dead latents learn to reconstruct what the live ones miss (Gao et al. 2024, section 2.4)."""

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.core.topk import topk_decode, topk_encode
from sae_hacking.toy.protocol import LossParts


def mark_fired(
    steps_since_fired_E: Int[Tensor, " E"],
    idx_BK: Int[Tensor, "B K"],
    acts_BK: Float[Tensor, "B K"],
) -> None:
    """Advance every latent's idle counter by one step and reset it for latents that fired."""
    with torch.no_grad():
        fired_BK = (acts_BK > 0).to(torch.int64)
        hits_E = torch.zeros_like(steps_since_fired_E)
        # scatter_add rather than boolean indexing: no host sync inside the training loop.
        hits_E.scatter_add_(0, idx_BK.flatten(), fired_BK.flatten())
        steps_since_fired_E.add_(1).masked_fill_(hits_E > 0, 0)


def auxk_loss(
    pre_BE: Float[Tensor, "B E"],
    residual_BM: Float[Tensor, "B M"],
    dead_E: Bool[Tensor, " E"],
    W_dec_EM: Float[Tensor, "E M"],
    aux_k: int,
) -> Float[Tensor, ""]:
    """Squared error of the dead latents' top-``aux_k`` reconstruction of the residual, normalised.

    Divided by the residual's own squared norm (detached), so the term is scale free; zero when
    no latent is dead.
    """
    k = min(aux_k, pre_BE.shape[1])
    masked_BE = pre_BE.masked_fill(~dead_E, float("-inf"))
    acts_BK, idx_BK = topk_encode(masked_BE, k)
    zero_M = torch.zeros_like(W_dec_EM[0])
    target_BM = residual_BM.detach()
    estimate_BM = topk_decode(acts_BK, idx_BK, W_dec_EM, zero_M)
    scale = target_BM.square().sum(-1).mean().clamp_min(1e-12)
    any_dead = dead_E.any().to(pre_BE.dtype)
    return any_dead * (estimate_BM - target_BM).square().sum(-1).mean() / scale


@dataclass(frozen=True)
class AuxKSettings:
    """How many dead latents AuxK uses, its weight, and how long a latent idles before it is dead."""

    aux_k: int
    coefficient: float
    dead_after_steps: int


def reconstruction_loss_with_auxk(
    mse: Float[Tensor, ""],
    pre_BE: Float[Tensor, "B E"],
    residual_BM: Float[Tensor, "B M"],
    code: tuple[Float[Tensor, "B K"], Int[Tensor, "B K"]],
    steps_since_fired_E: Int[Tensor, " E"],
    W_dec_EM: Float[Tensor, "E M"],
    settings: AuxKSettings,
) -> LossParts:
    """The reconstruction loss, plus the AuxK term when ``settings.aux_k > 0``."""
    if settings.aux_k == 0:
        return LossParts(mse, {"mse": mse.detach()})
    acts_BK, idx_BK = code
    mark_fired(steps_since_fired_E, idx_BK, acts_BK)
    dead_E = steps_since_fired_E >= settings.dead_after_steps
    aux = auxk_loss(pre_BE, residual_BM, dead_E, W_dec_EM, settings.aux_k)
    total = mse + settings.coefficient * aux
    return LossParts(total, {"mse": mse.detach(), "auxk": aux.detach()})

"""How well an SAE's directions recover the true features: MMCS, Hungarian MCC, best matches."""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.matching import hungarian_assignment, mean_max_cosine
from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.toy.protocol import HasComposedDirections, ToySAE


def scored_directions(sae: ToySAE) -> Float[Tensor, "D M"]:
    """The directions scored against the truth: composed ones where the SAE has them, else W_dec."""
    if isinstance(sae, HasComposedDirections):
        return sae.composed_directions().detach()
    return sae.decoder_directions().detach()


@dataclass(frozen=True)
class Recovery:
    """Ground-truth recovery of one set of directions (D of them) against N true features.

    ``best_latent_N[n]`` is the direction with the highest cosine to feature n (``best_cosine_N``);
    ``matched_latent_N`` / ``matched_cosine_N`` are its Hungarian partner (-1 / 0 when unmatched).
    """

    mmcs: float
    mcc: float
    cos_ND: Float[Tensor, "N D"]
    best_latent_N: Int[Tensor, " N"]
    best_cosine_N: Float[Tensor, " N"]
    matched_latent_N: Int[Tensor, " N"]
    matched_cosine_N: Float[Tensor, " N"]


def recovery(directions_DM: Float[Tensor, "D M"], features_NM: Float[Tensor, "N M"]) -> Recovery:
    """MMCS (signed cosine, as the original), Hungarian MCC (absolute cosine) and best matches."""
    cos_ND = cosine_matrix(features_NM.detach().float(), directions_DM.detach().float()).cpu()
    best_cosine_N, best_latent_N = cos_ND.max(dim=1)
    assignment = hungarian_assignment(cos_ND)
    num_features = cos_ND.shape[0]
    matched_latent_N = torch.full((num_features,), -1, dtype=torch.long)
    matched_cosine_N = torch.zeros(num_features)
    matched_latent_N[assignment.feature_idx_D] = assignment.latent_idx_D
    matched_cosine_N[assignment.feature_idx_D] = assignment.cosine_D
    return Recovery(
        mmcs=mean_max_cosine(cos_ND),
        mcc=matched_cosine_N.abs().mean().item(),
        cos_ND=cos_ND,
        best_latent_N=best_latent_N,
        best_cosine_N=best_cosine_N,
        matched_latent_N=matched_latent_N,
        matched_cosine_N=matched_cosine_N,
    )

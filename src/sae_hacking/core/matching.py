"""Best-match assignment of learned directions to true features, and the scores built on it."""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from scipy.optimize import linear_sum_assignment
from torch import Tensor


@dataclass(frozen=True)
class Assignment:
    """A one-to-one matching of true features to latents (Hungarian, on absolute cosine)."""

    feature_idx_D: Int[Tensor, " D"]
    latent_idx_D: Int[Tensor, " D"]
    cosine_D: Float[Tensor, " D"]


@jaxtyped(typechecker=beartype)
def hungarian_assignment(cos_NE: Float[Tensor, "N E"]) -> Assignment:
    """Match features to latents one-to-one, maximising the summed absolute cosine.

    When there are fewer latents than features only min(N, E) pairs are returned.
    """
    score = cos_NE.detach().abs().double().cpu().numpy()
    rows, cols = linear_sum_assignment(score, maximize=True)
    feature_idx_D = torch.as_tensor(rows, dtype=torch.long)
    latent_idx_D = torch.as_tensor(cols, dtype=torch.long)
    cosine_D = cos_NE.detach().cpu()[feature_idx_D, latent_idx_D]
    return Assignment(feature_idx_D, latent_idx_D, cosine_D)


@jaxtyped(typechecker=beartype)
def mean_max_cosine(cos_NE: Float[Tensor, "N E"]) -> float:
    """MMCS: for each true feature the best cosine any latent reaches, averaged over features.

    Several features may pick the same latent, so a collapsed SAE can score high (see README).
    """
    return cos_NE.detach().max(dim=1).values.mean().item()


@jaxtyped(typechecker=beartype)
def hungarian_mcc(cos_NE: Float[Tensor, "N E"]) -> float:
    """Mean absolute cosine of the one-to-one Hungarian matching, averaged over all N features.

    A feature left without a latent (E < N) counts 0, so width shortfalls are penalised.
    """
    assignment = hungarian_assignment(cos_NE)
    return assignment.cosine_D.abs().sum().item() / cos_NE.shape[0]

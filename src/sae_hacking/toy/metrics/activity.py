"""How an SAE's latents behave on a batch: L0, dead latents, fraction of variance unexplained."""

from jaxtyping import Float
from torch import Tensor


def mean_l0(dense_BE: Float[Tensor, "B E"]) -> float:
    """Average number of active latents per sample."""
    return dense_BE.ne(0).sum(dim=1).float().mean().item()


def dead_latent_count(dense_BE: Float[Tensor, "B E"]) -> int:
    """Latents that fire on no sample of the batch."""
    return int(dense_BE.ne(0).any(dim=0).logical_not().sum().item())


def fraction_variance_unexplained(
    x_BM: Float[Tensor, "B M"], recon_BM: Float[Tensor, "B M"]
) -> float:
    """Squared error over the batch's total variance around its mean (0 is perfect, 1 is the mean)."""
    error = (recon_BM - x_BM).square().sum()
    variance = (x_BM - x_BM.mean(dim=0)).square().sum().clamp_min(1e-12)
    return (error / variance).item()

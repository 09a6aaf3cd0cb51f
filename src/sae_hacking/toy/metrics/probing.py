"""k-sparse probing over SAE latents for each true feature: how many latents a feature takes.

Adapts the k-sparse probing of Gurnee et al. (2023) as the absorption paper uses it to detect
feature splitting (Chanin et al., arXiv:2409.14507): for true feature n, the label of sample b is
``feature_acts[b, n] > 0``; latents are ranked by the difference of their mean activation on
positive and negative samples; for each k a logistic-regression probe is trained on the top k
latents (standardised) and scored by F1 on held-out samples. A feature that one latent carries
reaches its best F1 at k = 1; a feature split over several latents needs more.

``latents_needed[n]`` is the smallest k whose F1 is within ``tolerance`` of the best F1 over
k = 1..k_max. All probes (every feature, every k) train together as one batched problem: full-batch
Adam from zero weights, so results are deterministic.
"""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor


@dataclass(frozen=True)
class ProbingReport:
    """F1 of the k-sparse probes and the latents they use, ranked best first."""

    ranked_latents_NK: Int[Tensor, "N K"]
    f1_NK: Float[Tensor, "N K"]
    latents_needed_N: Int[Tensor, " N"]


@jaxtyped(typechecker=beartype)
def rank_latents(
    latent_acts_BE: Float[Tensor, "B E"], labels_BN: Bool[Tensor, "B N"], k_max: int
) -> Int[Tensor, "N K"]:
    """The ``k_max`` latents with the largest positive-minus-negative mean activation per feature."""
    pos_BN = labels_BN.to(latent_acts_BE.dtype)
    neg_BN = 1 - pos_BN
    mean_pos_NE = (pos_BN.T @ latent_acts_BE) / pos_BN.sum(0).clamp_min(1).unsqueeze(1)
    mean_neg_NE = (neg_BN.T @ latent_acts_BE) / neg_BN.sum(0).clamp_min(1).unsqueeze(1)
    return (mean_pos_NE - mean_neg_NE).topk(k_max, dim=1).indices


@jaxtyped(typechecker=beartype)
def k_sparse_probing(
    latent_acts_BE: Float[Tensor, "B E"],
    labels_BN: Bool[Tensor, "B N"],
    k_max: int = 4,
    steps: int = 300,
    lr: float = 0.1,
    tolerance: float = 0.01,
) -> ProbingReport:
    """Train k-sparse probes for every feature and k = 1..k_max (first half trains, second scores)."""
    if not 1 <= k_max <= latent_acts_BE.shape[1]:
        raise ValueError(f"k_max must be in 1..{latent_acts_BE.shape[1]}, got {k_max}")
    half = latent_acts_BE.shape[0] // 2
    ranked_NK = rank_latents(latent_acts_BE[:half], labels_BN[:half], k_max)
    # x_NBK[n, b, j] = activation of feature n's j-th ranked latent on sample b.
    x_NBK = latent_acts_BE.T[ranked_NK].transpose(1, 2)
    mean_NK = x_NBK[:, :half].mean(dim=1)
    std_NK = x_NBK[:, :half].std(dim=1).clamp_min(1e-6)
    x_NBK = (x_NBK - mean_NK.unsqueeze(1)) / std_NK.unsqueeze(1)
    # One probe per (feature, k): probe k sees the first k ranked latents only.
    use_KK = torch.ones(k_max, k_max, device=x_NBK.device).tril()
    x_NKBK = x_NBK.unsqueeze(1) * use_KK.unsqueeze(1)
    y_NB = labels_BN.T.to(x_NBK.dtype)
    w_NKK, b_NK = _fit_logistic(x_NKBK[:, :, :half], y_NB[:, :half], steps, lr)
    logits_NKB = (x_NKBK[:, :, half:] @ w_NKK.unsqueeze(-1)).squeeze(-1) + b_NK.unsqueeze(-1)
    f1_NK = _f1(logits_NKB > 0, labels_BN[half:].T.unsqueeze(1))
    best_N1 = f1_NK.max(dim=1, keepdim=True).values
    good_NK = f1_NK >= best_N1 - tolerance
    latents_needed_N = good_NK.float().argmax(dim=1) + 1
    return ProbingReport(ranked_NK, f1_NK, latents_needed_N)


def _fit_logistic(x_NKBK: Tensor, y_NB: Tensor, steps: int, lr: float) -> tuple[Tensor, Tensor]:
    """Batched full-batch logistic regression, class-balanced so rare features still count."""
    n, k, _, d = x_NKBK.shape
    w_NKK = torch.zeros(n, k, d, device=x_NKBK.device, requires_grad=True)
    b_NK = torch.zeros(n, k, device=x_NKBK.device, requires_grad=True)
    pos_N1 = y_NB.mean(dim=1, keepdim=True).clamp(1e-6, 1 - 1e-6)
    weight_NB = torch.where(y_NB > 0, 0.5 / pos_N1, 0.5 / (1 - pos_N1)).unsqueeze(1)
    target_NKB = y_NB.unsqueeze(1).expand(n, k, -1)
    optimizer = torch.optim.Adam([w_NKK, b_NK], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            logits_NKB = (x_NKBK @ w_NKK.unsqueeze(-1)).squeeze(-1) + b_NK.unsqueeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits_NKB, target_NKB, weight=weight_NB.expand_as(logits_NKB)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return w_NKK.detach(), b_NK.detach()


def _f1(pred_NKB: Tensor, truth_N1B: Tensor) -> Tensor:
    tp = (pred_NKB & truth_N1B).sum(-1).float()
    fp = (pred_NKB & ~truth_N1B).sum(-1).float()
    fn = (~pred_NKB & truth_N1B).sum(-1).float()
    return 2 * tp / (2 * tp + fp + fn).clamp_min(1)

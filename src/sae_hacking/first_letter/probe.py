"""One-vs-rest logistic probes: the ground-truth letter probe and the L1 probe on SAE latents.

Both use SAEBench 0.6's objective and schedule (``probing.train_multi_probe``): per-class binary
cross-entropy with positives weighted by negatives/positives (class-balanced), Adam with weight
decay, the learning rate decaying exponentially from ``lr`` to ``end_lr`` over the epochs, and for
the latent probe an L1 penalty ``l1 * mean over classes of sum |w|``.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

Rows = Callable[[Int[Tensor, " B"]], Float[Tensor, "B D"]]


@dataclass(frozen=True)
class Probe:
    """Weights and biases of C one-vs-rest probes over D inputs."""

    weight_CD: Float[Tensor, "C D"]
    bias_C: Float[Tensor, " C"]

    def scores(self, x_ND: Float[Tensor, "N D"]) -> Float[Tensor, "N C"]:
        return x_ND @ self.weight_CD.T + self.bias_C


MIN_BATCHES = 16


def batch_size_for(samples: int, configured: int) -> int:
    """``configured``, or less so that an epoch has at least 16 batches.

    SAEBench's batch sizes (64 for the letter probe, 4096 for the latent probe) assume Gemma's
    vocabulary (tens of thousands of words); on a few hundred words they leave the probes a few
    dozen Adam steps, and their init noise decides the ranking. Large vocabularies are unchanged.
    """
    return max(1, min(configured, math.ceil(samples / MIN_BATCHES)))


def one_hot(labels_N: Int[Tensor, " N"], classes: int) -> Float[Tensor, "N C"]:
    return torch.nn.functional.one_hot(labels_N, classes).float()


class Adam:
    """``torch.optim.Adam`` (L2 weight decay added to the gradient, bias-corrected moments).

    Written out because the first ``torch.optim`` optimizer imports torch._dynamo, 3-25 s here;
    tests check it step for step against torch's.
    """

    def __init__(
        self,
        params: list[Tensor],
        weight_decay: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params = params
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.steps = 0
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: tuple[Tensor, ...], lr: float) -> None:
        beta1, beta2 = self.betas
        self.steps += 1
        correction1 = 1 - beta1**self.steps
        correction2 = 1 - beta2**self.steps
        for param, grad, first, second in zip(
            self.params, grads, self.first, self.second, strict=True
        ):
            grad = grad + self.weight_decay * param if self.weight_decay else grad
            first.lerp_(grad, 1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denominator = (second.sqrt() / math.sqrt(correction2)).add_(self.eps)
            param.addcdiv_(first, denominator, value=-lr / correction1)


def train_probe(
    rows: Rows,
    labels_N: Int[Tensor, " N"],
    dim: int,
    classes: int,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    *,
    lr: float = 1e-2,
    end_lr: float = 1e-5,
    weight_decay: float = 1e-4,
    l1: float = 0.0,
) -> Probe:
    """Fit C one-vs-rest probes on ``rows(index)`` (the inputs of those samples, on the labels' device)."""
    device = labels_N.device
    n = labels_N.shape[0]
    y_NC = one_hot(labels_N, classes)
    positives_C = y_NC.sum(0)
    # A letter with no training word would give an infinite weight; it has no positives to weigh.
    pos_weight_C = (n - positives_C) / positives_C.clamp(min=1)
    bound = 1.0 / math.sqrt(dim)  # torch.nn.Linear's initialisation
    init = torch.rand(classes, dim + 1, generator=generator) * 2 * bound - bound
    weight_CD = init[:, :dim].contiguous().to(device)
    bias_C = init[:, dim].contiguous().to(device)
    adam = Adam([weight_CD, bias_C], weight_decay)
    gamma = math.exp(math.log(end_lr / lr) / epochs)
    with torch.no_grad():
        for epoch in range(epochs):
            order_N = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, batch_size):
                index_B = order_N[start : start + batch_size]
                x_BD = rows(index_B)
                y_BC = y_NC[index_B]
                sigmoid_BC = torch.sigmoid(x_BD @ weight_CD.T + bias_C)
                # d/dz of BCEWithLogitsLoss(pos_weight), mean over the batch's B x C entries,
                # written out: autograd's graph cost more than the probe's arithmetic here
                weighted_BC = pos_weight_C * y_BC
                grad_BC = (sigmoid_BC * (weighted_BC + 1 - y_BC) - weighted_BC) / y_BC.numel()
                grad_weight_CD = grad_BC.T @ x_BD
                if l1 > 0:  # l1 * mean over classes of sum |w|
                    grad_weight_CD += (l1 / classes) * weight_CD.sign()
                adam.step((grad_weight_CD, grad_BC.sum(0)), lr * gamma**epoch)
    return Probe(weight_CD, bias_C)


def f1_columns(
    predicted_ND: Bool[Tensor, "N D"], truth_ND: Bool[Tensor, "N D"]
) -> Float[Tensor, " D"]:
    """F1 of each column of predictions against its column of truth (0 where undefined, as sklearn)."""
    tp_D = (predicted_ND & truth_ND).sum(0).float()
    fp_D = (predicted_ND & ~truth_ND).sum(0).float()
    fn_D = (~predicted_ND & truth_ND).sum(0).float()
    denominator_D = 2 * tp_D + fp_D + fn_D
    return torch.where(denominator_D > 0, 2 * tp_D / denominator_D.clamp(min=1), 0.0)

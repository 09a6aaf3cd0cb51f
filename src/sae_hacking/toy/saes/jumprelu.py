"""A JumpReLU SAE as sae-lens 6 trains it (Rajamanoharan et al. 2024), with a target L0.

Latent e is ``z_e`` where ``z_e > theta_e`` and 0 elsewhere. The threshold learns through a
straight-through estimator with a rectangle kernel of width ``bandwidth`` (DeepMind's: the
encoder gets no gradient through the jump). The sparsity loss is sae-lens's "quadratic" mode
(Gemma Scope 2): ``l0_coefficient * 2 / target * (L0 - target)^2`` per sample, with L0 counted by
the same estimator, so one run lands near the asked-for L0 without a coefficient sweep.
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.toy.protocol import LossParts
from sae_hacking.toy.saes.weights import TiedInitSAE, kaiming_rows, reconstruction_error


@dataclass(frozen=True)
class JumpReLUShape:
    """Everything needed to rebuild a ``JumpReLUSAE``."""

    model_dim: int
    width: int
    target_l0: float | int
    l0_coefficient: float = 1.0
    bandwidth: float = 0.05
    init_threshold: float = 0.01
    decoder_init_norm: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.target_l0 <= self.width:
            raise ValueError(f"target L0 {self.target_l0} must lie in (0, width={self.width}]")
        if self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive")

    @property
    def architecture(self) -> str:
        return "jumprelu"


def rectangle(x: Tensor) -> Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x.dtype)


class JumpGate(torch.autograd.Function):
    """``pre * (pre > threshold)``; the threshold's gradient through a rectangle kernel."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # pyright: ignore[reportIncompatibleMethodOverride]
        pre, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        kernel = rectangle((pre - threshold) / bandwidth)
        threshold_grad = (-(threshold / bandwidth) * kernel * grad).sum(0)
        return grad * (pre > threshold), threshold_grad, None


class StepCount(torch.autograd.Function):
    """``pre > threshold`` as 0/1; the threshold's gradient through a rectangle kernel."""

    @staticmethod
    def forward(ctx: Any, pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:  # pyright: ignore[reportIncompatibleMethodOverride]
        pre, threshold = ctx.saved_tensors
        bandwidth = ctx.bandwidth
        kernel = rectangle((pre - threshold) / bandwidth)
        return None, (-(1.0 / bandwidth) * kernel * grad).sum(0), None


class JumpReLUSAE(TiedInitSAE):
    """A ``ToySAE`` with a learned threshold per latent."""

    shape: JumpReLUShape

    def __init__(self, shape: JumpReLUShape, generator: torch.Generator) -> None:
        W_dec_EM = kaiming_rows(shape.width, shape.model_dim, shape.decoder_init_norm, generator)
        super().__init__(shape, W_dec_EM, train_decoder_bias=True)
        self.threshold_E = nn.Parameter(
            torch.full((shape.width,), shape.init_threshold, device=generator.device)
        )

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        pre_BE = self.preactivations(x_BM)
        return pre_BE * (pre_BE > self.threshold_E)

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        return torch.addmm(self.b_dec_M, self.encode_dense(x_BM), self.W_dec_EM)

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        shape = self.shape
        pre_BE = self.preactivations(x_BM)
        acts_BE = JumpGate.apply(pre_BE, self.threshold_E, shape.bandwidth)
        recon_BM = torch.addmm(self.b_dec_M, acts_BE, self.W_dec_EM)  # pyright: ignore[reportArgumentType]
        mse = reconstruction_error(recon_BM, x_BM)
        l0_B = StepCount.apply(pre_BE, self.threshold_E, shape.bandwidth).sum(-1)  # pyright: ignore[reportOptionalMemberAccess]
        target = shape.target_l0
        l0_loss = shape.l0_coefficient * (2 / target * (l0_B - target).square()).mean()
        return LossParts(mse + l0_loss, {"mse": mse.detach(), "l0": l0_B.detach().mean()})

    @torch.no_grad()
    def after_step(self) -> None:
        """Keep thresholds non-negative (below zero the gate would pass negative values)."""
        self.threshold_E.clamp_(min=0.0)

"""Hand-built SAEs on one parent (feature 0) with three children (features 1-3)."""

from dataclasses import dataclass

import torch
from torch import Tensor

PARENT_N = torch.tensor([-1, 0, 0, 0])
MODEL_DIM = 6


@dataclass(frozen=True)
class HandSAE:
    encoder_EM: Tensor
    decoder_EM: Tensor

    def encode(self, x_BM: Tensor) -> Tensor:
        return torch.relu(x_BM @ self.encoder_EM.T)


def features() -> Tensor:
    return torch.eye(4, MODEL_DIM)


def hierarchy_samples() -> tuple[Tensor, Tensor]:
    """Every case once: parent with each child, parent alone, nothing; magnitudes 1."""
    acts_BN = torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])
    return acts_BN @ features(), acts_BN


def absorbing_sae(strength: float, child_carries: float) -> HandSAE:
    """Parent latent 0 subtracts ``strength`` of each child; child latents decode ``child_carries`` of the parent."""
    u = features()
    encoder = u.clone()
    encoder[0] = u[0] - strength * u[1:].sum(0)
    decoder = u.clone()
    decoder[1:] = u[1:] + child_carries * u[0]
    return HandSAE(encoder, decoder)


def perfect_sae() -> HandSAE:
    return HandSAE(features(), features())


def hedging_sae(beta: float) -> HandSAE:
    """A parent latent that decodes and encodes ``beta`` of every child along with the parent."""
    u = features()
    mixed = u.clone()
    mixed[0] = u[0] + beta * u[1:].sum(0)
    return HandSAE(mixed, mixed)

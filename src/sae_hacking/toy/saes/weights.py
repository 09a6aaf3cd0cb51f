"""The weights every toy SAE here shares: a linear encoder started as the decoder's transpose.

``TopKSAE``, ``MatryoshkaSAE``, ``BatchTopKSAE`` and ``JumpReLUSAE`` differ in how they pick
latents, how their decoder is first drawn and how they score the reconstruction; the parameters,
the tied initialisation, the pre-activations, the reconstruction error and loading known
directions live here once.
"""

import math
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.core.similarity import unit_rows


def random_unit_rows(
    rows: int, model_dim: int, norm: float, generator: torch.Generator
) -> Float[Tensor, "D M"]:
    """Random directions of a given norm, on the generator's device."""
    raw_DM = torch.randn(rows, model_dim, generator=generator, device=generator.device)
    return norm * unit_rows(raw_DM)


def kaiming_rows(
    rows: int, model_dim: int, norm: float, generator: torch.Generator
) -> Float[Tensor, "D M"]:
    """sae-lens's start: kaiming-uniform rows, U(-b, b) with b = sqrt(6 / M), scaled to ``norm``."""
    bound = math.sqrt(6 / model_dim)
    raw_DM = torch.rand(rows, model_dim, generator=generator, device=generator.device)
    W_DM = (2 * raw_DM - 1) * bound
    return W_DM / W_DM.norm(dim=1, keepdim=True) * norm


def reconstruction_error(recon_BM: Float[Tensor, "B M"], x_BM: Float[Tensor, "B M"]) -> Tensor:
    """Squared error summed over the model dimension, averaged over the batch (as sae-lens)."""
    # One fused kernel (and one in backward) instead of sub, square, sum and mean.
    return F.mse_loss(recon_BM, x_BM, reduction="sum") / x_BM.shape[0]


class TiedInitSAE(nn.Module):
    """The given decoder rows, the encoder as their transpose, zero biases.

    ``shape`` is the frozen dataclass that rebuilds the SAE (its checkpointed hyperparameters).
    ``train_decoder_bias=False`` keeps ``b_dec_M`` at zero (a frozen parameter, so checkpoints
    keep one layout). The encoder is stored as the decoder's transposed copy, column-major, so
    ``W_enc_ME.T`` is a contiguous E x M matrix.
    """

    def __init__(
        self, shape: Any, W_dec_EM: Float[Tensor, "E M"], train_decoder_bias: bool
    ) -> None:
        super().__init__()
        self.shape = shape
        self.width, model_dim = W_dec_EM.shape
        device = W_dec_EM.device
        self.W_dec_EM = nn.Parameter(W_dec_EM)
        self.W_enc_ME = nn.Parameter(W_dec_EM.T.clone())
        self.b_enc_E = nn.Parameter(torch.zeros(self.width, device=device))
        self.b_dec_M = nn.Parameter(
            torch.zeros(model_dim, device=device), requires_grad=train_decoder_bias
        )

    def hyperparameters(self) -> dict[str, Any]:
        return asdict(self.shape)

    def preactivations(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        return torch.addmm(self.b_enc_E, x_BM - self.b_dec_M, self.W_enc_ME)

    def decoder_directions(self) -> Float[Tensor, "E M"]:
        return self.W_dec_EM

    def encoder_directions(self) -> Float[Tensor, "E M"]:
        return self.W_enc_ME.T

    @torch.no_grad()
    def load_directions(self, directions_DM: Float[Tensor, "D M"]) -> None:
        """Set the first D decoder rows (and the matching encoder columns) to given directions."""
        rows = min(directions_DM.shape[0], self.width)
        self.W_dec_EM[:rows] = directions_DM[:rows]
        self.W_enc_ME[:, :rows] = directions_DM[:rows].T

"""The weights every toy SAE here shares: a linear encoder started as the decoder's transpose.

``TopKSAE`` and ``MatryoshkaSAE`` differ only in how they pick latents and score the
reconstruction; the parameters, their initialisation, the pre-activations and loading known
directions live here once.
"""

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.core.similarity import unit_rows


def random_unit_rows(
    rows: int, model_dim: int, norm: float, generator: torch.Generator
) -> Float[Tensor, "D M"]:
    """Random directions of a given norm, on the generator's device."""
    raw_DM = torch.randn(rows, model_dim, generator=generator, device=generator.device)
    return norm * unit_rows(raw_DM)


class TiedInitSAE(nn.Module):
    """Unit-norm random decoder rows, the encoder as their transpose, zero biases.

    ``train_decoder_bias=False`` keeps ``b_dec_M`` at zero (a frozen parameter, so checkpoints
    keep one layout).
    """

    def __init__(
        self, width: int, model_dim: int, generator: torch.Generator, train_decoder_bias: bool
    ) -> None:
        super().__init__()
        self.width = width
        device = generator.device
        W_dec_EM = random_unit_rows(width, model_dim, 1.0, generator)
        self.W_dec_EM = nn.Parameter(W_dec_EM)
        self.W_enc_ME = nn.Parameter(W_dec_EM.T.clone())
        self.b_enc_E = nn.Parameter(torch.zeros(width, device=device))
        self.b_dec_M = nn.Parameter(
            torch.zeros(model_dim, device=device), requires_grad=train_decoder_bias
        )

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

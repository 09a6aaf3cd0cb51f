"""A top-k SAE with sparse codes, an encoder initialised as the decoder's transpose, optional AuxK."""

from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from sae_hacking.core.similarity import unit_rows
from sae_hacking.core.topk import densify, topk_decode, topk_encode
from sae_hacking.toy.auxk import AuxKSettings, reconstruction_loss_with_auxk
from sae_hacking.toy.protocol import LossParts


@dataclass(frozen=True)
class TopKShape:
    """Everything needed to rebuild a ``TopKSAE`` (stored in checkpoints)."""

    model_dim: int
    width: int
    k: int
    aux_k: int = 0
    aux_coefficient: float = 1 / 32
    dead_after_steps: int = 200
    # Off by default: with exactly k features per sample and exactly k latents per code, a
    # decoder bias b is free to drift, every row absorbing -b/k (measured: parent cosine 0.8
    # with it, 0.96 without, on the perturbed-children data).
    decoder_bias: bool = False

    def auxk_settings(self) -> AuxKSettings:
        return AuxKSettings(self.aux_k, self.aux_coefficient, self.dead_after_steps)


def random_unit_rows(
    rows: int, model_dim: int, norm: float, generator: torch.Generator
) -> Float[Tensor, "D M"]:
    """Random directions of a given norm, on the generator's device."""
    raw_DM = torch.randn(rows, model_dim, generator=generator, device=generator.device)
    return norm * unit_rows(raw_DM)


def reconstruction_error(recon_BM: Float[Tensor, "B M"], x_BM: Float[Tensor, "B M"]) -> Tensor:
    """Squared error summed over the model dimension, averaged over the batch."""
    return (recon_BM - x_BM).square().sum(-1).mean()


class TopKSAE(nn.Module):
    """Keep the ``k`` largest pre-activations (ReLU'd); decode from the sparse code."""

    def __init__(self, shape: TopKShape, generator: torch.Generator) -> None:
        super().__init__()
        if not 1 <= shape.k <= shape.width:
            raise ValueError(f"k={shape.k} must lie in [1, width={shape.width}]")
        self.shape = shape
        self.width = shape.width
        self.k = shape.k
        device = generator.device
        W_dec_EM = random_unit_rows(shape.width, shape.model_dim, 1.0, generator)
        self.W_dec_EM = nn.Parameter(W_dec_EM)
        self.W_enc_ME = nn.Parameter(W_dec_EM.T.clone())
        self.b_enc_E = nn.Parameter(torch.zeros(shape.width, device=device))
        self.b_dec_M = nn.Parameter(
            torch.zeros(shape.model_dim, device=device), requires_grad=shape.decoder_bias
        )
        self.register_buffer(
            "steps_since_fired_E", torch.zeros(shape.width, dtype=torch.int64, device=device)
        )

    def hyperparameters(self) -> dict[str, Any]:
        return asdict(self.shape)

    def preactivations(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        return torch.addmm(self.b_enc_E, x_BM - self.b_dec_M, self.W_enc_ME)

    def encode(self, x_BM: Float[Tensor, "B M"]) -> tuple[Float[Tensor, "B K"], Int[Tensor, "B K"]]:
        return topk_encode(self.preactivations(x_BM), self.k)

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        acts_BK, idx_BK = self.encode(x_BM)
        return densify(acts_BK, idx_BK, self.width)

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        acts_BK, idx_BK = self.encode(x_BM)
        return topk_decode(acts_BK, idx_BK, self.W_dec_EM, self.b_dec_M)

    def decoder_directions(self) -> Float[Tensor, "E M"]:
        return self.W_dec_EM

    def encoder_directions(self) -> Float[Tensor, "E M"]:
        return self.W_enc_ME.T

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        pre_BE = self.preactivations(x_BM)
        acts_BK, idx_BK = topk_encode(pre_BE, self.k)
        recon_BM = topk_decode(acts_BK, idx_BK, self.W_dec_EM, self.b_dec_M)
        mse = reconstruction_error(recon_BM, x_BM)
        steps_since_fired_E: Tensor = self.steps_since_fired_E  # pyright: ignore[reportAssignmentType]
        return reconstruction_loss_with_auxk(
            mse,
            pre_BE,
            x_BM - recon_BM,
            (acts_BK, idx_BK),
            steps_since_fired_E,
            self.W_dec_EM,
            self.shape.auxk_settings(),
        )

    @torch.no_grad()
    def load_directions(self, directions_DM: Float[Tensor, "D M"]) -> None:
        """Set the first D decoder rows (and the matching encoder columns) to given directions."""
        rows = min(directions_DM.shape[0], self.width)
        self.W_dec_EM[:rows] = directions_DM[:rows]
        self.W_enc_ME[:, :rows] = directions_DM[:rows].T

"""A top-k SAE with sparse codes, an encoder initialised as the decoder's transpose, optional AuxK."""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.topk import densify, topk_decode, topk_encode
from sae_hacking.toy.protocol import LossParts
from sae_hacking.toy.saes.auxk import AuxKSettings, reconstruction_loss_with_auxk
from sae_hacking.toy.saes.sparse_code import decode_top_k, top_k
from sae_hacking.toy.saes.weights import TiedInitSAE, random_unit_rows, reconstruction_error

__all__ = ["TopKSAE", "TopKShape", "random_unit_rows", "reconstruction_error"]


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


class TopKSAE(TiedInitSAE):
    """Keep the ``k`` largest pre-activations (ReLU'd); decode from the sparse code."""

    def __init__(self, shape: TopKShape, generator: torch.Generator) -> None:
        if not 1 <= shape.k <= shape.width:
            raise ValueError(f"k={shape.k} must lie in [1, width={shape.width}]")
        W_dec_EM = random_unit_rows(shape.width, shape.model_dim, 1.0, generator)
        super().__init__(shape, W_dec_EM, shape.decoder_bias)
        self.k = shape.k
        self.register_buffer(
            "steps_since_fired_E",
            torch.zeros(shape.width, dtype=torch.int64, device=generator.device),
        )

    def encode(self, x_BM: Float[Tensor, "B M"]) -> tuple[Float[Tensor, "B K"], Int[Tensor, "B K"]]:
        return topk_encode(self.preactivations(x_BM), self.k)

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        acts_BK, idx_BK = self.encode(x_BM)
        return densify(acts_BK, idx_BK, self.width)

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        acts_BK, idx_BK = self.encode(x_BM)
        return topk_decode(acts_BK, idx_BK, self.W_dec_EM, self.b_dec_M)

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        # The training step calls the unchecked kernels: see toy/saes/sparse_code.py.
        pre_BE = self.preactivations(x_BM)
        acts_BK, idx_BK = top_k(pre_BE, self.k)
        recon_BM = decode_top_k(acts_BK, idx_BK, self.W_dec_EM, self.b_dec_M)
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

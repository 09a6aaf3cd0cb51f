"""Matryoshka SAEs (nested prefixes of latents, each trained to reconstruct alone), top-k or L1.

Follows the hedging paper's ``MatryoshkaSAE`` (Chanin et al., after Bussmann et al. and Nabeshima):
``prefix_widths = (w_1, ..., w_L)``; level i decodes with latents ``[0, w_i)`` and adds
``m_i * (MSE_i + L1_i)`` to the loss (``m_i`` is ``level_multipliers[i]``, the balancing knob).
With ``detach_earlier`` (the notebook's "delta loss") level i sees level i-1's reconstruction
detached, so outer levels exert no pull on inner latents and its L1 covers only its new latents
``[w_{i-1}, w_i)``; otherwise its L1 covers ``[0, w_i)``. The outer loss is the ordinary full-width
SAE loss, added with ``outer_multiplier`` unless ``skip_outer_loss`` (when the last prefix is the
full width it would repeat that level). One level of full width with the outer loss skipped is a
standard SAE.

Sparsity is top-k (ReLU on the kept values) or L1: ReLU activations with the penalty
``l1_coefficient * sum_e z_e |W_dec[e]|`` (the penalty scaled by decoder norm, as the notebook's
SAEs, whose decoders are not normalised). MSE is summed over the model dimension and averaged
over the batch.
"""

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.topk import densify, topk_encode
from sae_hacking.toy.protocol import LossParts
from sae_hacking.toy.saes.weights import TiedInitSAE, random_unit_rows, reconstruction_error

Sparsity = Literal["topk", "l1"]


@dataclass(frozen=True)
class MatryoshkaShape:
    """Everything needed to rebuild a ``MatryoshkaSAE`` (stored in checkpoints)."""

    model_dim: int
    width: int
    prefix_widths: tuple[int, ...]
    level_multipliers: tuple[float, ...]
    sparsity: Sparsity = "topk"
    k: int = 1
    l1_coefficient: float = 0.0
    detach_earlier: bool = False
    skip_outer_loss: bool = True
    outer_multiplier: float = 1.0

    def __post_init__(self) -> None:
        widths = self.prefix_widths
        if not widths or any(b <= a for a, b in itertools.pairwise(widths)):
            raise ValueError(f"prefix widths {widths} must be strictly increasing")
        if widths[0] < 1 or widths[-1] > self.width:
            raise ValueError(f"prefix widths {widths} must lie in [1, width={self.width}]")
        if len(self.level_multipliers) != len(widths):
            raise ValueError(
                f"{len(self.level_multipliers)} level multipliers for {len(widths)} prefixes"
            )
        if any(m < 0 for m in self.level_multipliers) or self.outer_multiplier < 0:
            raise ValueError("loss multipliers must be non-negative")
        if self.sparsity == "topk" and not 1 <= self.k <= self.width:
            raise ValueError(f"k={self.k} must lie in [1, width={self.width}]")
        if self.l1_coefficient < 0:
            raise ValueError("l1_coefficient must be non-negative")
        if self.skip_outer_loss and widths[-1] < self.width:
            raise ValueError(
                f"latents beyond the last prefix ({widths[-1]}) would get no loss; "
                "end the prefixes at the width or keep the outer loss"
            )


class MatryoshkaSAE(TiedInitSAE):
    """A ``ToySAE`` whose loss reconstructs from every prefix of its latents."""

    def __init__(self, shape: MatryoshkaShape, generator: torch.Generator) -> None:
        W_dec_EM = random_unit_rows(shape.width, shape.model_dim, 1.0, generator)
        super().__init__(shape, W_dec_EM, train_decoder_bias=True)

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        pre_BE = self.preactivations(x_BM)
        if self.shape.sparsity == "l1":
            return torch.relu(pre_BE)
        acts_BK, idx_BK = topk_encode(pre_BE, self.shape.k)
        return densify(acts_BK, idx_BK, self.width)

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        return self.encode_dense(x_BM) @ self.W_dec_EM + self.b_dec_M

    def l1_penalty(self, acts_BE: Float[Tensor, "B E"], start: int, stop: int) -> Tensor:
        """``l1_coefficient`` times the decoder-norm-weighted L1 of latents ``[start, stop)``."""
        if self.shape.sparsity != "l1":
            return acts_BE.new_zeros(())
        norms_E = self.W_dec_EM[start:stop].norm(dim=1)
        return self.shape.l1_coefficient * (acts_BE[:, start:stop] * norms_E).sum(-1).mean()

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        shape = self.shape
        acts_BE = self.encode_dense(x_BM)
        parts: dict[str, float | Tensor] = {}
        total = x_BM.new_zeros(())
        decoded_BM = torch.zeros_like(x_BM)
        start = 0
        for level, (stop, multiplier) in enumerate(
            zip(shape.prefix_widths, shape.level_multipliers, strict=True)
        ):
            if shape.detach_earlier:
                decoded_BM = decoded_BM.detach()
            decoded_BM = decoded_BM + acts_BE[:, start:stop] @ self.W_dec_EM[start:stop]
            mse = reconstruction_error(decoded_BM + self.b_dec_M, x_BM)
            l1 = self.l1_penalty(acts_BE, start if shape.detach_earlier else 0, stop)
            total = total + multiplier * (mse + l1)
            parts[f"mse_level{level}"] = mse.detach()
            start = stop
        if not shape.skip_outer_loss:
            mse = reconstruction_error(acts_BE @ self.W_dec_EM + self.b_dec_M, x_BM)
            total = total + shape.outer_multiplier * (mse + self.l1_penalty(acts_BE, 0, self.width))
            parts["mse_outer"] = mse.detach()
        parts["l0"] = (acts_BE > 0).float().sum(-1).mean().detach()
        return LossParts(total, parts)


def parse_ordering(text: str, num_features: int) -> Int[Tensor, " D"]:
    """``"0,2,1"`` as feature indices: distinct, each in ``[0, num_features)``."""
    try:
        order = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"'{text}' is not a comma-separated list of integers") from error
    if not order or len(set(order)) != len(order):
        raise ValueError(f"'{text}' must list distinct feature indices")
    if min(order) < 0 or max(order) >= num_features:
        raise ValueError(f"'{text}' has indices outside [0, {num_features})")
    return torch.tensor(order, dtype=torch.long)


def truth_directions(
    features_NM: Float[Tensor, "N M"],
    ordering_D: Int[Tensor, " D"],
    noise: float,
    generator: torch.Generator,
) -> Float[Tensor, "D M"]:
    """The true features in the given order, plus Gaussian noise of scale ``noise``.

    Latent i of an SAE loaded with these starts as feature ``ordering[i]`` (the notebook's
    ``init_sae_to_match_model``): put the parent first to make it the inner Matryoshka latent.
    """
    chosen_DM = features_NM[ordering_D.to(features_NM.device)]
    if noise == 0:
        return chosen_DM.clone()
    draw_DM = torch.randn(
        chosen_DM.shape, generator=generator, device=generator.device, dtype=chosen_DM.dtype
    )
    return chosen_DM + noise * draw_DM.to(chosen_DM.device)

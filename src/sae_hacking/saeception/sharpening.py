"""Sharpened targets: an SAE code cut down to a few latents and decoded, or a random control.

- ``per-class``: each class keeps its ``keep`` latents of largest mean activation over its training
  examples; an example's target decodes its own code restricted to its class's latents.
- ``per-example``: each example keeps its own ``keep`` largest latents.
- ``random``: a random unit vector per example (the control: a target with no SAE in it).
- ``none``: no target (the control for the extra epochs alone).

An example whose kept latents are all silent gets a zero target, which pulls on nothing (the
cosine's gradient vanishes with the target).
"""

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.similarity import unit_rows


@jaxtyped(typechecker=beartype)
def class_mean_codes(
    codes_BE: Float[Tensor, "B E"], labels_B: Int[Tensor, " B"], classes: int
) -> Float[Tensor, "L E"]:
    """Each class's mean code (zero for a class without examples)."""
    sums_LE = codes_BE.new_zeros(classes, codes_BE.shape[1]).index_add_(0, labels_B, codes_BE)
    counts_L = torch.bincount(labels_B, minlength=classes).clamp_min(1)
    return sums_LE / counts_L.unsqueeze(1).to(codes_BE.dtype)


@jaxtyped(typechecker=beartype)
def class_latent_mask(
    codes_BE: Float[Tensor, "B E"], labels_B: Int[Tensor, " B"], classes: int, keep: int
) -> Bool[Tensor, "L E"]:
    """Each class's ``keep`` latents of largest mean activation."""
    means_LE = class_mean_codes(codes_BE, labels_B, classes)
    idx_LK = means_LE.topk(keep, dim=1).indices
    return torch.zeros_like(means_LE, dtype=torch.bool).scatter_(1, idx_LK, True)


@jaxtyped(typechecker=beartype)
def per_class_codes(
    codes_BE: Float[Tensor, "B E"], labels_B: Int[Tensor, " B"], mask_LE: Bool[Tensor, "L E"]
) -> Float[Tensor, "B E"]:
    """Every example's code restricted to its class's latents."""
    return codes_BE * mask_LE[labels_B]


@jaxtyped(typechecker=beartype)
def per_example_codes(codes_BE: Float[Tensor, "B E"], keep: int) -> Float[Tensor, "B E"]:
    """Every example's code restricted to its own ``keep`` largest latents."""
    vals_BK, idx_BK = codes_BE.topk(keep, dim=1)
    return torch.zeros_like(codes_BE).scatter_(1, idx_BK, vals_BK)


@jaxtyped(typechecker=beartype)
def decode_codes(
    codes_BE: Float[Tensor, "B E"], W_dec_EM: Float[Tensor, "E M"], b_dec_M: Float[Tensor, " M"]
) -> Float[Tensor, "B M"]:
    """The SAE's decoder applied to (sharpened) codes."""
    return torch.addmm(b_dec_M, codes_BE, W_dec_EM)


def random_unit_targets(rows: int, dim: int, generator: torch.Generator) -> Float[Tensor, "B M"]:
    """One random unit vector per example, drawn from ``generator`` on its device."""
    return unit_rows(torch.randn(rows, dim, generator=generator, device=generator.device))


@jaxtyped(typechecker=beartype)
def sharpened_targets(
    strategy: str,
    codes_BE: Float[Tensor, "B E"],
    labels_B: Int[Tensor, " B"],
    W_dec_EM: Float[Tensor, "E M"],
    b_dec_M: Float[Tensor, " M"],
    classes: int,
    keep: int,
    generator: torch.Generator,
) -> Float[Tensor, "B M"] | None:
    """The targets of one strategy for the training examples (None for ``none``)."""
    if strategy == "per-class":
        mask_LE = class_latent_mask(codes_BE, labels_B, classes, keep)
        return decode_codes(per_class_codes(codes_BE, labels_B, mask_LE), W_dec_EM, b_dec_M)
    if strategy == "per-example":
        return decode_codes(per_example_codes(codes_BE, keep), W_dec_EM, b_dec_M)
    if strategy == "random":
        return random_unit_targets(codes_BE.shape[0], W_dec_EM.shape[1], generator)
    if strategy == "none":
        return None
    raise ValueError(f"unknown strategy {strategy!r}")

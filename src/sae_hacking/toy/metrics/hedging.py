"""Hedging and absorption read off the weights: the hedging paper's cosine heat-maps as numbers.

Chanin et al., "Feature Hedging: Correlated Features Break Narrow Sparse Autoencoders", plot the
cosine of every latent's encoder and decoder with every true feature. Two opposite signatures sit in
the row of a parent's latent ``l`` (its best match), in the columns of the parent's children ``c``:

- hedging: the decoder mixes in its children, ``cos(W_dec[l], u_c) > 0`` (a narrow SAE's parent
  latent reconstructs the average child along with the parent; the encoder usually follows);
- absorption: the encoder subtracts its children, ``cos(W_enc[l], u_c) < 0``, so the parent
  latent switches off where a child fires, while the child's latent ``l_c`` decodes the parent too,
  ``cos(W_dec[l_c], u_p) > 0``.

Per parent, each score is the mean over its children of the positive part of the relevant cosine:

- ``decoder_hedging = mean_c max(0, cos(W_dec[l], u_c))``
- ``encoder_hedging = mean_c max(0, cos(W_enc[l], u_c))``
- ``encoder_absorption = mean_c max(0, -cos(W_enc[l], u_c))``
- ``child_decoder_parent = mean_c max(0, cos(W_dec[l_c], u_p))``

All are 0 for an SAE whose latents are the true features, and lie in [0, 1]. The signed per-edge
cosines are kept as well (``*_D``, one entry per parent-child edge) for unbalanced hierarchies,
where one child may be hedged while another is absorbed.
"""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.similarity import cosine_matrix


@dataclass(frozen=True)
class HedgingReport:
    """Per-parent and per-edge cosine scores; edges are (``edge_parent_D``, ``edge_child_D``)."""

    parents_A: Int[Tensor, " A"]
    decoder_hedging_A: Float[Tensor, " A"]
    encoder_hedging_A: Float[Tensor, " A"]
    encoder_absorption_A: Float[Tensor, " A"]
    child_decoder_parent_A: Float[Tensor, " A"]
    edge_parent_D: Int[Tensor, " D"]
    edge_child_D: Int[Tensor, " D"]
    decoder_cos_D: Float[Tensor, " D"]
    encoder_cos_D: Float[Tensor, " D"]
    child_decoder_parent_cos_D: Float[Tensor, " D"]

    def means(self) -> dict[str, float]:
        """Each per-parent score averaged over parents."""
        return {
            "decoder_hedging": self.decoder_hedging_A.mean().item(),
            "encoder_hedging": self.encoder_hedging_A.mean().item(),
            "encoder_absorption": self.encoder_absorption_A.mean().item(),
            "child_decoder_parent": self.child_decoder_parent_A.mean().item(),
        }


@jaxtyped(typechecker=beartype)
def hedging_scores(
    encoder_EM: Float[Tensor, "E M"],
    decoder_EM: Float[Tensor, "E M"],
    features_NM: Float[Tensor, "N M"],
    parent_N: Int[Tensor, " N"],
    latent_N: Int[Tensor, " N"],
) -> HedgingReport:
    """Hedging and absorption signatures of every parent's latent (see module docstring).

    ``latent_N`` is each feature's main latent (-1 where it has none: its cosines count as 0).
    """
    enc_cos_NE = cosine_matrix(features_NM, encoder_EM)
    dec_cos_NE = cosine_matrix(features_NM, decoder_EM)
    child_D = (parent_N >= 0).nonzero().squeeze(1)
    parent_D = parent_N[child_D]
    decoder_cos_D = _cos_at(dec_cos_NE, child_D, latent_N[parent_D])
    encoder_cos_D = _cos_at(enc_cos_NE, child_D, latent_N[parent_D])
    child_decoder_parent_cos_D = _cos_at(dec_cos_NE, parent_D, latent_N[child_D])
    parents_A, edge_to_parent_D = parent_D.unique(return_inverse=True)

    def per_parent(values_D: Tensor) -> Tensor:
        sums_A = values_D.new_zeros(parents_A.shape[0]).index_add(0, edge_to_parent_D, values_D)
        counts_A = torch.bincount(edge_to_parent_D, minlength=parents_A.shape[0])
        return sums_A / counts_A.clamp_min(1)

    return HedgingReport(
        parents_A=parents_A,
        decoder_hedging_A=per_parent(decoder_cos_D.clamp_min(0)),
        encoder_hedging_A=per_parent(encoder_cos_D.clamp_min(0)),
        encoder_absorption_A=per_parent((-encoder_cos_D).clamp_min(0)),
        child_decoder_parent_A=per_parent(child_decoder_parent_cos_D.clamp_min(0)),
        edge_parent_D=parent_D,
        edge_child_D=child_D,
        decoder_cos_D=decoder_cos_D,
        encoder_cos_D=encoder_cos_D,
        child_decoder_parent_cos_D=child_decoder_parent_cos_D,
    )


def _cos_at(cos_NE: Tensor, feature_D: Tensor, latent_D: Tensor) -> Tensor:
    """``cos_NE[feature, latent]`` per edge, 0 where the latent is missing (-1)."""
    has_D = latent_D >= 0
    values_D = cos_NE[feature_D, latent_D.clamp_min(0)]
    return torch.where(has_D, values_D, torch.zeros_like(values_D))

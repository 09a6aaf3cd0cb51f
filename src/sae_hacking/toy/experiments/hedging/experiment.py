"""The hedging-versus-absorption experiment: train standard, detached and balanced Matryoshka SAEs
on one parent with children and score each against the truth.

Reproduces the hedging paper's notebook "Balancing Hedging and Absorption in Matryoshka SAEs": a
standard SAE absorbs the parent into its children's latents, a Matryoshka SAE whose inner level
is detached from the outer one (inner multiplier beta = infinity) hedges (its parent latent mixes in
the children), and an inner-loss multiplier around 0.25 balances the two pressures. With unequal
child probabilities the best beta differs per child, so no single value balances them all.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.metrics.absorption import (
    AbsorptionThresholds,
    absorption_scores,
    best_match_latents,
    main_latent_mask,
)
from sae_hacking.toy.metrics.hedging import hedging_scores
from sae_hacking.toy.metrics.probing import k_sparse_probing
from sae_hacking.toy.saes.matryoshka import MatryoshkaSAE, MatryoshkaShape, truth_directions
from sae_hacking.toy.training.loop import TrainSettings
from sae_hacking.toy.training.schedule import Schedule


@dataclass(frozen=True)
class Variant:
    """One SAE configuration: ``inner_multiplier`` is None for standard, inf for detached."""

    name: str
    inner_multiplier: float | None

    @property
    def beta_label(self) -> str:
        if self.inner_multiplier is None:
            return "0"
        return "inf" if math.isinf(self.inner_multiplier) else f"{self.inner_multiplier:g}"


def variants(inner_multipliers: tuple[float, ...]) -> list[Variant]:
    """Standard, detached, then one balanced Matryoshka SAE per inner multiplier."""
    balanced = [Variant(f"balanced {m:g}", m) for m in inner_multipliers]
    return [Variant("standard", None), Variant("detached", math.inf), *balanced]


@dataclass(frozen=True)
class SAESettings:
    """The SAE family shared by every variant (the notebook's: L1 3e-2, width = features)."""

    width: int
    inner_width: int = 1
    sparsity: str = "l1"
    k: int = 1
    l1_coefficient: float = 3e-2


def variant_shape(variant: Variant, model_dim: int, settings: SAESettings) -> MatryoshkaShape:
    """The Matryoshka shape of a variant; the inner prefix holds the parent's latent."""
    common: dict[str, Any] = {
        "model_dim": model_dim,
        "width": settings.width,
        "sparsity": settings.sparsity,
        "k": settings.k,
        "l1_coefficient": settings.l1_coefficient,
        "skip_outer_loss": True,
    }
    beta = variant.inner_multiplier
    if beta is None:
        return MatryoshkaShape(prefix_widths=(settings.width,), level_multipliers=(1.0,), **common)
    widths = (settings.inner_width, settings.width)
    if math.isinf(beta):
        return MatryoshkaShape(
            prefix_widths=widths, level_multipliers=(1.0, 1.0), detach_earlier=True, **common
        )
    return MatryoshkaShape(prefix_widths=widths, level_multipliers=(beta, 1.0), **common)


def build_sae(
    variant: Variant,
    source: TreeSource | SyntheticSource,
    settings: SAESettings,
    ordering: Tensor | None,
    init_noise: float,
    generator: torch.Generator,
) -> MatryoshkaSAE:
    """A fresh SAE for a variant, started at the true features when ``ordering`` is given."""
    shape = variant_shape(variant, source.features_NM.shape[1], settings)
    sae = MatryoshkaSAE(shape, generator)
    if ordering is not None:
        sae.load_directions(truth_directions(source.features_NM, ordering, init_noise, generator))
    return sae


def notebook_settings(steps: int, batch_size: int, lr: float) -> TrainSettings:
    """The notebook's training as trainer settings: constant-rate Adam, no warm-up, no clipping.

    Evaluated only at the start and the end: the experiment scores each SAE once, afterwards.
    """
    return TrainSettings(
        steps, batch_size, lr, Schedule(decay="constant"), grad_clip=0.0, log_every=steps
    )


@torch.no_grad()
def score_sae(
    sae: MatryoshkaSAE,
    source: TreeSource | SyntheticSource,
    x_BM: Float[Tensor, "B M"],
    feature_acts_BN: Float[Tensor, "B N"],
    thresholds: AbsorptionThresholds,
    probe_k_max: int,
) -> dict[str, Any]:
    """Every ground-truth metric of one trained SAE, as JSON-ready numbers."""
    features_NM = source.features_NM
    latent_N = best_match_latents(sae.decoder_directions(), features_NM)
    z_BE = sae.encode_dense(x_BM)
    absorption = absorption_scores(
        x_BM,
        z_BE,
        sae.decoder_directions(),
        features_NM,
        feature_acts_BN,
        source.parent_N,
        main_latent_mask(latent_N, sae.width),
        thresholds,
    )
    hedging = hedging_scores(
        sae.encoder_directions(), sae.decoder_directions(), features_NM, source.parent_N, latent_N
    )
    probing = k_sparse_probing(z_BE, feature_acts_BN > 0, k_max=min(probe_k_max, sae.width))
    recon_BM = sae.reconstruct(x_BM)
    fvu = (recon_BM - x_BM).square().sum() / (x_BM - x_BM.mean(0)).square().sum()
    worst_D = torch.maximum(hedging.decoder_cos_D.abs(), hedging.encoder_cos_D.abs())
    return {
        "absorption_fraction": absorption.mean_fraction,
        "full_absorption_rate": absorption.mean_full_rate,
        **hedging.means(),
        "worst_child_cos": worst_D.max().item(),
        "fvu": fvu.item(),
        "l0": (z_BE > 0).float().sum(-1).mean().item(),
        "probe_top_latent_agrees": (probing.ranked_latents_NK[:, 0] == latent_N)
        .float()
        .mean()
        .item(),
        "latents_needed": probing.latents_needed_N.tolist(),
        "probe_f1": probing.f1_NK.tolist(),
        "best_match_latent": latent_N.tolist(),
        "edges": [
            {
                "parent": int(p),
                "child": int(c),
                "decoder_cos": d,
                "encoder_cos": e,
                "child_decoder_parent_cos": cd,
            }
            for p, c, d, e, cd in zip(
                hedging.edge_parent_D.tolist(),
                hedging.edge_child_D.tolist(),
                hedging.decoder_cos_D.tolist(),
                hedging.encoder_cos_D.tolist(),
                hedging.child_decoder_parent_cos_D.tolist(),
                strict=True,
            )
        ],
    }

"""One evaluation of any ToySAE against any FeatureSource: the numbers logged and summarised."""

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.toy.metrics.activity import (
    dead_latent_count,
    fraction_variance_unexplained,
    mean_l0,
)
from sae_hacking.toy.metrics.recovery import Recovery, recovery, scored_directions
from sae_hacking.toy.metrics.siblings import (
    child_specificity_rate,
    pair_detection_rate,
    sibling_split_rate,
)
from sae_hacking.toy.protocol import FeatureSource, HasComposedDirections, HasSiblings, ToySAE


@dataclass(frozen=True)
class Evaluation:
    """Scalar metrics by name, and the recovery detail behind MMCS and MCC."""

    scalars: dict[str, float]
    recovery: Recovery


@torch.no_grad()
def evaluate(sae: ToySAE, source: FeatureSource, x_BM: Float[Tensor, "B M"]) -> Evaluation:
    """Score ``sae`` on a held-out batch ``x_BM`` and against ``source``'s true features."""
    was_training = isinstance(sae, nn.Module) and sae.training
    if isinstance(sae, nn.Module):
        sae.eval()
    try:
        dense_BE = sae.encode_dense(x_BM)
        recon_BM = sae.reconstruct(x_BM)
    finally:
        if isinstance(sae, nn.Module):
            sae.train(was_training)
    directions_DM = scored_directions(sae)
    features_NM = source.features_NM
    found = recovery(directions_DM, features_NM)
    dead = dead_latent_count(dense_BE)
    scalars = {
        "mse": (recon_BM - x_BM).square().sum(-1).mean().item(),
        "fvu": fraction_variance_unexplained(x_BM, recon_BM),
        "l0": mean_l0(dense_BE),
        "dead_latents": float(dead),
        "dead_fraction": dead / dense_BE.shape[1],
        "mmcs": found.mmcs,
        "mcc": found.mcc,
    }
    if isinstance(source, HasSiblings):
        siblings = source.siblings
        scalars["sibling_split_rate"] = sibling_split_rate(
            found.best_latent_N, siblings.parent_of_N
        )
        scalars["child_specificity"] = child_specificity_rate(
            directions_DM, found.best_latent_N, features_NM, siblings
        )
        if isinstance(sae, HasComposedDirections):
            scalars["pair_detection_rate"] = pair_detection_rate(
                sae.composed_directions(), features_NM, siblings.parent_of_N
            )
    return Evaluation(scalars, found)

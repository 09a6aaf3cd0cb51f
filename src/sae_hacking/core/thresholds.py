"""Firing thresholds fitted per latent, for ablators with no threshold of their own (top-k).

A top-k SAE's parent latent still fires weakly where an absorbing child latent fires (0.2-0.4 of
a unit feature on the toy trees, against about 0.9 where the parent fires alone), so "fired" must
mean "above a bar" before co-occurrence can see the absorption. Otsu's split of each latent's
non-zero activations puts the bar between its weak and strong firings, whatever the latent's scale.
"""

import torch
from beartype import beartype
from jaxtyping import Float, jaxtyped
from torch import Tensor


@jaxtyped(typechecker=beartype)
def otsu_thresholds(acts_BE: Float[Tensor, "B E"], bins: int = 64) -> Float[Tensor, " E"]:
    """Per latent, the bar that best splits its non-zero activations in two (Otsu's method on a
    histogram of ``bins`` bins from 0 to the latent's largest activation): the split maximising
    the between-group variance. 0 for a latent that never fired or has one bin of values."""
    n_latents = acts_BE.shape[1]
    top_E = acts_BE.max(dim=0).values.clamp_min(0.0)
    fired_BE = acts_BE > 0
    scale_E = torch.where(top_E > 0, top_E, torch.ones_like(top_E))
    bin_BE = (acts_BE / scale_E * bins).long().clamp(0, bins - 1)
    latent_BE = torch.arange(n_latents, device=acts_BE.device).expand_as(bin_BE)
    hist_EH = torch.zeros(n_latents, bins, dtype=torch.float64, device=acts_BE.device)
    hist_EH.index_put_(
        (latent_BE[fired_BE], bin_BE[fired_BE]),
        torch.ones(int(fired_BE.sum()), dtype=torch.float64, device=acts_BE.device),
        accumulate=True,
    )
    centres_H = (torch.arange(bins, dtype=torch.float64, device=acts_BE.device) + 0.5) / bins
    below_EH = hist_EH.cumsum(dim=1)[:, :-1]
    mass_below_EH = (hist_EH * centres_H).cumsum(dim=1)[:, :-1]
    total_E, mass_E = (
        hist_EH.sum(dim=1, keepdim=True),
        (hist_EH * centres_H).sum(dim=1, keepdim=True),
    )
    above_EH = total_E - below_EH
    mean_below_EH = mass_below_EH / below_EH.clamp_min(1.0)
    mean_above_EH = (mass_E - mass_below_EH) / above_EH.clamp_min(1.0)
    between_EH = below_EH * above_EH * (mean_above_EH - mean_below_EH) ** 2
    split_E = between_EH.argmax(dim=1)
    threshold_E = (split_E + 1).double() / bins * top_E.double()
    return torch.where(between_EH.amax(dim=1) > 0, threshold_E, 0.0).to(acts_BE.dtype)

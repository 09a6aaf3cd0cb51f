"""Firing thresholds fitted per latent, for ablators with no threshold of their own (top-k).

A top-k SAE's parent latent still fires weakly where an absorbing child latent fires (0.2-0.4 of
a unit feature on the toy trees, against about 0.9 where the parent fires alone), so "fired" must
mean "above a bar" before co-occurrence can see the absorption. Otsu's split of each latent's
non-zero activations puts the bar between its weak and strong firings, whatever the latent's scale.

The toy hunt fits it on activations in memory (``otsu_thresholds``); a language-model run cannot
keep them, so gemma_cooccurrences.py adds each latent's non-zero activations to a histogram of
fixed log-spaced bins (``add_activation_histogram_``), which sums exactly across checkpoints,
ranks and merged runs, and the bars are fitted from it later (``histogram_otsu_thresholds``).
Both fits are the same rule, ``otsu_split``, on a histogram. In this module D counts histogram bins.
"""

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

# Log2-spaced bins, 8 per octave (edges 9% apart) from 2^-10 to 2^14: wide enough for toy SAEs
# (activations ~1) and Gemma Scope's (up to a few hundred). The first bin also holds every
# activation below 2^-10, the last every one above 2^14.
LOWEST_EXPONENT = -10
BINS_PER_OCTAVE = 8
HISTOGRAM_BINS = 24 * BINS_PER_OCTAVE


@jaxtyped(typechecker=beartype)
def otsu_split(
    histogram_ED: Float[Tensor, "E D"], centres_D: Float[Tensor, " D"]
) -> tuple[Int[Tensor, " E"], Float[Tensor, " E"]]:
    """Per latent, the last bin of the lower group in Otsu's split of its histogram (the split
    maximising the between-group variance ``n_low n_high (mean_high - mean_low)^2``, bins read
    at ``centres_D``), and that variance (0: nothing to split, e.g. one bin of values)."""
    histogram_ED = histogram_ED.double()
    centres_D = centres_D.double()
    below_ED = histogram_ED.cumsum(dim=1)[:, :-1]
    mass_below_ED = (histogram_ED * centres_D).cumsum(dim=1)[:, :-1]
    total_E1 = histogram_ED.sum(dim=1, keepdim=True)
    mass_E1 = (histogram_ED * centres_D).sum(dim=1, keepdim=True)
    above_ED = total_E1 - below_ED
    mean_below_ED = mass_below_ED / below_ED.clamp_min(1.0)
    mean_above_ED = (mass_E1 - mass_below_ED) / above_ED.clamp_min(1.0)
    between_ED = below_ED * above_ED * (mean_above_ED - mean_below_ED) ** 2
    best_E, split_E = between_ED.max(dim=1)
    return split_E, best_E


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
    histogram_ED = torch.zeros(n_latents, bins, dtype=torch.float64, device=acts_BE.device)
    histogram_ED.index_put_(
        (latent_BE[fired_BE], bin_BE[fired_BE]),
        torch.ones(int(fired_BE.sum()), dtype=torch.float64, device=acts_BE.device),
        accumulate=True,
    )
    # Bins in units of each latent's largest activation: Otsu's split does not depend on scale.
    centres_D = (torch.arange(bins, dtype=torch.float64, device=acts_BE.device) + 0.5) / bins
    split_E, between_E = otsu_split(histogram_ED, centres_D)
    threshold_E = (split_E + 1).double() / bins * top_E.double()
    return torch.where(between_E > 0, threshold_E, 0.0).to(acts_BE.dtype)


def histogram_edges(device: torch.device | str = "cpu") -> Float[Tensor, " D"]:
    """The ``HISTOGRAM_BINS + 1`` edges of the activation histogram's bins (float64)."""
    steps = torch.arange(HISTOGRAM_BINS + 1, dtype=torch.float64, device=device)
    return torch.exp2(LOWEST_EXPONENT + steps / BINS_PER_OCTAVE)


def histogram_layout() -> dict[str, object]:
    """The bins, as a result file's manifest records them."""
    return {
        "scale": "log2",
        "lowest_edge": 2.0**LOWEST_EXPONENT,
        "bins_per_octave": BINS_PER_OCTAVE,
        "bins": HISTOGRAM_BINS,
        "note": "bin b holds activations in [lowest_edge * 2^(b/bins_per_octave), next edge); "
        "the first bin also holds every smaller one, the last every larger one",
    }


def histogram_bins(values_J: Float[Tensor, " J"]) -> Int[Tensor, " J"]:
    """The bin of each positive activation (``histogram_edges``), out-of-range ones clamped.

    Called per batch by ``add_activation_histogram_``, so undecorated: a jaxtyped wrapper cost
    about as much as the binning itself (0.1 ms on 4k entries); pytest still checks the shapes.
    """
    position_J = (torch.log2(values_J.float()) - LOWEST_EXPONENT) * BINS_PER_OCTAVE
    return position_J.floor().clamp(0, HISTOGRAM_BINS - 1).long()


@jaxtyped(typechecker=beartype)
def add_activation_histogram_(
    histogram_ED: Int[Tensor, "E D"], latent_J: Int[Tensor, " J"], values_J: Float[Tensor, " J"]
) -> None:
    """Add 1 in latent ``latent_J[j]``'s bin of ``values_J[j]`` for every (positive) entry j."""
    index_J = latent_J * HISTOGRAM_BINS + histogram_bins(values_J)
    one = torch.ones(1, dtype=histogram_ED.dtype, device=histogram_ED.device)
    histogram_ED.view(-1).index_add_(0, index_J, one.expand(index_J.shape[0]))


@jaxtyped(typechecker=beartype)
def histogram_otsu_thresholds(histogram_ED: Int[Tensor, "E D"]) -> Float[Tensor, " E"]:
    """Per latent, the upper edge of the last bin of the lower group in Otsu's split of its
    activation histogram (bins read at their midpoints); 0 for a latent with nothing to split."""
    edges_D = histogram_edges(histogram_ED.device)
    centres_D = (edges_D[:-1] + edges_D[1:]) / 2
    split_E, between_E = otsu_split(histogram_ED.double(), centres_D)
    threshold_E = edges_D[1:][split_E]
    return torch.where(between_E > 0, threshold_E, 0.0).float()

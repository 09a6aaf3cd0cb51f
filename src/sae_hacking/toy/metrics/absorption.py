"""Feature absorption measured against the known parent and child features of a toy dataset.

Adapts the absorption fraction and full-absorption rate of SAEBench (Chanin et al., "A is for
Absorption", arXiv:2409.14507; fraction by D. Till) to ground truth: the probe of a parent feature is
its true unit direction ``u_p`` and the samples are those where the parent truly fires together with
at least one of its children (where the parent fires alone, no child latent can carry it; in the
language-model version every first-letter token is such a co-occurrence).

For one parent ``p`` with main latents ``L_p`` (its best-matching latent, or a k-sparse probe's
latents) and one such sample ``b`` with SAE code ``z_b``:

- ``t_b = x_b . u_p``, the true projection (the probe activation);
- ``c_be = z_be (W_dec[e] . u_p)``, latent ``e``'s share of the reconstruction's projection on
  ``u_p`` (SAEBench multiplies by the cosine; with unit decoders the two agree, and the decoder itself
  is what the reconstruction carries when decoders are not normalised);
- ``m_b = sum over e in L_p of c_be``, what the main latents carry;
- absorbers: latents outside ``L_p`` with ``cos(W_dec[e], u_p) >= fraction_cos_threshold`` and
  ``c_be > 0``; ``a_b`` is the sum of the ``max_absorbers`` largest of their ``c_be``;
- absorption fraction: 0 if ``m_b >= t_b`` or ``a_b / t_b < projection_threshold``; else 1 if
  ``m_b <= 0``; else ``min(a_b, t_b - m_b) / (min(a_b, t_b - m_b) + m_b)``;
- full absorption: every main latent has ``z_be <= active_threshold``, the latent with the largest
  ``c_be`` has ``cos >= full_cos_threshold``, ``t_b > 0`` and that latent's ``c_be / t_b >=
  projection_threshold``.

A parent's scores are the means over its samples; the SAE's are the means over parents.
"""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.matching import hungarian_assignment
from sae_hacking.core.similarity import cosine_matrix, unit_rows


@dataclass(frozen=True)
class AbsorptionThresholds:
    """SAEBench's thresholds (its defaults), exposed as flags by the scripts."""

    fraction_cos_threshold: float = 0.1
    full_cos_threshold: float = 0.025
    projection_threshold: float = 0.4
    max_absorbers: int = 3
    active_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.max_absorbers < 1:
            raise ValueError("max_absorbers must be at least 1")
        if self.active_threshold < 0:
            raise ValueError("active_threshold must be non-negative")


@dataclass(frozen=True)
class AbsorptionReport:
    """Per-parent absorption scores; ``parents_A`` are feature indices into ``features_NM``."""

    parents_A: Int[Tensor, " A"]
    samples_A: Int[Tensor, " A"]
    fraction_A: Float[Tensor, " A"]
    full_rate_A: Float[Tensor, " A"]
    # How often latent e was one of the counted absorbers of parent a (fraction > 0).
    absorber_rate_AE: Float[Tensor, "A E"]

    @property
    def mean_fraction(self) -> float:
        """Mean absorption fraction over parents that had samples (NaN when none had)."""
        return _mean_over_sampled(self.fraction_A, self.samples_A)

    @property
    def mean_full_rate(self) -> float:
        """Mean full-absorption rate over parents that had samples (NaN when none had)."""
        return _mean_over_sampled(self.full_rate_A, self.samples_A)


def _mean_over_sampled(values_A: Tensor, samples_A: Tensor) -> float:
    has = samples_A > 0
    return values_A[has].mean().item() if bool(has.any()) else float("nan")


@jaxtyped(typechecker=beartype)
def best_match_latents(
    decoder_EM: Float[Tensor, "E M"], features_NM: Float[Tensor, "N M"]
) -> Int[Tensor, " N"]:
    """Each feature's latent under a one-to-one Hungarian matching on positive decoder cosine.

    Negative cosines count as 0 (a latent decoding ``-u`` does not represent ``u``); features left
    without a latent (``E < N``) get -1.
    """
    cos_NE = cosine_matrix(features_NM, decoder_EM).clamp_min(0)
    assignment = hungarian_assignment(cos_NE)
    latent_N = torch.full((features_NM.shape[0],), -1, dtype=torch.long)
    latent_N[assignment.feature_idx_D] = assignment.latent_idx_D
    return latent_N.to(features_NM.device)


@jaxtyped(typechecker=beartype)
def main_latent_mask(latent_N: Int[Tensor, " N"], width: int) -> Bool[Tensor, "N E"]:
    """One main latent per feature as a mask (a row stays empty where the latent is -1)."""
    mask_NE = torch.zeros(latent_N.shape[0], width, dtype=torch.bool, device=latent_N.device)
    has = latent_N >= 0
    mask_NE[has.nonzero().squeeze(1), latent_N[has]] = True
    return mask_NE


@jaxtyped(typechecker=beartype)
def children_mask(parent_N: Int[Tensor, " N"]) -> Bool[Tensor, "N N"]:
    """``mask[p, c]`` is True where feature c's read-out parent is p."""
    n = parent_N.shape[0]
    ids_N = torch.arange(n, device=parent_N.device)
    return parent_N.unsqueeze(0) == ids_N.unsqueeze(1)


@jaxtyped(typechecker=beartype)
def absorption_scores(
    x_BM: Float[Tensor, "B M"],
    latent_acts_BE: Float[Tensor, "B E"],
    decoder_EM: Float[Tensor, "E M"],
    features_NM: Float[Tensor, "N M"],
    feature_acts_BN: Float[Tensor, "B N"],
    parent_N: Int[Tensor, " N"],
    main_NE: Bool[Tensor, "N E"],
    thresholds: AbsorptionThresholds = AbsorptionThresholds(),
) -> AbsorptionReport:
    """Absorption fraction and full-absorption rate of every parent feature (see module docstring).

    ``parent_N[c]`` is the read-out parent of feature c (-1 for none); ``main_NE`` marks each
    feature's main latents.
    """
    kids_NN = children_mask(parent_N)
    parents_A = kids_NN.any(dim=1).nonzero().squeeze(1)
    unit_NM = unit_rows(features_NM)
    proj_EN = decoder_EM @ unit_NM.T
    cos_EN = cosine_matrix(decoder_EM, unit_NM)
    fired_BN = feature_acts_BN > 0
    width = decoder_EM.shape[0]
    samples, fractions, fulls, rates = [], [], [], []
    for p in parents_A.tolist():
        rows_B = fired_BN[:, p] & fired_BN[:, kids_NN[p]].any(dim=1)
        z_DE = latent_acts_BE[rows_B]
        t_D = x_BM[rows_B] @ unit_NM[p]
        fraction_D, full_D, counted_DE = _absorption_per_sample(
            z_DE, t_D, proj_EN[:, p], cos_EN[:, p], main_NE[p], thresholds
        )
        samples.append(int(rows_B.sum()))
        fractions.append(fraction_D.mean() if fraction_D.numel() else t_D.new_tensor(0.0))
        fulls.append(full_D.float().mean() if full_D.numel() else t_D.new_tensor(0.0))
        rates.append(
            counted_DE.float().mean(dim=0) if counted_DE.shape[0] else t_D.new_zeros(width)
        )
    device = x_BM.device
    if not samples:
        empty = torch.zeros(0, device=device)
        return AbsorptionReport(
            parents_A, torch.zeros(0, dtype=torch.long), empty, empty, torch.zeros(0, width)
        )
    return AbsorptionReport(
        parents_A=parents_A,
        samples_A=torch.tensor(samples, dtype=torch.long),
        fraction_A=torch.stack(fractions),
        full_rate_A=torch.stack(fulls),
        absorber_rate_AE=torch.stack(rates),
    )


def _absorption_per_sample(
    z_DE: Tensor,
    t_D: Tensor,
    proj_E: Tensor,
    cos_E: Tensor,
    main_E: Tensor,
    th: AbsorptionThresholds,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample fraction, full-absorption flag and counted-absorber mask for one parent."""
    contrib_DE = z_DE * proj_E
    main_D = (contrib_DE * main_E).sum(dim=1)
    eligible_DE = (~main_E & (cos_E >= th.fraction_cos_threshold)) & (contrib_DE > 0)
    candidate_DE = torch.where(eligible_DE, contrib_DE, torch.zeros_like(contrib_DE))
    k = min(th.max_absorbers, z_DE.shape[1])
    top_vals_DK, top_idx_DK = candidate_DE.topk(k, dim=1)
    absorbed_D = top_vals_DK.sum(dim=1)
    safe_t_D = torch.where(t_D != 0, t_D, torch.ones_like(t_D))
    gated_D = (main_D >= t_D) | (absorbed_D / safe_t_D < th.projection_threshold) | (t_D <= 0)
    carried_D = torch.minimum(absorbed_D, t_D - main_D)
    partial_D = carried_D / (carried_D + main_D).clamp_min(1e-12)
    fraction_D = torch.where(
        gated_D,
        torch.zeros_like(t_D),
        torch.where(main_D <= 0, torch.ones_like(t_D), partial_D.clamp(0, 1)),
    )
    counted_DE = torch.zeros_like(eligible_DE).scatter(1, top_idx_DK, top_vals_DK > 0)
    counted_DE &= (fraction_D > 0).unsqueeze(1)

    main_silent_D = ((z_DE <= th.active_threshold) | ~main_E).all(dim=1)
    top_contrib_D, top_latent_D = contrib_DE.max(dim=1)
    full_D = (
        main_silent_D
        & (cos_E[top_latent_D] >= th.full_cos_threshold)
        & (t_D > 0)
        & (top_contrib_D / safe_t_D >= th.projection_threshold)
    )
    return fraction_D, full_D, counted_DE


@dataclass(frozen=True)
class AbsorbedPair:
    """A parent feature's main latent and a latent that absorbs it, with how often it does."""

    parent_feature: int
    parent_latent: int
    absorbing_latent: int
    rate: float


def absorbed_pairs(
    report: AbsorptionReport, latent_N: Int[Tensor, " N"], min_rate: float = 0.5
) -> list[AbsorbedPair]:
    """(parent latent, absorbing latent) pairs whose absorber rate reaches ``min_rate``.

    The rate is over the parent's parent-with-child samples, so an absorber of one of three equally
    likely children sits near 1/3: choose ``min_rate`` with the hierarchy's branching in mind.
    """
    pairs = []
    for a, p in enumerate(report.parents_A.tolist()):
        hits = (report.absorber_rate_AE[a] >= min_rate).nonzero().squeeze(1)
        for e in hits.tolist():
            rate = report.absorber_rate_AE[a, e].item()
            pairs.append(AbsorbedPair(p, int(latent_N[p]), int(e), rate))
    return pairs

"""Ranked absorption scores for latent pairs: co-occurrence against its base rate, times similarity.

A bar of "never co-occurred" says little about two rare latents (they would rarely meet even if
independent) and much about two frequent ones. The base rate is the count expected under
independence, ``f_i f_j / T`` over ``T`` counted tokens. The exclusion confidence is the
probability that independent latents would have co-occurred *more* often than observed,
``P(N > n)`` for ``N ~ Poisson(expected)``: near 1 when the pair clearly avoids itself, near 0 when
the silence is what chance gives (``1 - exp(-expected)`` at ``n = 0``). It grades partial absorption
too: a parent latent that still fires on a few of its absorber's tokens keeps a confidence near 1
as long as the count stays far below the base rate.

The score multiplies that confidence by the similarity of the pair's effects (clipped at 0), so a
pair ranks high only when it both avoids itself beyond chance and acts alike downstream. The
pair's decoders must share a direction (``carries_parent``), and two absorbers of one parent are
dropped as siblings (``sibling_pairs``). Where each latent's number of distinct tokens is known (a
language model's co-occurrence run), a pair must also have one member clearly more general than
the other (``parent_and_absorber``): two words of one letter never share a token, both move the
letter and both carry it, and only their generality (one token each) tells them from the letter.
"""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, Real, jaxtyped
from torch import Tensor

# The decoder cosine below which a pair cannot be parent and absorber (an absorber's decoder carries
# its parent's direction). Not fitted: on the trained planted case ranked F1 was 0.39-0.54 for floors
# 0.05-0.2 (0.40 at 0.1) and 0.20 with none (README).
CARRIES_PARENT = 0.1


# How many times more distinct tokens a parent fires on than its absorber, at least. A parent keeps
# the tokens of its children other than the absorber's, so a parent of two or more children reaches
# twice a one-token absorber; linear counting's error on a few to a few hundred tokens is a few
# percent, far inside a factor 2, so two absorbers of similar generality are never taken for a
# parent and its absorber by noise.
GENERALITY_RATIO = 2.0


@jaxtyped(typechecker=beartype)
def parent_and_absorber(
    distinct_i_P: Float[Tensor, " P"],
    distinct_j_P: Float[Tensor, " P"],
    ratio: float = GENERALITY_RATIO,
) -> Bool[Tensor, " P"]:
    """Which pairs can be a parent and its absorber: one member fired on at least ``ratio`` times
    the distinct tokens of the other (the parent is the general one, the absorber a word or few)."""
    high_P = torch.maximum(distinct_i_P, distinct_j_P)
    low_P = torch.minimum(distinct_i_P, distinct_j_P)
    return high_P >= ratio * low_P


@jaxtyped(typechecker=beartype)
def expected_cooccurrence(
    firing_i_P: Int[Tensor, " P"], firing_j_P: Int[Tensor, " P"], tokens: int
) -> Float[Tensor, " P"]:
    """Co-occurrences expected if the two latents fired independently: ``f_i f_j / T``."""
    return firing_i_P.double() * firing_j_P.double() / max(tokens, 1)


@jaxtyped(typechecker=beartype)
def exclusion_confidence(
    observed_P: Int[Tensor, " P"], expected_P: Float[Tensor, " P"]
) -> Float[Tensor, " P"]:
    """``P(N > observed)`` for ``N ~ Poisson(expected)``: how surely the pair avoids itself.

    The Poisson CDF at ``n`` is the regularised upper incomplete gamma ``Q(n + 1, expected)``, so
    the confidence is its complement ``P(n + 1, expected)`` (``torch.special.gammainc``).
    """
    expected_P = expected_P.double()
    confidence_P = torch.special.gammainc(observed_P.double() + 1.0, expected_P.clamp_min(1e-300))
    return torch.where(expected_P > 0, confidence_P, torch.zeros_like(confidence_P)).float()


@jaxtyped(typechecker=beartype)
def absorption_score(
    similarity_P: Float[Tensor, " P"], confidence_P: Float[Tensor, " P"]
) -> Float[Tensor, " P"]:
    """The ranked score: effect similarity (negative counts as 0) times exclusion confidence."""
    return similarity_P.clamp_min(0.0) * confidence_P


@jaxtyped(typechecker=beartype)
def carries_parent(
    decoder_cosine_P: Float[Tensor, " P"], floor: float = CARRIES_PARENT
) -> Bool[Tensor, " P"]:
    """Which pairs' decoders share a direction (cosine at least ``floor``): an absorber's decoder
    carries the parent it absorbs, so a pair with near-orthogonal decoders is no absorption,
    however alike its effects (two words of one letter both move the letter downstream)."""
    return decoder_cosine_P >= floor


@jaxtyped(typechecker=beartype)
def sibling_pairs(
    first_P: Int[Tensor, " P"], second_P: Int[Tensor, " P"], generality_E: Real[Tensor, " E"]
) -> Bool[Tensor, " P"]:
    """Which candidate pairs are siblings: both latents also pair with a third more general than
    either (``generality_E``: distinct tokens fired on where known, else firing counts).

    Two latents that absorb the same parent (two words of one letter) never co-occur and both
    carry the parent, so they look like a pair; so does each with the parent's own latent. The
    parent's latent is the general one: it fires on the parent's remaining contexts, more often
    than any single absorber (a letter latent on thousands of words, a word latent on one). A
    candidate pair (x, y) whose latents both pair with such a more general z is the sibling side
    of the triangle {z, x, y}; the pairs (z, x) and (z, y) are the absorption. Firing counts
    measure generality only roughly: under Zipf one absorbed word can fire more often than its
    letter's latent, so a language model's run uses the distinct tokens each latent fired on.
    """
    device = first_P.device
    latents_L, local_2P = torch.unique(torch.stack([first_P, second_P]), return_inverse=True)
    n = int(latents_L.shape[0])
    linked_LL = torch.zeros(n, n, dtype=torch.bool, device=device)
    linked_LL[local_2P[0], local_2P[1]] = True
    linked_LL[local_2P[1], local_2P[0]] = True
    general_L = generality_E.to(device)[latents_L]
    sibling_P = torch.zeros(first_P.shape[0], dtype=torch.bool, device=device)
    # Blocks of pairs bound the (pairs x latents) masks to a few MB.
    step = max(1, (1 << 22) // max(n, 1))
    for start in range(0, first_P.shape[0], step):
        a_D, b_D = local_2P[0, start : start + step], local_2P[1, start : start + step]
        floor_D = torch.maximum(general_L[a_D], general_L[b_D])
        above_DL = linked_LL[a_D] & linked_LL[b_D] & (general_L[None, :] > floor_D[:, None])
        sibling_P[start : start + step] = above_DL.any(dim=1)
    return sibling_P


@dataclass(frozen=True)
class RankedKeep:
    """Which pairs the ranked score keeps, and how many each rule after the bar dropped."""

    keep_P: Bool[Tensor, " P"]
    dropped_siblings: int
    # Pairs at the bar dropped as equally general (None: distinct tokens unknown, rule not applied).
    dropped_alike: int | None


@jaxtyped(typechecker=beartype)
def ranked_keep(
    first_P: Int[Tensor, " P"],
    second_P: Int[Tensor, " P"],
    score_P: Float[Tensor, " P"],
    score_threshold: float,
    decoder_cosine_P: Float[Tensor, " P"],
    min_decoder_cosine: float,
    firing_E: Int[Tensor, " E"],
    distinct_E: Float[Tensor, " E"] | None = None,
    generality_ratio: float = GENERALITY_RATIO,
) -> RankedKeep:
    """The ranked score's rule, shared by the toy hunt and ``look_for_pairs.py``: score at the
    bar, decoders sharing a direction, one member clearly more general than the other (only where
    ``distinct_E`` is known), and no sibling under a more general latent (distinct tokens where
    known, else firing counts)."""
    keep_P = (score_P >= score_threshold) & carries_parent(decoder_cosine_P, min_decoder_cosine)
    dropped_alike = None
    generality_E: Tensor = firing_E
    if distinct_E is not None:
        generality_E = distinct_E.to(firing_E.device)
        general_P = parent_and_absorber(
            generality_E[first_P], generality_E[second_P], generality_ratio
        )
        dropped_alike = int((keep_P & ~general_P).sum())
        keep_P &= general_P
    kept_D = keep_P.nonzero().squeeze(1)
    siblings_D = sibling_pairs(first_P[kept_D], second_P[kept_D], generality_E)
    keep_P[kept_D[siblings_D]] = False
    return RankedKeep(keep_P, int(siblings_D.sum()), dropped_alike)

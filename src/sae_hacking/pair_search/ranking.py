"""Ranked pair search: the pairs of a cosine search re-scored by ``core.pair_scores``.

The search keeps every pair with effect cosine at least the score bar (the score is never above
the cosine) whatever its co-occurrence; each pair then gets its count expected under
independence, its exclusion confidence and its score; pairs below the bar, pairs whose decoders
share no direction and siblings under a more general latent are dropped, and the rest are ordered
best score first. Where the co-occurrence run estimated each latent's distinct tokens, a pair
whose members are about as general as each other is dropped too (``parent_and_absorber``), and
generality is distinct tokens instead of firing counts in the sibling rule.
"""

from dataclasses import dataclass

from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.pair_scores import (
    GENERALITY_RATIO,
    absorption_score,
    exclusion_confidence,
    expected_cooccurrence,
    ranked_keep,
)
from sae_hacking.core.pairs import Pairs


@dataclass(frozen=True)
class RankedPairs:
    """Pairs best score first, with what the score is made of."""

    pairs: Pairs
    expected_P: Float[Tensor, " P"]
    confidence_P: Float[Tensor, " P"]
    score_P: Float[Tensor, " P"]
    dropped_siblings: int
    # Pairs at the bar dropped as equally general (None: distinct tokens unknown, rule not applied).
    dropped_alike: int | None = None


def rank_pairs(
    pairs: Pairs,
    firing_E: Int[Tensor, " E"],
    tokens: int,
    score_threshold: float,
    decoder_cosine_P: Float[Tensor, " P"],
    min_decoder_cosine: float,
    distinct_E: Float[Tensor, " E"] | None = None,
    generality_ratio: float = GENERALITY_RATIO,
) -> RankedPairs:
    """Score ``pairs`` (exact co-occurrence counts; ``decoder_cosine_P`` their ablator decoder
    cosines), keep those at the bar whose decoders share a direction, minus siblings, sort.

    With ``distinct_E`` (each latent's estimated distinct tokens) pairs of two equally general
    latents are dropped and the sibling rule compares distinct tokens; without it (a run from
    before they were kept, or no tokens at all) firing counts stand in, as for the toy hunt."""
    firing_E = firing_E.to(pairs.first_P.device)
    decoder_cosine_P = decoder_cosine_P.to(pairs.first_P.device).float()
    expected_P = expected_cooccurrence(firing_E[pairs.first_P], firing_E[pairs.second_P], tokens)
    confidence_P = exclusion_confidence(pairs.cooccurrence_P, expected_P)
    score_P = absorption_score(pairs.cosine_P.float(), confidence_P)
    kept = ranked_keep(
        pairs.first_P,
        pairs.second_P,
        score_P,
        score_threshold,
        decoder_cosine_P,
        min_decoder_cosine,
        firing_E,
        distinct_E,
        generality_ratio,
    )
    keep_P = kept.keep_P
    order = score_P.masked_fill(~keep_P, -1.0).argsort(descending=True, stable=True)
    order = order[: int(keep_P.sum())]
    return RankedPairs(
        Pairs(
            pairs.first_P[order],
            pairs.second_P[order],
            pairs.cosine_P[order],
            pairs.cooccurrence_P[order],
        ),
        expected_P[order],
        confidence_P[order],
        score_P[order],
        kept.dropped_siblings,
        kept.dropped_alike,
    )

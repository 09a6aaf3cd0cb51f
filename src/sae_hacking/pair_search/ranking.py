"""Ranked pair search: the pairs of a cosine search re-scored by ``core.pair_scores``.

The search keeps every pair with effect cosine at least the score bar (the score is never above
the cosine) whatever its co-occurrence; each pair then gets its count expected under
independence, its exclusion confidence and its score; pairs below the bar, pairs whose decoders
share no direction and siblings under a more frequent latent are dropped, and the rest are ordered
best score first.
"""

from dataclasses import dataclass

from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.core.pair_scores import (
    absorption_score,
    carries_parent,
    exclusion_confidence,
    expected_cooccurrence,
    sibling_pairs,
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


def rank_pairs(
    pairs: Pairs,
    firing_E: Int[Tensor, " E"],
    tokens: int,
    score_threshold: float,
    decoder_cosine_P: Float[Tensor, " P"],
    min_decoder_cosine: float,
) -> RankedPairs:
    """Score ``pairs`` (exact co-occurrence counts; ``decoder_cosine_P`` their ablator decoder
    cosines), keep those at the bar whose decoders share a direction, minus siblings, sort."""
    firing_E = firing_E.to(pairs.first_P.device)
    decoder_cosine_P = decoder_cosine_P.to(pairs.first_P.device).float()
    expected_P = expected_cooccurrence(firing_E[pairs.first_P], firing_E[pairs.second_P], tokens)
    confidence_P = exclusion_confidence(pairs.cooccurrence_P, expected_P)
    score_P = absorption_score(pairs.cosine_P.float(), confidence_P)
    keep_P: Bool[Tensor, " P"] = (score_P >= score_threshold) & carries_parent(
        decoder_cosine_P, min_decoder_cosine
    )
    kept_D = keep_P.nonzero().squeeze(1)
    siblings_D = sibling_pairs(pairs.first_P[kept_D], pairs.second_P[kept_D], firing_E)
    keep_P[kept_D[siblings_D]] = False
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
        int(siblings_D.sum()),
    )

"""Scoring the hunt against the truth: which latent pairs are absorbed, and how many the search finds.

Ground truth comes from the trained ablator SAE, not from the data alone: each parent feature's
latent by one-to-one best match, then the toy absorption metric's absorbers of that parent
(``toy.absorption.absorbed_pairs``). A pair is (parent latent, absorbing latent), unordered.

Both filters of the pair search are monotone (a pair kept at cosine bar c and co-occurrence bar n
is kept at every lower c and higher n), so one search at the loosest thresholds, filtered per
grid point, finds exactly what one search per grid point would.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.pairs import Pairs
from sae_hacking.toy.metrics.absorption import (
    AbsorbedPair,
    AbsorptionThresholds,
    absorbed_pairs,
    absorption_scores,
    best_match_latents,
    main_latent_mask,
)
from sae_hacking.toy.protocol import ToySAE

LatentPair = tuple[int, int]


@dataclass(frozen=True)
class GroundTruth:
    """The absorbed pairs, each (smaller id, larger id), and the metric's detail behind them."""

    pairs: frozenset[LatentPair]
    absorbed: tuple[AbsorbedPair, ...]
    mean_fraction: float


def ordered(a: int, b: int) -> LatentPair:
    return (a, b) if a < b else (b, a)


@torch.no_grad()
def ground_truth(
    ablator: ToySAE,
    features_NM: Float[Tensor, "N M"],
    parent_N: Int[Tensor, " N"],
    x_BM: Float[Tensor, "B M"],
    feature_acts_BN: Float[Tensor, "B N"],
    thresholds: AbsorptionThresholds,
    min_rate: float,
) -> GroundTruth:
    """(parent latent, absorbing latent) pairs of ``ablator`` on the samples ``x_BM``."""
    decoder_EM = ablator.decoder_directions()
    latent_N = best_match_latents(decoder_EM, features_NM)
    report = absorption_scores(
        x_BM,
        ablator.encode_dense(x_BM),
        decoder_EM,
        features_NM,
        feature_acts_BN,
        parent_N,
        main_latent_mask(latent_N, ablator.width),
        thresholds,
    )
    found = [p for p in absorbed_pairs(report, latent_N, min_rate) if p.parent_latent >= 0]
    pairs = frozenset(ordered(p.parent_latent, p.absorbing_latent) for p in found)
    return GroundTruth(pairs, tuple(found), report.mean_fraction)


@dataclass(frozen=True)
class Score:
    """Precision, recall and F1 at one pair of thresholds.

    Precision is 1 when nothing is predicted (no false claim made); F1 is then 0 unless there was
    nothing to find.
    """

    cosine_threshold: float
    cooccurrence_threshold: int
    predicted: int
    true_positives: int
    actual: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.actual if self.actual else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def record(self) -> dict[str, float | int]:
        return {
            "cosine_threshold": self.cosine_threshold,
            "cooccurrence_threshold": self.cooccurrence_threshold,
            "predicted": self.predicted,
            "true_positives": self.true_positives,
            "actual": self.actual,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def pairs_passing(
    pairs: Pairs, cosine_threshold: float, cooccurrence_threshold: int
) -> set[LatentPair]:
    """The pairs of a (looser) search that pass these thresholds."""
    keep = (pairs.cosine_P >= cosine_threshold) & (pairs.cooccurrence_P <= cooccurrence_threshold)
    first, second = pairs.first_P[keep].tolist(), pairs.second_P[keep].tolist()
    return {ordered(int(a), int(b)) for a, b in zip(first, second, strict=True)}


def score(
    predicted: set[LatentPair],
    truth: frozenset[LatentPair],
    cosine_threshold: float,
    cooccurrence_threshold: int,
) -> Score:
    return Score(
        cosine_threshold,
        cooccurrence_threshold,
        len(predicted),
        len(predicted & truth),
        len(truth),
    )


def sweep(
    pairs: Pairs,
    truth: frozenset[LatentPair],
    cosine_thresholds: tuple[float, ...],
    cooccurrence_thresholds: tuple[int, ...],
) -> list[Score]:
    """Scores over the grid, ``pairs`` being a search at the loosest thresholds of the grid."""
    return [
        score(pairs_passing(pairs, c, n), truth, c, n)
        for n in cooccurrence_thresholds
        for c in cosine_thresholds
    ]

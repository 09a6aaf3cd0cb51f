"""Scoring the hunt against the truth: which latent pairs are absorbed, and how many the search finds.

Ground truth comes from the trained ablator SAE, not from the data alone: each parent feature's
latent by one-to-one best match, then the toy absorption metric's absorbers of that parent
(``toy.absorption.absorbed_pairs``). On a sae-lens synthetic model it is what
``train_synthetic_sae.py`` writes as each child's absorber (``toy.metrics.hierarchy_absorption``:
the parent's latent by the MCC matching, and the latent carrying the parent's direction where
that latent is silent beside the child). A pair is (parent latent, absorbing latent), unordered.

Each method (``METHODS``) is a rule over one table of every pair of ablated latents, scored over a
sweep of its threshold: the original's scoring, decoder cosines, co-occurrence alone, effect
cosines with a co-occurrence bar, and the ranked score of ``core.pair_scores``.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.pair_scores import CARRIES_PARENT, absorption_score, ranked_keep
from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.metrics.absorption import (
    AbsorbedPair,
    AbsorptionThresholds,
    absorbed_pairs,
    absorption_scores,
    best_match_latents,
    main_latent_mask,
)
from sae_hacking.toy.metrics.hierarchy_absorption import ChildAbsorber
from sae_hacking.toy.metrics.synth_bench import hungarian_matching
from sae_hacking.toy.protocol import ToySAE

LatentPair = tuple[int, int]


@dataclass(frozen=True)
class GroundTruth:
    """The absorbed pairs, each (smaller id, larger id), and the metric's detail behind them
    (``detail``: what hunt.json adds, such as the synthetic hierarchy's absorption summary)."""

    pairs: frozenset[LatentPair]
    absorbed: tuple[AbsorbedPair, ...]
    mean_fraction: float
    detail: dict[str, Any] = field(default_factory=dict)


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


@torch.no_grad()
def hierarchy_truth(
    ablator: ToySAE,
    source: SyntheticSource,
    samples: int,
    batch_size: int,
    generator: torch.Generator,
    min_rate: float,
) -> GroundTruth:
    """(parent latent, child absorber) pairs of ``ablator`` on a synthetic model's hierarchy,
    measured by ``train_synthetic_sae.py``'s own scorer on ``samples`` fresh samples."""
    from sae_hacking.toy.experiments.synthetic.run import hierarchy_scores

    matching = hungarian_matching(ablator.decoder_directions(), source.features_NM)
    summary, detail = hierarchy_scores(ablator, source, matching, samples, batch_size, generator)
    latent_of = detail["main_latent_of_feature"]
    absorbers = [ChildAbsorber(**record) for record in detail["absorbers"]]
    found = [
        AbsorbedPair(a.parent, latent_of[a.parent], a.latent, a.rate)
        for a in absorbers
        if a.rate >= min_rate and latent_of[a.parent] >= 0
    ]
    pairs = frozenset(ordered(p.parent_latent, p.absorbing_latent) for p in found)
    hierarchy = {
        "hierarchy_absorption": summary,
        "main_latent_of_feature": latent_of,
        "parents": detail["parents"],
        "child_absorbers": detail["absorbers"],
    }
    return GroundTruth(pairs, tuple(found), summary["absorption_fraction"], hierarchy)


@dataclass(frozen=True)
class Score:
    """Precision, recall and F1 at one pair of thresholds.

    Precision is 1 when nothing is predicted (no false claim made); F1 is then 0 unless there was
    nothing to find.
    """

    threshold: float
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

    def record(self) -> dict[str, float | int | None]:
        return {
            "threshold": self.threshold if math.isfinite(self.threshold) else None,
            "predicted": self.predicted,
            "true_positives": self.true_positives,
            "actual": self.actual,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(frozen=True)
class PairTable:
    """Every pair (i < j) of ablated latents with what each method ranks it by.

    ``similarity`` maps a measure (``effect``: effect cosine in the chosen space; ``sign``: the
    original's sign-pattern cosine of reader-latent effects; ``decoder``: ablator decoder cosine)
    to its value per pair.
    """

    first_P: Int[Tensor, " P"]
    second_P: Int[Tensor, " P"]
    cooccurrence_P: Int[Tensor, " P"]
    expected_P: Float[Tensor, " P"]
    confidence_P: Float[Tensor, " P"]
    similarity: dict[str, Tensor]
    firing_E: Int[Tensor, " E"]

    def pairs(self, keep_P: Tensor) -> set[LatentPair]:
        first, second = self.first_P[keep_P].tolist(), self.second_P[keep_P].tolist()
        return {ordered(int(a), int(b)) for a, b in zip(first, second, strict=True)}

    def keys(self, first_P: Tensor, second_P: Tensor) -> Tensor:
        """One integer per pair (``first < second``), for set operations on the device."""
        return first_P * int(self.firing_E.shape[0]) + second_P


@dataclass(frozen=True)
class Method:
    """One way to call a pair absorbed: a rule over the pair table at a threshold."""

    name: str
    description: str
    keep: Callable[[PairTable, float], Tensor]
    thresholded: bool = True


def _original(t: PairTable, bar: float) -> Tensor:
    return (t.similarity["sign"] >= bar) & (t.cooccurrence_P <= 0)


def _decoder(t: PairTable, bar: float) -> Tensor:
    return t.similarity["decoder"] >= bar


def _decoder_never(t: PairTable, bar: float) -> Tensor:
    return (t.similarity["decoder"] >= bar) & (t.cooccurrence_P <= 0)


def _never(t: PairTable, bar: float) -> Tensor:
    return t.cooccurrence_P <= 0


def _effect_never(t: PairTable, bar: float) -> Tensor:
    return (t.similarity["effect"] >= bar) & (t.cooccurrence_P <= 0)


def _ranked(t: PairTable, bar: float) -> Tensor:
    score_P = absorption_score(t.similarity["effect"], t.confidence_P)
    decoder_P = t.similarity["decoder"]
    return ranked_keep(
        t.first_P, t.second_P, score_P, bar, decoder_P, CARRIES_PARENT, t.firing_E
    ).keep_P


METHODS = (
    Method("original", "sign-pattern cosine of reader-latent effects, never co-occur", _original),
    Method("decoder", "ablator decoder cosine alone", _decoder),
    Method("decoder+never", "decoder cosine, never co-occur", _decoder_never),
    Method("never", "never co-occur (co-occurrence alone)", _never, thresholded=False),
    Method("effect+never", "effect cosine in the effect space, never co-occur", _effect_never),
    Method(
        "ranked",
        "effect cosine x exclusion confidence, decoders sharing a direction, siblings under a more "
        "frequent latent dropped",
        _ranked,
    ),
)


def method_scores(
    table: PairTable, truth: frozenset[LatentPair], method: Method, bars: tuple[float, ...]
) -> list[Score]:
    """The method's scores at each bar (one score for a method without a threshold).

    Counted on the device, without a Python set per bar: a synthetic model's ablator has
    hundreds of thousands of pairs.
    """
    device = table.first_P.device
    first, second = zip(*sorted(truth), strict=True) if truth else ((), ())
    truth_T = table.keys(
        torch.tensor(first, dtype=torch.long, device=device),
        torch.tensor(second, dtype=torch.long, device=device),
    )
    keys_P = table.keys(table.first_P, table.second_P)
    scores = []
    for bar in bars if method.thresholded else (float("nan"),):
        kept_P = keys_P[method.keep(table, bar)]
        hits = int(torch.isin(kept_P, truth_T).sum())
        scores.append(Score(bar, int(kept_P.shape[0]), hits, len(truth)))
    return scores

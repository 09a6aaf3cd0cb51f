"""Ranked pair scores: the base rate of co-occurrence, exclusion confidence, the combined score."""

import dataclasses
import math

import pytest
import torch
from scipy.stats import poisson

from sae_hacking.core.pair_scores import (
    CARRIES_PARENT,
    GENERALITY_RATIO,
    absorption_score,
    carries_parent,
    exclusion_confidence,
    expected_cooccurrence,
    parent_and_absorber,
    sibling_pairs,
)
from sae_hacking.core.pairs import Pairs
from sae_hacking.pair_search.config import PairSearchConfig
from sae_hacking.pair_search.ranking import rank_pairs


def test_expected_cooccurrence_is_the_product_of_firing_rates_times_tokens() -> None:
    expected = expected_cooccurrence(torch.tensor([100, 0, 7]), torch.tensor([50, 9, 7]), 1000)
    assert expected.tolist() == [5.0, 0.0, 49 / 1000]


def test_exclusion_confidence_matches_scipy_poisson_survival_on_random_inputs() -> None:
    generator = torch.Generator().manual_seed(0)
    expected_P = torch.rand(500, generator=generator, dtype=torch.float64) * 200
    observed_P = (torch.rand(500, generator=generator) * expected_P * 1.5).long()
    confidence = exclusion_confidence(observed_P, expected_P)
    reference = poisson.sf(observed_P.numpy(), expected_P.numpy())
    torch.testing.assert_close(confidence.double(), torch.from_numpy(reference), atol=1e-5, rtol=0)


def test_never_meeting_is_confident_only_when_chance_would_have_met() -> None:
    confidence = exclusion_confidence(torch.tensor([0, 0, 0]), torch.tensor([0.0, 0.1, 5.0]))
    assert confidence[0] == 0.0  # a latent that never fires says nothing
    assert float(confidence[1]) == pytest.approx(1 - math.exp(-0.1), rel=1e-5)
    assert float(confidence[2]) == pytest.approx(1 - math.exp(-5.0), rel=1e-5)


def test_score_is_similarity_times_confidence_with_negative_similarity_as_zero() -> None:
    score = absorption_score(torch.tensor([0.8, -0.5, 0.4]), torch.tensor([0.5, 1.0, 1.0]))
    assert score.tolist() == pytest.approx([0.4, 0.0, 0.4])


def slow_siblings(pairs: list[tuple[int, int]], firing: list[int]) -> list[bool]:
    linked = {frozenset(p) for p in pairs}
    latents = {x for p in pairs for x in p}
    return [
        any(
            frozenset((z, x)) in linked
            and frozenset((z, y)) in linked
            and firing[z] > max(firing[x], firing[y])
            for z in latents
        )
        for x, y in pairs
    ]


def test_siblings_under_a_more_frequent_latent_are_marked_and_the_absorption_kept() -> None:
    # Latent 0 fires most (the parent), 3 and 5 absorb it and pair with each other too; 7 and 8
    # pair alone.
    firing = torch.tensor([900, 0, 0, 40, 0, 30, 0, 5, 6])
    pairs = [(0, 3), (0, 5), (3, 5), (7, 8)]
    first, second = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    assert sibling_pairs(first, second, firing).tolist() == [False, False, True, False]


def test_sibling_pairs_match_a_loop_over_triangles_on_random_graphs() -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(20):
        width = 12
        firing = torch.randint(0, 50, (width,), generator=generator)
        all_pairs = [(i, j) for i in range(width) for j in range(i + 1, width)]
        keep = torch.rand(len(all_pairs), generator=generator) < 0.3
        pairs = [p for p, k in zip(all_pairs, keep.tolist(), strict=True) if k]
        if not pairs:
            continue
        first, second = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
        expected = slow_siblings(pairs, firing.tolist())
        assert sibling_pairs(first, second, firing).tolist() == expected


def test_carries_parent_keeps_pairs_whose_decoders_share_a_direction() -> None:
    cosine = torch.tensor([0.5, 0.1, 0.09, -0.4])
    assert carries_parent(cosine, 0.1).tolist() == [True, True, False, False]


def test_the_pair_search_option_defaults_to_the_core_floor() -> None:
    fields = {f.name: f for f in dataclasses.fields(PairSearchConfig)}
    assert fields["min_decoder_cosine"].default == CARRIES_PARENT


def test_the_generality_option_defaults_to_the_core_ratio() -> None:
    fields = {f.name: f for f in dataclasses.fields(PairSearchConfig)}
    assert fields["generality_ratio"].default == GENERALITY_RATIO


def test_a_parent_and_absorber_differ_in_generality_by_the_ratio_either_way() -> None:
    # letter (40 tokens) and word (1), word and letter, two words (1, 1), 2.0 vs 1.0 at the ratio,
    # 3 vs 2 below it, two latents that never fired.
    distinct_i = torch.tensor([40.0, 1.0, 1.0, 2.0, 3.0, 0.0])
    distinct_j = torch.tensor([1.0, 40.0, 1.0, 1.0, 2.0, 0.0])
    kept = parent_and_absorber(distinct_i, distinct_j, 2.0).tolist()
    assert kept == [True, True, False, True, False, True]
    assert parent_and_absorber(distinct_i, distinct_j, 1.0).all()


def test_siblings_compare_distinct_tokens_when_given() -> None:
    # Latent 0 (a letter) fires on 30 distinct tokens but less often than latent 3 (a frequent
    # word of that letter, one token) which pairs with both 0 and 5: by firing counts (0, 5) looks
    # like the sibling side under 3; by distinct tokens (3, 5) is, and both absorption pairs stay.
    pairs = [(0, 3), (0, 5), (3, 5)]
    first, second = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    firing = torch.tensor([100, 0, 0, 900, 0, 30])
    distinct = torch.tensor([30.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    assert sibling_pairs(first, second, firing).tolist() == [False, True, False]
    assert sibling_pairs(first, second, distinct).tolist() == [False, False, True]


def test_ranking_drops_equally_general_pairs_only_where_distinct_tokens_are_known() -> None:
    # (0, 3): letter and word; (3, 5): two words of the letter, never together, alike downstream.
    first, second = torch.tensor([0, 3]), torch.tensor([3, 5])
    pairs = Pairs(first, second, torch.tensor([0.9, 0.95]), torch.tensor([0, 0]))
    firing = torch.tensor([500, 0, 0, 400, 0, 300])
    decoder = torch.tensor([0.6, 0.5])
    unknown = rank_pairs(pairs, firing, 10_000, 0.3, decoder, 0.1)
    assert unknown.dropped_alike is None and unknown.pairs.first_P.tolist() == [3, 0]
    distinct = torch.tensor([25.0, 0.0, 0.0, 1.0, 0.0, 1.0])
    known = rank_pairs(pairs, firing, 10_000, 0.3, decoder, 0.1, distinct)
    assert known.dropped_alike == 1
    assert (known.pairs.first_P.tolist(), known.pairs.second_P.tolist()) == ([0], [3])

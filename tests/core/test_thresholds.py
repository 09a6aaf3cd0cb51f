import math

import pytest
import torch

from sae_hacking.core.thresholds import (
    BINS_PER_OCTAVE,
    HISTOGRAM_BINS,
    add_activation_histogram_,
    histogram_edges,
    histogram_otsu_thresholds,
    otsu_thresholds,
)
from tests.cooccurrence_setup import reference_bin


def test_histogram_counts_match_a_loop_over_activations() -> None:
    generator = torch.Generator().manual_seed(0)
    width, entries = 7, 3000
    latent_J = torch.randint(0, width, (entries,), generator=generator)
    # log-uniform over a range wider than the bins', so both ends are clamped too
    values_J = torch.exp2(torch.rand(entries, generator=generator) * 30 - 14)
    histogram_ED = torch.zeros(width, HISTOGRAM_BINS, dtype=torch.int64)
    add_activation_histogram_(histogram_ED, latent_J, values_J)
    expected = torch.zeros_like(histogram_ED)
    for e, a in zip(latent_J.tolist(), values_J.tolist(), strict=True):
        expected[e, reference_bin(a)] += 1
    assert torch.equal(histogram_ED, expected)
    edges = histogram_edges()
    assert edges.shape[0] == HISTOGRAM_BINS + 1
    assert float(edges[1] / edges[0]) == pytest.approx(2 ** (1 / BINS_PER_OCTAVE))


def exact_otsu_gap(values: list[float]) -> tuple[float, float]:
    """Otsu's split on the raw values themselves: the largest value of the lower group and the
    smallest of the upper one, at the split maximising n_low n_high (mean_high - mean_low)^2."""
    values = sorted(values)
    best, gap = -1.0, (0.0, 0.0)
    for k in range(1, len(values)):
        if values[k] == values[k - 1]:
            continue
        low, high = values[:k], values[k:]
        between = len(low) * len(high) * (sum(high) / len(high) - sum(low) / len(low)) ** 2
        if between > best:
            best, gap = between, (values[k - 1], values[k])
    return gap


def test_otsu_from_the_histogram_agrees_with_otsu_on_the_raw_activations_within_a_bin() -> None:
    generator = torch.Generator().manual_seed(1)
    width = 12
    histogram_ED = torch.zeros(width, HISTOGRAM_BINS, dtype=torch.int64)
    raw: list[list[float]] = []
    for e in range(width):
        # Weak and strong firings of a latent at its own scale (0.01 to 100).
        scale = 10 ** (4 * float(torch.rand((), generator=generator)) - 2)
        n_weak, n_strong = torch.randint(20, 200, (2,), generator=generator).tolist()
        weak = (0.15 + 0.25 * torch.rand(n_weak, generator=generator)) * scale
        strong = (0.7 + 0.6 * torch.rand(n_strong, generator=generator)) * scale
        values_J = torch.cat([weak, strong])
        add_activation_histogram_(
            histogram_ED, torch.full((values_J.shape[0],), e, dtype=torch.long), values_J
        )
        raw.append(values_J.tolist())
    fitted_E = histogram_otsu_thresholds(histogram_ED)
    one_bin = 2 ** (1 / BINS_PER_OCTAVE)
    for e in range(width):
        below, above = exact_otsu_gap(raw[e])
        assert below / one_bin <= float(fitted_E[e]) <= above * one_bin, e
    # The toy hunt's fit (linear bins on raw activations) splits the same groups.
    toy_E = otsu_thresholds(torch.tensor(raw[0])[:, None])
    assert float(toy_E[0]) == pytest.approx(float(fitted_E[0]), rel=0.25)


def test_a_latent_with_one_bin_of_values_or_none_gets_no_bar() -> None:
    histogram_ED = torch.zeros(3, HISTOGRAM_BINS, dtype=torch.int64)
    histogram_ED[1, 50] = 9
    histogram_ED[2, 40], histogram_ED[2, 90] = 5, 5
    fitted_E = histogram_otsu_thresholds(histogram_ED)
    assert fitted_E[:2].tolist() == [0.0, 0.0]
    assert float(fitted_E[2]) == pytest.approx(2 ** (-10 + 41 / BINS_PER_OCTAVE), rel=1e-6)
    assert not math.isnan(float(fitted_E.sum()))

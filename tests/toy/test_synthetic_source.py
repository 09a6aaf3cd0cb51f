"""The fast samplers draw from the distribution of sae-lens's own ``SyntheticModel.sample``.

``SyntheticSource`` (children only under fired parents) and ``FixedShapeSource`` (fixed slots per
sample) each draw the same number of samples from one sae-lens model (hierarchy with mutual
exclusion and child scaling, low-rank correlation, folded-normal magnitude spread). Each statistic
is compared within a stated number of standard errors of the difference of two independent
estimates, so a test fails by chance with probability far below 1e-6 per statistic.
"""

import pytest
import torch

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.synthetic_fixed import FixedShapeSource
from tests.toy.synthetic_fixtures import tiny_model

SAMPLES = 40_000
SIGMAS = 6.0


@pytest.fixture(scope="module")
def lens_draws() -> tuple[object, torch.Tensor]:
    torch.manual_seed(0)
    model = tiny_model()
    _, lens_BN = model.sample_with_features(SAMPLES)
    return model, lens_BN


@pytest.fixture(scope="module", params=[SyntheticSource, FixedShapeSource])
def draws(
    request: pytest.FixtureRequest, lens_draws
) -> tuple[SyntheticSource, torch.Tensor, torch.Tensor, None, torch.Tensor]:
    model, lens_BN = lens_draws
    source = request.param(model, torch.device("cpu"))
    batch = source.sample_sparse(SAMPLES, torch.Generator().manual_seed(1))
    fast_BN = batch.dense(source.num_features)
    if isinstance(source, FixedShapeSource):
        assert source.overflow()["dropped"] == 0
    return source, batch.x_BM, fast_BN, None, lens_BN


def difference_error(p1: torch.Tensor, p2: torch.Tensor, n: int) -> torch.Tensor:
    """Standard error of the difference of two independent frequency estimates from n draws."""
    pooled = (p1 + p2) / 2
    return (2 * pooled * (1 - pooled) / n).sqrt().clamp_min(1 / n)


def test_activations_are_the_features_decoded(draws) -> None:
    source, x_BM, fast_BN, _, _ = draws
    expected_BM = fast_BN @ source.W_NM + source.bias_M
    torch.testing.assert_close(x_BM, expected_BM, atol=1e-4, rtol=1e-4)


def test_firing_rates_match_sae_lens_within_sampling_error(draws) -> None:
    _, _, fast_BN, _, lens_BN = draws
    fast_N = (fast_BN > 0).double().mean(0)
    lens_N = (lens_BN > 0).double().mean(0)
    z_N = (fast_N - lens_N).abs() / difference_error(fast_N, lens_N, SAMPLES)
    assert z_N.max() < SIGMAS, f"feature {int(z_N.argmax())} off by {float(z_N.max()):.1f} sd"
    # The true L0 too (its sd over samples is below 3, so 6 sd of the mean difference is < 0.13).
    assert abs((fast_BN > 0).sum(1).double().mean() - (lens_BN > 0).sum(1).double().mean()) < 0.13


def test_children_fire_only_with_their_parent(draws) -> None:
    source, _, fast_BN, _, _ = draws
    parent_N = source.hierarchy.parent_of_N
    child_C = (parent_N >= 0).nonzero().squeeze(1)
    fired_BN = fast_BN > 0
    orphans = fired_BN[:, child_C] & ~fired_BN[:, parent_N[child_C]]
    assert int(orphans.sum()) == 0
    assert int(fired_BN[:, child_C].sum()) > 500  # the check saw many children fire


def test_exclusive_siblings_never_fire_together(draws) -> None:
    source, _, fast_BN, _, _ = draws
    hierarchy = source.hierarchy
    assert bool(hierarchy.exclusive_G.all())
    kids_GD = hierarchy.children_GD
    fired_BGD = (fast_BN[:, kids_GD.clamp_min(0)] > 0) & (kids_GD >= 0)
    assert int(fired_BGD.sum(2).max()) == 1


def test_pairwise_firing_correlations_match(draws) -> None:
    _, _, fast_BN, _, lens_BN = draws
    frequent = (lens_BN > 0).float().mean(0).argsort(descending=True)[:48]

    def correlations(acts_BN: torch.Tensor) -> torch.Tensor:
        return torch.corrcoef((acts_BN[:, frequent] > 0).double().T)

    fast_DD, lens_DD = correlations(fast_BN), correlations(lens_BN)
    upper = torch.triu(torch.ones_like(fast_DD, dtype=torch.bool), diagonal=1)
    # A sample correlation's sd is at most (1 - r^2) / sqrt(n) <= 1 / sqrt(n) for large n.
    bound = SIGMAS * (2 / SAMPLES) ** 0.5
    difference = (fast_DD - lens_DD)[upper].abs()
    assert difference.max() < bound, f"largest correlation difference {float(difference.max()):.4f}"
    # The hierarchy and the correlation make them far from zero: the check has something to see.
    assert lens_DD[upper].abs().max() > 0.2


def test_magnitudes_match_where_features_fire(draws) -> None:
    _, _, fast_BN, _, lens_BN = draws
    for acts_BN in (fast_BN, lens_BN):
        assert bool((acts_BN >= 0).all())
    fired_f, fired_l = fast_BN > 0, lens_BN > 0
    n_f, n_l = fired_f.sum(0).double(), fired_l.sum(0).double()
    well_sampled = (n_f > 300) & (n_l > 300)
    assert int(well_sampled.sum()) > 30

    def moments(acts_BN: torch.Tensor, fired_BN: torch.Tensor, n_N: torch.Tensor):
        mean_N = acts_BN.double().sum(0) / n_N.clamp_min(1)
        square_N = (acts_BN.double() ** 2).sum(0) / n_N.clamp_min(1)
        return mean_N, (square_N - mean_N**2).clamp_min(0)

    mean_f, var_f = moments(fast_BN, fired_f, n_f)
    mean_l, var_l = moments(lens_BN, fired_l, n_l)
    error = (var_f / n_f.clamp_min(1) + var_l / n_l.clamp_min(1)).sqrt()
    z = ((mean_f - mean_l).abs() / error)[well_sampled]
    assert z.max() < SIGMAS, f"mean magnitude off by {float(z.max()):.1f} sd"


def test_sample_returns_the_sparse_truth_behind_the_activations(draws) -> None:
    source = draws[0]
    x_BM, truth_BN = source.sample(64, torch.Generator().manual_seed(3))
    assert truth_BN.is_sparse
    torch.testing.assert_close(
        x_BM, truth_BN.to_dense() @ source.W_NM + source.bias_M, atol=1e-4, rtol=1e-4
    )


def test_byte_first_firing_matches_the_normal_draw_given_the_factor_draw() -> None:
    """``fire_flat`` (a first random byte, then exact) against ``fire`` (a normal per entry).

    The copula's factor draw is held fixed, so each entry fires with its own probability Phi(z);
    the two samplers' frequencies per entry are compared over many repeats.
    """
    source = SyntheticSource(tiny_model(), torch.device("cpu"))
    generator = torch.Generator().manual_seed(2)
    batch, repeats = 16, 4000
    eps_BU = source.factor_draw(batch, generator)
    assert eps_BU is not None
    width = len(source.free_F)
    fast_BF = torch.zeros(batch * width)
    plain_BF = torch.zeros(batch, width)
    for _ in range(repeats):
        fast_BF[source.fire_flat(eps_BU, batch, generator)] += 1
        plain_BF += source.fire(eps_BU, source.free_F4, source.factor_free_UF, batch, generator)
    fast_BF, plain_BF = fast_BF.view(batch, width) / repeats, plain_BF / repeats
    error_BF = difference_error(fast_BF, plain_BF, repeats)
    assert ((fast_BF - plain_BF).abs() <= SIGMAS * error_BF).all()
    # Entries both above and below the byte cut are exercised.
    z_BF = torch.addmm(source.offset_free_F, eps_BU, source.factor_free_scaled_UF)
    assert (z_BF < source.z_cut).any() and (z_BF >= source.z_cut).any()
    assert (fast_BF > 0).float().mean() > 0.2

import pytest
import torch

from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.toy.metrics.absorption import (
    AbsorptionThresholds,
    absorbed_pairs,
    absorption_scores,
    best_match_latents,
    main_latent_mask,
)
from tests.toy.metric_fixtures import (
    PARENT_N,
    HandSAE,
    absorbing_sae,
    features,
    hierarchy_samples,
    perfect_sae,
)

DEFAULTS = AbsorptionThresholds()


def score(sae: HandSAE, thresholds: AbsorptionThresholds = DEFAULTS):
    x_BM, acts_BN = hierarchy_samples()
    latent_N = best_match_latents(sae.decoder_EM, features())
    main_NE = main_latent_mask(latent_N, sae.decoder_EM.shape[0])
    return absorption_scores(
        x_BM, sae.encode(x_BM), sae.decoder_EM, features(), acts_BN, PARENT_N, main_NE, thresholds
    )


def test_perfect_sae_scores_zero_absorption() -> None:
    report = score(perfect_sae())
    assert report.parents_A.tolist() == [0]
    assert report.samples_A.tolist() == [3]
    assert report.mean_fraction == 0.0
    assert report.mean_full_rate == 0.0


def test_fully_absorbed_sae_scores_one() -> None:
    report = score(absorbing_sae(strength=1.0, child_carries=1.0))
    assert report.mean_fraction == pytest.approx(1.0)
    assert report.mean_full_rate == pytest.approx(1.0)


def test_half_strength_parent_latent_scores_one_half() -> None:
    # The parent latent fires at 0.5 and the child latent carries the other 0.5: 0.5 / (0.5 + 0.5).
    report = score(absorbing_sae(strength=0.5, child_carries=0.5))
    assert report.mean_fraction == pytest.approx(0.5)
    assert report.mean_full_rate == 0.0


def test_absorber_credit_is_capped_at_the_unaccounted_projection() -> None:
    # Parent latent carries 0.3 of t = 1; the child latent offers 0.5 but only 0.7 is missing:
    # min(0.5, 0.7) / (min(0.5, 0.7) + 0.3) = 0.625.
    report = score(absorbing_sae(strength=0.7, child_carries=0.5))
    assert report.mean_fraction == pytest.approx(0.5 / 0.8)


def test_projection_threshold_counts_absorbers_at_the_edge_and_not_above() -> None:
    sae = absorbing_sae(strength=0.5, child_carries=0.5)
    at_edge = score(sae, AbsorptionThresholds(projection_threshold=0.5))
    above = score(sae, AbsorptionThresholds(projection_threshold=0.5000001))
    assert at_edge.mean_fraction == pytest.approx(0.5)
    assert above.mean_fraction == 0.0


def test_cosine_threshold_counts_absorbers_at_the_edge_and_not_above() -> None:
    sae = absorbing_sae(strength=1.0, child_carries=1.0)
    cos = cosine_matrix(sae.decoder_EM[1:2], features()[0:1]).item()
    above = torch.nextafter(torch.tensor(cos), torch.tensor(2.0)).item()
    assert score(sae, AbsorptionThresholds(fraction_cos_threshold=cos)).mean_fraction == 1.0
    assert score(sae, AbsorptionThresholds(fraction_cos_threshold=above)).mean_fraction == 0.0
    assert score(sae, AbsorptionThresholds(full_cos_threshold=cos)).mean_full_rate == 1.0
    assert score(sae, AbsorptionThresholds(full_cos_threshold=above)).mean_full_rate == 0.0


def test_active_threshold_decides_whether_a_weak_main_latent_is_silent() -> None:
    sae = absorbing_sae(strength=0.75, child_carries=1.0)  # parent latent still fires at 0.25
    assert score(sae, AbsorptionThresholds(active_threshold=0.25)).mean_full_rate == 1.0
    assert score(sae, AbsorptionThresholds(active_threshold=0.2499)).mean_full_rate == 0.0


def test_max_absorbers_limits_how_many_latents_may_share_the_parent() -> None:
    # Two latents each carry 0.3 of the parent: one alone is below the 0.4 threshold.
    u = features()
    encoder = torch.cat([u[0:1] - u[1:2], u[1:2], u[1:2]])
    decoder = torch.cat([u[0:1], u[1:2] + 0.3 * u[0:1], u[1:2] * 0 + 0.3 * u[0:1]])
    x_BM, acts_BN = hierarchy_samples()
    x_BM, acts_BN = x_BM[:1], acts_BN[:1, :2]
    z_BE = torch.relu(x_BM @ encoder.T)
    main_NE = torch.tensor([[True, False, False], [False, True, False]])
    parent_N = torch.tensor([-1, 0])

    def fraction(k: int) -> float:
        th = AbsorptionThresholds(max_absorbers=k)
        report = absorption_scores(x_BM, z_BE, decoder, u[:2], acts_BN, parent_N, main_NE, th)
        return report.mean_fraction

    assert fraction(1) == 0.0
    assert fraction(2) == pytest.approx(1.0)


def test_absorbed_pairs_name_the_parent_latent_and_each_child_latent() -> None:
    sae = absorbing_sae(strength=1.0, child_carries=1.0)
    report = score(sae)
    pairs = absorbed_pairs(report, best_match_latents(sae.decoder_EM, features()), min_rate=0.3)
    assert [(p.parent_latent, p.absorbing_latent) for p in pairs] == [(0, 1), (0, 2), (0, 3)]
    assert all(p.rate == pytest.approx(1 / 3) for p in pairs)


def test_best_match_ignores_latents_that_decode_the_negative_direction() -> None:
    u = features()
    decoder = torch.stack([-u[0], u[1], u[0], u[2], u[3]])
    assert best_match_latents(decoder, u).tolist() == [2, 1, 3, 4]


def reference_fraction(z_E, t, proj_E, cos_E, main, th: AbsorptionThresholds) -> tuple[float, bool]:
    contrib = [float(z_E[e] * proj_E[e]) for e in range(len(z_E))]
    m = sum(contrib[e] for e in main)
    candidates = sorted(
        (
            c
            for e, c in enumerate(contrib)
            if e not in main and cos_E[e] >= th.fraction_cos_threshold and c > 0
        ),
        reverse=True,
    )
    a = sum(candidates[: th.max_absorbers])
    if m >= t or a / t < th.projection_threshold:
        fraction = 0.0
    elif m <= 0:
        fraction = 1.0
    else:
        carried = min(a, t - m)
        fraction = min(max(carried / (carried + m), 0.0), 1.0)
    top = max(range(len(contrib)), key=lambda e: contrib[e])
    full = (
        all(z_E[e] <= th.active_threshold for e in main)
        and cos_E[top] >= th.full_cos_threshold
        and t > 0
        and contrib[top] / t >= th.projection_threshold
    )
    return fraction, full


def test_vectorised_scores_match_a_per_sample_reference_on_random_saes() -> None:
    gen = torch.Generator().manual_seed(3)
    n, m, e, b = 7, 12, 9, 400
    u_NM = torch.linalg.qr(torch.randn(m, n, generator=gen)).Q.T
    parent_N = torch.tensor([-1, 0, 0, -1, 3, 3, 3])
    acts_BN = (torch.rand(b, n, generator=gen) < 0.5).float()
    acts_BN[:, [1, 2]] *= acts_BN[:, [0]]
    acts_BN[:, [4, 5, 6]] *= acts_BN[:, [3]]
    x_BM = acts_BN @ u_NM
    decoder_EM = u_NM[torch.arange(e) % n] + 0.4 * torch.randn(e, m, generator=gen)
    encoder_EM = decoder_EM + 0.3 * torch.randn(e, m, generator=gen)
    z_BE = torch.relu(x_BM @ encoder_EM.T)
    main_NE = (torch.arange(e) % n == torch.arange(n).unsqueeze(1)) & (
        torch.rand(n, e, generator=gen) < 0.7
    )
    th = AbsorptionThresholds(projection_threshold=0.3, max_absorbers=2)
    report = absorption_scores(x_BM, z_BE, decoder_EM, u_NM, acts_BN, parent_N, main_NE, th)
    proj_EN = decoder_EM @ u_NM.T
    cos_EN = cosine_matrix(decoder_EM, u_NM)
    for a, p in enumerate(report.parents_A.tolist()):
        kids = (parent_N == p).nonzero().squeeze(1)
        rows = ((acts_BN[:, p] > 0) & (acts_BN[:, kids] > 0).any(1)).nonzero().squeeze(1)
        main = main_NE[p].nonzero().squeeze(1).tolist()
        results = [
            reference_fraction(
                z_BE[r], float(x_BM[r] @ u_NM[p]), proj_EN[:, p], cos_EN[:, p], main, th
            )
            for r in rows.tolist()
        ]
        assert report.samples_A[a] == len(results)
        assert report.fraction_A[a].item() == pytest.approx(
            sum(f for f, _ in results) / len(results), abs=1e-5
        )
        assert report.full_rate_A[a].item() == pytest.approx(
            sum(full for _, full in results) / len(results)
        )

import math

import pytest
import torch

from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.toy.metrics.absorption import best_match_latents
from sae_hacking.toy.metrics.hedging import hedging_scores
from tests.toy.metric_fixtures import (
    PARENT_N,
    HandSAE,
    absorbing_sae,
    features,
    hedging_sae,
    perfect_sae,
)


def scores(sae: HandSAE) -> dict[str, float]:
    latent_N = best_match_latents(sae.decoder_EM, features())
    report = hedging_scores(sae.encoder_EM, sae.decoder_EM, features(), PARENT_N, latent_N)
    assert report.parents_A.tolist() == [0]
    return report.means()


def test_perfect_sae_scores_zero_hedging_and_zero_absorption_signature() -> None:
    assert scores(perfect_sae()) == {
        "decoder_hedging": 0.0,
        "encoder_hedging": 0.0,
        "encoder_absorption": 0.0,
        "child_decoder_parent": 0.0,
    }


def test_hedged_parent_latent_scores_its_child_cosine() -> None:
    # Decoder u_p + b (u_1 + u_2 + u_3): each child cosine is b / sqrt(1 + 3 b^2).
    beta = 0.15
    result = scores(hedging_sae(beta))
    expected = beta / math.sqrt(1 + 3 * beta**2)
    assert result["decoder_hedging"] == pytest.approx(expected)
    assert result["encoder_hedging"] == pytest.approx(expected)
    assert result["encoder_absorption"] == 0.0
    assert result["child_decoder_parent"] == 0.0


def test_fully_absorbed_sae_shows_negative_encoder_and_parent_in_child_decoders() -> None:
    # Encoder u_p - (u_1 + u_2 + u_3): cosine -1/2 with each child; child decoders u_c + u_p.
    result = scores(absorbing_sae(strength=1.0, child_carries=1.0))
    assert result["encoder_absorption"] == pytest.approx(0.5)
    assert result["child_decoder_parent"] == pytest.approx(1 / math.sqrt(2))
    assert result["decoder_hedging"] == 0.0
    assert result["encoder_hedging"] == 0.0


def test_missing_latent_counts_as_zero() -> None:
    sae = hedging_sae(0.5)
    latent_N = torch.tensor([-1, 1, 2, 3])
    report = hedging_scores(sae.encoder_EM, sae.decoder_EM, features(), PARENT_N, latent_N)
    assert report.decoder_hedging_A.tolist() == [0.0]


def test_per_parent_scores_match_a_loop_on_a_random_two_level_tree() -> None:
    gen = torch.Generator().manual_seed(1)
    u_NM = torch.randn(9, 16, generator=gen)
    parent_N = torch.tensor([-1, 0, 0, 0, 1, 1, -1, 6, 6])
    enc_EM, dec_EM = torch.randn(11, 16, generator=gen), torch.randn(11, 16, generator=gen)
    latent_N = torch.randperm(11, generator=gen)[:9]
    report = hedging_scores(enc_EM, dec_EM, u_NM, parent_N, latent_N)
    enc_cos, dec_cos = cosine_matrix(enc_EM, u_NM), cosine_matrix(dec_EM, u_NM)
    assert report.parents_A.tolist() == [0, 1, 6]
    for a, p in enumerate(report.parents_A.tolist()):
        kids = [c for c in range(9) if parent_N[c] == p]
        lat = int(latent_N[p])
        expect_dec = sum(max(0.0, dec_cos[lat, c].item()) for c in kids) / len(kids)
        expect_abs = sum(max(0.0, -enc_cos[lat, c].item()) for c in kids) / len(kids)
        expect_child = sum(max(0.0, dec_cos[int(latent_N[c]), p].item()) for c in kids) / len(kids)
        assert report.decoder_hedging_A[a].item() == pytest.approx(expect_dec, abs=1e-6)
        assert report.encoder_absorption_A[a].item() == pytest.approx(expect_abs, abs=1e-6)
        assert report.child_decoder_parent_A[a].item() == pytest.approx(expect_child, abs=1e-6)

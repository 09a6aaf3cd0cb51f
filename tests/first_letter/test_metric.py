"""The absorption metric on hand-built cases with known answers, and against the slow reference."""

import pytest
import torch
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata

from sae_hacking.first_letter.metric import Thresholds, probe_cosines, word_absorption
from sae_hacking.first_letter.saes import FoldedSae, fold
from sae_hacking.llm.saes import random_sae
from tests.first_letter.reference import absorption_of_word

M = 40
LETTER = 0  # the letter direction is coordinate 0


def unit(*coordinates: tuple[int, float]) -> torch.Tensor:
    v = torch.zeros(M)
    for index, value in coordinates:
        v[index] = value
    return v / v.norm()


def score(
    latents_TE: torch.Tensor, acts_TM: torch.Tensor, decoder_EM: torch.Tensor, main: list[int]
):
    direction = unit((LETTER, 1.0))
    return word_absorption(
        latents_TE, acts_TM, direction, probe_cosines(direction, decoder_EM), main, Thresholds()
    )


def two_latents(letter_act: float, absorber_projection: float) -> tuple[torch.Tensor, ...]:
    """Latent 0 reads the letter; latent 1 is a word latent whose decoder carries some letter."""
    decoder_EM = torch.stack([unit((LETTER, 1.0)), unit((LETTER, 1.0), (5, 1.0))])
    cosine = 2**-0.5
    latents_TE = torch.tensor([[letter_act, absorber_projection / cosine]])
    acts_TM = latents_TE @ decoder_EM
    return latents_TE, acts_TM, decoder_EM


def test_an_oracle_sae_scores_zero() -> None:
    latents_TE, acts_TM, decoder_EM = two_latents(4.0, 0.0)
    result = score(latents_TE, acts_TM, decoder_EM, [0])
    assert result.fraction_T.tolist() == [0.0] and result.full_T.tolist() == [False]


def test_a_fully_absorbed_letter_scores_one() -> None:
    latents_TE, acts_TM, decoder_EM = two_latents(0.0, 4.0)
    result = score(latents_TE, acts_TM, decoder_EM, [0])
    assert result.fraction_T.tolist() == pytest.approx([1.0])
    assert result.full_T.tolist() == [True]
    assert result.absorbers_TK[0, 0] == 1 and result.top_latent_T.tolist() == [1]


def test_an_absorber_carrying_half_the_projection_scores_half() -> None:
    latents_TE, acts_TM, decoder_EM = two_latents(2.0, 2.0)
    result = score(latents_TE, acts_TM, decoder_EM, [0])
    assert result.fraction_T.tolist() == pytest.approx([0.5])
    assert result.full_T.tolist() == [False]  # the main latent still fires


def test_an_absorber_carrying_less_than_the_threshold_scores_zero() -> None:
    latents_TE, acts_TM, decoder_EM = two_latents(2.8, 1.2)
    assert score(latents_TE, acts_TM, decoder_EM, [0]).fraction_T.tolist() == [0.0]
    latents_TE, acts_TM, decoder_EM = two_latents(2.4, 1.6)  # 0.4 of the projection: counts
    assert score(latents_TE, acts_TM, decoder_EM, [0]).fraction_T.tolist() == pytest.approx([0.4])


def jumprelu(W_dec_EM: torch.Tensor, threshold: float) -> JumpReLUSAE:
    width = W_dec_EM.shape[0]
    cfg = JumpReLUSAEConfig(
        d_in=M, d_sae=width, metadata=SAEMetadata(hook_name="blocks.0.hook_resid_pre")
    )
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_dec.copy_(W_dec_EM)
        sae.W_enc.copy_(W_dec_EM.T / W_dec_EM.norm(dim=1) ** 2)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.fill_(threshold)
    return sae


def test_rescaling_a_latent_inversely_changes_nothing_after_folding() -> None:
    decoder_EM = torch.stack([unit((LETTER, 1.0)), unit((LETTER, 1.0), (5, 1.0)), unit((7, 1.0))])
    acts_TM = torch.stack(
        [4 * unit((LETTER, 1.0)), 4 * unit((LETTER, 1.0), (5, 1.0)) + unit((7, 1.0))]
    )
    plain, scaled = jumprelu(decoder_EM, 0.5), jumprelu(decoder_EM, 0.5)
    with torch.no_grad():
        for latent, factor in ((0, 3.0), (1, 0.2), (2, 7.0)):
            scaled.W_dec[latent] *= factor
            scaled.W_enc[:, latent] /= factor
            scaled.threshold[latent] /= factor
    results = []
    for sae in (plain, scaled):
        folded = fold(sae)
        assert folded.scale_E is None  # JumpReLU folds in place
        with torch.no_grad():
            results.append(score(folded.encode(acts_TM), acts_TM, folded.decoder_EM, [0]))
    for name in ("fraction_T", "full_T", "absorbers_TK", "absorber_projection_TK"):
        torch.testing.assert_close(getattr(results[0], name), getattr(results[1], name))
    assert float(results[0].absorber_projection_TK[1, 0]) > 1.0  # the comparison is not vacuous


def test_a_random_sae_scores_near_zero() -> None:
    generator = torch.Generator().manual_seed(0)
    d = 512
    letter_M = torch.zeros(d)
    letter_M[0] = 1.0
    acts_TM = torch.randn(400, d, generator=generator) + 4 * letter_M
    sae = fold(random_sae("jumprelu", acts_TM, 2048, "blocks.0.hook_resid_pre", generator))
    with torch.no_grad():
        latents_TE = sae.encode(acts_TM)
        cosine_E = probe_cosines(letter_M, sae.decoder_EM)
        main = [int(cosine_E.argmax())]
        result = word_absorption(latents_TE, acts_TM, letter_M, cosine_E, main, Thresholds())
    assert float(result.fraction_T.mean()) < 0.05
    assert float(result.full_T.float().mean()) < 0.05


def test_the_batched_metric_equals_the_word_by_word_reference() -> None:
    generator = torch.Generator().manual_seed(1)
    t, width = 30, 30
    decoder_EM = torch.randn(width, M, generator=generator)
    decoder_EM[:8] += 2.0 * unit((LETTER, 1.0))  # some latents aligned with the letter
    decoder_EM /= decoder_EM.norm(dim=1, keepdim=True)
    firing_TE = torch.rand(t, width, generator=generator) < 0.2
    latents_TE = torch.rand(t, width, generator=generator) * 3 * firing_TE
    latents_TE[: t // 3, :2] = 0.0  # main latents silent on a third of the words
    acts_TM = latents_TE @ decoder_EM + 0.3 * torch.randn(t, M, generator=generator)
    direction = unit((LETTER, 1.0)) + 0.1 * torch.randn(M, generator=generator)
    for thresholds in (Thresholds(), Thresholds(0.2, 0.1, 0.3, 2), Thresholds(0.0, 0.0, 0.0, 1)):
        for main in ([0], [0, 1], []):
            result = word_absorption(
                latents_TE,
                acts_TM,
                direction,
                probe_cosines(direction, decoder_EM),
                main,
                thresholds,
            )
            for i in range(t):
                fraction, full = absorption_of_word(
                    latents_TE[i],
                    acts_TM[i],
                    direction,
                    decoder_EM,
                    main,
                    thresholds.absorber_cosine,
                    thresholds.full_absorption_cosine,
                    thresholds.projection_threshold,
                    thresholds.max_absorbers,
                )
                assert float(result.fraction_T[i]) == pytest.approx(fraction, abs=1e-5)
                assert bool(result.full_T[i]) == full


def test_folding_after_encoding_equals_folding_in_place() -> None:
    generator = torch.Generator().manual_seed(3)
    decoder_EM = (
        torch.randn(12, M, generator=generator) * torch.rand(12, 1, generator=generator) * 3
    )
    acts_TM = torch.randn(20, M, generator=generator)
    in_place = fold(jumprelu(decoder_EM, 0.1))
    sae = jumprelu(decoder_EM, 0.1)
    after = FoldedSae(sae, sae.W_dec.norm(dim=1))
    with torch.no_grad():
        torch.testing.assert_close(after.encode(acts_TM), in_place.encode(acts_TM))
        torch.testing.assert_close(after.decoder_EM, in_place.decoder_EM)

import pytest
import torch

from sae_hacking.toy.saes.matryoshka import (
    MatryoshkaSAE,
    MatryoshkaShape,
    parse_ordering,
    truth_directions,
)

M, E = 8, 5


def make(**overrides) -> MatryoshkaSAE:
    fields = {
        "model_dim": M,
        "width": E,
        "prefix_widths": (2, E),
        "level_multipliers": (1.0, 1.0),
        "sparsity": "l1",
        "l1_coefficient": 0.03,
    }
    fields.update(overrides)
    gen = torch.Generator().manual_seed(0)
    sae = MatryoshkaSAE(MatryoshkaShape(**fields), gen)
    with torch.no_grad():
        sae.b_enc_E.normal_(0, 0.1, generator=gen)
        sae.b_dec_M.normal_(0, 0.1, generator=gen)
    return sae


def reference_level_loss(
    sae: MatryoshkaSAE, x_BM: torch.Tensor, start: int, stop: int, l1_from: int
) -> torch.Tensor:
    """One level's MSE + L1 with explicit loops over samples and latents."""
    W_enc, W_dec, b_enc, b_dec = sae.W_enc_ME, sae.W_dec_EM, sae.b_enc_E, sae.b_dec_M
    total = torch.zeros(())
    for x in x_BM:
        acts = [torch.relu((x - b_dec) @ W_enc[:, e] + b_enc[e]) for e in range(sae.width)]
        recon = b_dec.clone()
        for e in range(stop):
            recon = recon + acts[e] * W_dec[e]
        l1 = sum(acts[e] * W_dec[e].norm() for e in range(l1_from, stop))
        total = total + ((recon - x) ** 2).sum() + sae.shape.l1_coefficient * l1
    return total / x_BM.shape[0]


def test_level_losses_match_a_loop_reference() -> None:
    sae = make(level_multipliers=(0.25, 1.0))
    x_BM = torch.randn(16, M)
    expected = 0.25 * reference_level_loss(sae, x_BM, 0, 2, 0) + reference_level_loss(
        sae, x_BM, 0, E, 0
    )
    torch.testing.assert_close(sae.loss(x_BM).total, expected)


def test_detached_levels_charge_l1_only_for_their_new_latents() -> None:
    sae = make(detach_earlier=True)
    x_BM = torch.randn(16, M)
    expected = reference_level_loss(sae, x_BM, 0, 2, 0) + reference_level_loss(sae, x_BM, 0, E, 2)
    torch.testing.assert_close(sae.loss(x_BM).total, expected)


def test_detaching_hides_outer_levels_from_inner_latents() -> None:
    x_BM = torch.randn(32, M)

    def inner_grad(sae: MatryoshkaSAE) -> torch.Tensor:
        sae.zero_grad()
        sae.loss(x_BM).total.backward()
        assert sae.W_dec_EM.grad is not None
        return sae.W_dec_EM.grad[:2].clone()

    detached = make(detach_earlier=True)
    inner_only = make(detach_earlier=True, level_multipliers=(1.0, 0.0))
    attached = make()
    torch.testing.assert_close(inner_grad(detached), inner_grad(inner_only))
    assert not torch.allclose(inner_grad(attached), inner_grad(inner_only))


def test_one_full_level_is_a_standard_sae_and_the_outer_loss_adds_it_again() -> None:
    x_BM = torch.randn(16, M)
    standard = make(prefix_widths=(E,), level_multipliers=(1.0,))
    with_outer = make(
        prefix_widths=(E,), level_multipliers=(1.0,), skip_outer_loss=False, outer_multiplier=0.5
    )
    full = reference_level_loss(standard, x_BM, 0, E, 0)
    torch.testing.assert_close(standard.loss(x_BM).total, full)
    torch.testing.assert_close(with_outer.loss(x_BM).total, 1.5 * full)


def test_topk_keeps_at_most_k_latents_and_pays_no_l1() -> None:
    sae = make(
        sparsity="topk", k=2, l1_coefficient=0.5, prefix_widths=(E,), level_multipliers=(1.0,)
    )
    x_BM = torch.randn(64, M)
    acts_BE = sae.encode_dense(x_BM)
    assert ((acts_BE > 0).sum(-1) <= 2).all()
    expected = ((acts_BE @ sae.W_dec_EM + sae.b_dec_M - x_BM) ** 2).sum(-1).mean()
    torch.testing.assert_close(sae.loss(x_BM).total, expected)
    torch.testing.assert_close(sae.reconstruct(x_BM), acts_BE @ sae.W_dec_EM + sae.b_dec_M)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"prefix_widths": (3, 2)}, "strictly increasing"),
        ({"prefix_widths": (2, E + 1)}, "must lie in"),
        ({"level_multipliers": (1.0,)}, "1 level multipliers for 2"),
        ({"prefix_widths": (2, 4)}, "no loss"),
        ({"sparsity": "topk", "k": E + 1}, "k="),
    ],
)
def test_bad_shapes_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**overrides)


def test_init_to_truth_puts_features_in_the_given_order() -> None:
    sae = make()
    features_NM = torch.eye(4, M)
    order = parse_ordering("2,0,1", 4)
    sae.load_directions(truth_directions(features_NM, order, 0.0, torch.Generator()))
    torch.testing.assert_close(sae.W_dec_EM[:3], features_NM[[2, 0, 1]])
    torch.testing.assert_close(sae.W_enc_ME[:, :3], features_NM[[2, 0, 1]].T)
    noisy = truth_directions(features_NM, order, 0.1, torch.Generator().manual_seed(0))
    assert 0 < (noisy - features_NM[[2, 0, 1]]).abs().max() < 1


@pytest.mark.parametrize("text", ["0,0", "0,4", "a,b", ""])
def test_bad_orderings_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ordering(text, 4)

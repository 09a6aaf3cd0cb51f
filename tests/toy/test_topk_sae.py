import pytest
import torch

from sae_hacking.core.topk import topk_decode, topk_encode
from sae_hacking.toy.saes.matryoshka import MatryoshkaSAE, MatryoshkaShape
from sae_hacking.toy.saes.sparse_code import decode_top_k, top_k
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape


def make_sae(width: int = 16, k: int = 3, aux_k: int = 0) -> TopKSAE:
    shape = TopKShape(model_dim=8, width=width, k=k, aux_k=aux_k, dead_after_steps=1)
    sae = TopKSAE(shape, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return sae


def reference_reconstruct(sae: TopKSAE, x_BM: torch.Tensor) -> torch.Tensor:
    """Sample by sample: pre-activations, the k largest ReLU'd, a sum of decoder rows."""
    out = torch.zeros_like(x_BM)
    for b in range(x_BM.shape[0]):
        pre_E = (x_BM[b] - sae.b_dec_M) @ sae.W_enc_ME + sae.b_enc_E
        order = sorted(range(sae.width), key=lambda e: -pre_E[e].item())
        out[b] = sae.b_dec_M
        for e in order[: sae.k]:
            out[b] += max(pre_E[e].item(), 0.0) * sae.W_dec_EM[e]
    return out


def test_reconstruction_matches_per_sample_reference() -> None:
    sae = make_sae()
    x_BM = torch.randn(20, 8)
    torch.testing.assert_close(sae.reconstruct(x_BM), reference_reconstruct(sae, x_BM).detach())


def test_dense_code_has_at_most_k_nonzeros_and_decodes_to_the_reconstruction() -> None:
    sae = make_sae()
    x_BM = torch.randn(20, 8)
    dense_BE = sae.encode_dense(x_BM)
    assert (dense_BE != 0).sum(dim=1).max().item() <= 3
    expected_BM = dense_BE @ sae.decoder_directions() + sae.b_dec_M
    torch.testing.assert_close(sae.reconstruct(x_BM), expected_BM)


def test_encoder_starts_as_decoder_transpose() -> None:
    sae = TopKSAE(TopKShape(model_dim=8, width=16, k=3), torch.Generator().manual_seed(0))
    assert torch.equal(sae.encoder_directions(), sae.decoder_directions())


def test_loss_without_auxk_is_the_squared_error() -> None:
    sae = make_sae()
    x_BM = torch.randn(20, 8)
    expected = (sae.reconstruct(x_BM) - x_BM).square().sum(-1).mean()
    torch.testing.assert_close(sae.loss(x_BM).total, expected)


def test_auxk_gives_dead_latents_a_gradient() -> None:
    sae = make_sae(width=16, k=2, aux_k=4)
    x_BM = torch.randn(4, 8)
    sae.loss(x_BM)  # the first step marks which latents fired
    parts = sae.loss(x_BM)
    parts.total.backward()
    fired = sae.encode_dense(x_BM).ne(0).any(dim=0)
    grad_E = sae.W_dec_EM.grad.norm(dim=-1)  # type: ignore[union-attr]
    assert parts.parts["auxk"].item() > 0  # type: ignore[union-attr]
    assert (grad_E[~fired] > 0).any()


def test_k_larger_than_width_is_refused() -> None:
    with pytest.raises(ValueError, match="k=17"):
        TopKSAE(TopKShape(model_dim=8, width=16, k=17), torch.Generator())


def test_unchecked_training_kernels_give_the_checked_public_results() -> None:
    pre_BE = torch.randn(64, 40)
    W_dec_EM, b_dec_M = torch.randn(40, 8), torch.randn(8)
    acts_BK, idx_BK = top_k(pre_BE, 5)
    public_acts_BK, public_idx_BK = topk_encode(pre_BE, 5)
    assert torch.equal(acts_BK, public_acts_BK) and torch.equal(idx_BK, public_idx_BK)
    assert torch.equal(
        decode_top_k(acts_BK, idx_BK, W_dec_EM, b_dec_M),
        topk_decode(acts_BK, idx_BK, W_dec_EM, b_dec_M),
    )


def test_training_loss_is_the_squared_error_of_the_public_reconstruction() -> None:
    sae = make_sae()
    x_BM = torch.randn(32, 8)
    expected = (sae.reconstruct(x_BM) - x_BM).square().sum(-1).mean()
    torch.testing.assert_close(sae.loss(x_BM).total, expected)


def test_topk_and_matryoshka_saes_share_one_initialisation() -> None:
    topk = TopKSAE(TopKShape(model_dim=8, width=6, k=2), torch.Generator().manual_seed(4))
    shape = MatryoshkaShape(model_dim=8, width=6, prefix_widths=(6,), level_multipliers=(1.0,))
    matryoshka = MatryoshkaSAE(shape, torch.Generator().manual_seed(4))
    assert torch.equal(topk.W_dec_EM, matryoshka.W_dec_EM)
    assert torch.equal(topk.W_enc_ME, topk.W_dec_EM.T)
    assert not topk.b_dec_M.requires_grad and matryoshka.b_dec_M.requires_grad

import pytest
import torch

from sae_hacking.core.topk import densify, topk_decode, topk_encode


def reference_topk_dense(pre_BE: torch.Tensor, k: int) -> torch.Tensor:
    """Row by row: keep the k largest values, ReLU them, zero the rest."""
    out = torch.zeros_like(pre_BE)
    for b in range(pre_BE.shape[0]):
        order = sorted(range(pre_BE.shape[1]), key=lambda e: -pre_BE[b, e].item())
        for e in order[:k]:
            out[b, e] = max(pre_BE[b, e].item(), 0.0)
    return out


@pytest.mark.parametrize(("batch", "width", "k"), [(1, 1, 1), (7, 13, 3), (16, 64, 64)])
def test_topk_encode_matches_reference(batch: int, width: int, k: int) -> None:
    pre_BE = torch.randn(batch, width)
    acts_BK, idx_BK = topk_encode(pre_BE, k)
    assert torch.equal(densify(acts_BK, idx_BK, width), reference_topk_dense(pre_BE, k))


def test_topk_encode_relus_negative_kept_values() -> None:
    acts_BK, _ = topk_encode(-torch.ones(2, 5), 2)
    assert torch.equal(acts_BK, torch.zeros(2, 2))


def test_topk_decode_matches_dense_matmul() -> None:
    pre_BE = torch.randn(9, 20)
    W_dec_EM = torch.randn(20, 6)
    b_dec_M = torch.randn(6)
    acts_BK, idx_BK = topk_encode(pre_BE, 4)
    expected_BM = densify(acts_BK, idx_BK, 20) @ W_dec_EM + b_dec_M
    torch.testing.assert_close(topk_decode(acts_BK, idx_BK, W_dec_EM, b_dec_M), expected_BM)


def test_topk_decode_gradients_match_dense_path() -> None:
    W_dec_EM = torch.randn(10, 4, requires_grad=True)
    acts_BK = torch.rand(3, 2, requires_grad=True)
    idx_BK = torch.tensor([[0, 3], [9, 1], [2, 2]])
    topk_decode(acts_BK, idx_BK, W_dec_EM, torch.zeros(4)).square().sum().backward()
    sparse_grads = (W_dec_EM.grad.clone(), acts_BK.grad.clone())  # type: ignore[union-attr]
    W_dec_EM.grad, acts_BK.grad = None, None
    dense_BE = torch.zeros(3, 10).index_put(
        (torch.arange(3)[:, None], idx_BK), acts_BK, accumulate=True
    )
    (dense_BE @ W_dec_EM).square().sum().backward()
    torch.testing.assert_close(sparse_grads[0], W_dec_EM.grad)
    torch.testing.assert_close(sparse_grads[1], acts_BK.grad)


def test_shape_checks_reject_mismatched_widths() -> None:
    with pytest.raises(Exception, match="E"):
        topk_decode(
            torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.long), torch.rand(5, 4), torch.rand(7)
        )

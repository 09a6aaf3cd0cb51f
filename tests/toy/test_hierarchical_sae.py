import pytest
import torch

from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainSettings, train


def make_sae(num_parents: int = 6, k: int = 2, warmup: int = 0) -> HierarchicalTopKSAE:
    shape = HierarchicalShape(
        model_dim=8, num_parents=num_parents, k=k, child_warmup_samples=warmup
    )
    sae = HierarchicalTopKSAE(shape, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return sae


def reference_forward(
    sae: HierarchicalTopKSAE, x_BM: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample by sample, parent by parent: the obvious reading of the architecture.

    Returns the reconstruction and the dense code over all 3E latents.
    """
    E = sae.num_parents
    W_enc, b_enc = sae.W_enc_MG.detach(), sae.b_enc_G.detach()
    W_dec, b_dec = sae.W_dec_GM.detach(), sae.b_dec_M.detach()
    recon = torch.zeros_like(x_BM)
    dense = torch.zeros(x_BM.shape[0], 3 * E)
    for b in range(x_BM.shape[0]):
        centred = x_BM[b] - b_dec
        parent_pre = [float(centred @ W_enc[:, e] + b_enc[e]) for e in range(E)]
        chosen = sorted(range(E), key=lambda e: -parent_pre[e])[: sae.k]
        recon[b] = b_dec
        for e in chosen:
            parent_act = max(parent_pre[e], 0.0)
            recon[b] += parent_act * W_dec[e]
            dense[b, e] = parent_act
            if parent_act == 0.0:
                continue
            rows = [E + 2 * e, E + 2 * e + 1]
            child_pre = [float(centred @ W_enc[:, r] + b_enc[r]) for r in rows]
            winner = rows[0] if child_pre[0] >= child_pre[1] else rows[1]
            child_act = max(child_pre[0], child_pre[1], 0.0)
            recon[b] += child_act * W_dec[winner]
            dense[b, winner] = child_act
    return recon, dense


def test_forward_matches_per_sample_reference() -> None:
    sae = make_sae()
    x_BM = torch.randn(40, 8)
    recon_ref, dense_ref = reference_forward(sae, x_BM)
    torch.testing.assert_close(sae.reconstruct(x_BM), recon_ref)
    torch.testing.assert_close(sae.encode_dense(x_BM), dense_ref)


def test_children_fire_only_with_their_parent_and_never_both() -> None:
    sae = make_sae()
    dense_BG = sae.encode_dense(torch.randn(200, 8))
    parents_BE = dense_BG[:, :6]
    children_BE2 = dense_BG[:, 6:].unflatten(1, (6, 2))
    child_fired_BE = children_BE2.ne(0).any(dim=-1)
    assert not (child_fired_BE & parents_BE.eq(0)).any()
    assert children_BE2.ne(0).sum(dim=-1).max().item() <= 1


def test_dense_code_decodes_to_the_reconstruction() -> None:
    sae = make_sae()
    x_BM = torch.randn(30, 8)
    expected_BM = sae.encode_dense(x_BM) @ sae.decoder_directions() + sae.b_dec_M
    torch.testing.assert_close(sae.reconstruct(x_BM), expected_BM)


def test_composed_directions_are_parent_plus_child_rows() -> None:
    sae = make_sae()
    W = sae.W_dec_GM
    composed = sae.composed_directions()
    torch.testing.assert_close(composed[2 * 4 + 1], W[4] + W[6 + 2 * 4 + 1])


def test_gradients_reach_only_the_winning_child() -> None:
    sae = make_sae(num_parents=6, k=1)
    x_BM = torch.randn(1, 8)
    sae.loss(x_BM).total.backward()
    dense_G = sae.encode_dense(x_BM)[0]
    grad_G = sae.W_dec_GM.grad.norm(dim=-1)  # type: ignore[union-attr]
    assert torch.equal(grad_G > 0, dense_G != 0)


def test_k_larger_than_parent_count_is_refused() -> None:
    with pytest.raises(ValueError, match="k=7"):
        HierarchicalTopKSAE(HierarchicalShape(model_dim=8, num_parents=6, k=7), torch.Generator())


def test_children_get_no_gradient_until_the_parent_warmup_is_over() -> None:
    sae = make_sae(num_parents=6, k=1, warmup=2)
    x_BM = torch.randn(2, 8)
    sae.loss(x_BM).total.backward()
    child_grad_H = sae.W_dec_GM.grad[6:].norm(dim=-1)  # type: ignore[index]
    parent_grad_E = sae.W_dec_GM.grad[:6].norm(dim=-1)  # type: ignore[index]
    assert child_grad_H.eq(0).all()
    assert parent_grad_E.gt(0).any()
    sae.zero_grad()
    sae.loss(x_BM).total.backward()  # 2 samples seen: warm-up over
    assert sae.W_dec_GM.grad[6:].norm(dim=-1).gt(0).any()  # type: ignore[index]
    assert int(sae.state_dict()["samples_trained"]) == 4


def test_warmup_leaves_evaluation_with_children() -> None:
    sae = make_sae(warmup=10**9)
    x_BM = torch.randn(20, 8)
    recon_ref, _ = reference_forward(sae, x_BM)
    torch.testing.assert_close(sae.reconstruct(x_BM), recon_ref)


def train_and_score(sae: torch.nn.Module, source: PerturbedChildren) -> dict[str, float]:
    settings = TrainSettings(steps=300, batch_size=512, lr=3e-3, log_every=300)
    eval_x_BM, _ = source.sample(2048, torch.Generator().manual_seed(2))
    result = train(sae, source, settings, torch.Generator().manual_seed(3), eval_x_BM)  # pyright: ignore[reportArgumentType]
    return result.final.evaluation.scalars


def test_hierarchical_sae_splits_siblings_where_plain_topk_collapses() -> None:
    source = PerturbedChildren.random(8, 32, 0.4, 2, torch.Generator().manual_seed(0))
    topk = TopKSAE(TopKShape(32, 16, 2), torch.Generator().manual_seed(1))
    shape = HierarchicalShape(32, 8, 2, child_warmup_samples=100 * 512)
    hierarchical = HierarchicalTopKSAE(shape, torch.Generator().manual_seed(1))
    topk_scores = train_and_score(topk, source)
    hierarchical_scores = train_and_score(hierarchical, source)
    assert hierarchical_scores["pair_detection_rate"] >= 0.6
    assert hierarchical_scores["sibling_split_rate"] >= topk_scores["sibling_split_rate"] + 0.3
    assert hierarchical_scores["mcc"] > topk_scores["mcc"]

"""BatchTopK, top-k, Matryoshka BatchTopK and JumpReLU: codes and losses against slow references;
the export of these and of the L1 and Matryoshka SAEs to sae-lens's format, read back by
``SAE.load_from_disk``."""

from pathlib import Path
from typing import TypeVar

import pytest
import torch

from sae_hacking.toy.saes.batchtopk import (
    CANDIDATE_FLOOR,
    BatchTopKSAE,
    BatchTopKShape,
    batch_top_k,
)
from sae_hacking.toy.saes.export import export_sae
from sae_hacking.toy.saes.jumprelu import JumpReLUSAE, JumpReLUShape
from sae_hacking.toy.saes.matryoshka import MatryoshkaSAE, MatryoshkaShape

M, E, B = 12, 40, 16


AnySAE = TypeVar("AnySAE", bound=BatchTopKSAE | JumpReLUSAE | MatryoshkaSAE)


def trained(sae: AnySAE, x_BM: torch.Tensor, steps: int = 40) -> AnySAE:
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = sae.loss(x_BM).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if isinstance(sae, JumpReLUSAE):
            sae.after_step()
    return sae


def slow_scaled_preactivations(sae: BatchTopKSAE, x_BM: torch.Tensor) -> torch.Tensor:
    pre_BE = torch.zeros(x_BM.shape[0], sae.width)
    for b in range(x_BM.shape[0]):
        for e in range(sae.width):
            dot = float(torch.dot(x_BM[b] - sae.b_dec_M, sae.W_enc_ME[:, e]))
            pre_BE[b, e] = (dot + float(sae.b_enc_E[e])) * float(sae.W_dec_EM[e].norm())
    return pre_BE


@torch.no_grad()
def test_batch_top_k_keeps_the_k_times_batch_largest_values_over_the_batch() -> None:
    sae = BatchTopKSAE(BatchTopKShape(M, E, 3.5), torch.Generator().manual_seed(0))
    x_BM = torch.randn(B, M)
    pre_BE = slow_scaled_preactivations(sae, x_BM)
    entries = sorted(
        ((float(pre_BE[b, e]), b, e) for b in range(B) for e in range(E)), reverse=True
    )
    expected_BE = torch.zeros(B, E)
    for value, b, e in entries[: int(3.5 * B)]:
        expected_BE[b, e] = max(value, 0.0)
    torch.testing.assert_close(sae.encode_dense(x_BM), expected_BE, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("floor", [0.0, 0.5, 3.0, 100.0])
def test_batch_top_k_from_candidates_above_a_floor_equals_a_full_top_k(floor: float) -> None:
    """Floors keeping many, barely enough and too few candidates (then the full scan runs)."""
    flat_D = torch.randn(64 * 40)
    k = 3 * 64
    vals_K, idx_K = batch_top_k(flat_D, k, torch.tensor(floor / CANDIDATE_FLOOR))
    expected_K, _ = flat_D.relu().topk(k)
    torch.testing.assert_close(vals_K.sort(descending=True).values, expected_K)
    torch.testing.assert_close(flat_D[idx_K].relu(), vals_K)
    assert len(set(idx_K.tolist())) == k


@torch.no_grad()
def test_top_k_keeps_the_k_largest_of_each_sample() -> None:
    sae = BatchTopKSAE(
        BatchTopKShape(M, E, 4, selection="sample"), torch.Generator().manual_seed(0)
    )
    x_BM = torch.randn(B, M)
    pre_BE = slow_scaled_preactivations(sae, x_BM)
    expected_BE = torch.zeros(B, E)
    for b in range(B):
        for e in sorted(range(E), key=lambda e: -float(pre_BE[b, e]))[:4]:
            expected_BE[b, e] = max(float(pre_BE[b, e]), 0.0)
    torch.testing.assert_close(sae.encode_dense(x_BM), expected_BE, atol=1e-4, rtol=1e-4)


def test_batch_top_k_outside_training_is_a_jump_relu_at_the_learned_threshold() -> None:
    x_BM = torch.randn(64, M)
    sae = trained(BatchTopKSAE(BatchTopKShape(M, E, 3.0), torch.Generator().manual_seed(1)), x_BM)
    threshold = float(sae.threshold)
    assert threshold > 0
    sae.eval()
    with torch.no_grad():
        pre_BE = slow_scaled_preactivations(sae, x_BM[:8])
        expected_BE = torch.where(pre_BE > threshold, pre_BE, torch.zeros_like(pre_BE))
        torch.testing.assert_close(sae.encode_dense(x_BM[:8]), expected_BE, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_matryoshka_loss_adds_each_inner_prefix_reconstruction() -> None:
    shape = BatchTopKShape(M, E, 3.0, matryoshka_widths=(5, 20, E), aux_coefficient=0.0)
    sae = BatchTopKSAE(shape, torch.Generator().manual_seed(2))
    x_BM = torch.randn(B, M)
    acts_BE = sae.encode_dense(x_BM)
    expected = 0.0
    for stop in (5, 20, E):
        recon_BM = sae.b_dec_M.expand(B, M).clone()
        for e in range(stop):
            recon_BM += acts_BE[:, e : e + 1] * sae.W_dec_EM[e] / sae.W_dec_EM[e].norm()
        expected += float(((recon_BM - x_BM) ** 2).sum(1).mean())
    assert float(sae.loss(x_BM).total) == pytest.approx(expected, rel=1e-4)


def test_jump_relu_passes_values_above_each_threshold_and_reaches_its_target_l0() -> None:
    x_BM = torch.randn(256, M)
    shape = JumpReLUShape(M, E, target_l0=4.0, init_threshold=0.05)
    sae = trained(JumpReLUSAE(shape, torch.Generator().manual_seed(3)), x_BM, steps=300)
    with torch.no_grad():
        pre_BE = (x_BM - sae.b_dec_M) @ sae.W_enc_ME + sae.b_enc_E
        expected_BE = torch.zeros_like(pre_BE)
        for e in range(E):
            above = pre_BE[:, e] > sae.threshold_E[e]
            expected_BE[above, e] = pre_BE[above, e]
        torch.testing.assert_close(sae.encode_dense(x_BM), expected_BE)
        l0 = float((sae.encode_dense(x_BM) != 0).sum(1).float().mean())
    assert 2.0 < l0 < 8.0
    assert bool((sae.threshold_E >= 0).all())


@pytest.mark.parametrize(
    "shape",
    [
        BatchTopKShape(M, E, 3.0),
        BatchTopKShape(M, E, 3, selection="sample"),
        BatchTopKShape(M, E, 3.0, matryoshka_widths=(8, E)),
        JumpReLUShape(M, E, target_l0=3.0),
        MatryoshkaShape(M, E, (E,), (1.0,), sparsity="l1", l1_coefficient=0.1),
        MatryoshkaShape(M, E, (8, E), (1.0, 1.0), k=3),
    ],
    ids=["batchtopk", "topk", "matryoshka", "jumprelu", "l1", "matryoshka-topk"],
)
def test_export_round_trips_through_sae_lens_load_from_disk(shape, tmp_path: Path) -> None:
    from sae_lens import SAE

    x_BM = torch.randn(128, M)
    generator = torch.Generator().manual_seed(4)
    if isinstance(shape, BatchTopKShape):
        built = BatchTopKSAE(shape, generator)
    elif isinstance(shape, JumpReLUShape):
        built = JumpReLUSAE(shape, generator)
    else:
        built = MatryoshkaSAE(shape, generator)
    sae = trained(built, x_BM)
    sae.eval()
    export_sae(sae, tmp_path / "sae")
    loaded = SAE.load_from_disk(tmp_path / "sae")
    with torch.no_grad():
        acts_BE = sae.encode_dense(x_BM)
        torch.testing.assert_close(loaded.encode(x_BM), acts_BE, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            loaded.decode(loaded.encode(x_BM)),
            sae.reconstruct(x_BM),
            atol=1e-5,
            rtol=1e-5,
        )
    assert int((acts_BE != 0).sum()) > 0

"""BatchTopK, top-k, Matryoshka BatchTopK and JumpReLU: codes and losses against slow references;
the export of these and of the L1 and Matryoshka SAEs to sae-lens's format, read back by
``SAE.load_from_disk``."""

import copy
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


def scrambled(shape: BatchTopKShape, seed: int) -> BatchTopKSAE:
    """An SAE away from its tied start: biases set, decoder norms spread, a threshold learned."""
    generator = torch.Generator().manual_seed(seed)
    sae = BatchTopKSAE(shape, generator)
    with torch.no_grad():
        sae.b_dec_M.normal_(generator=generator)
        sae.b_enc_E.normal_(std=0.3, generator=generator)
        sae.W_enc_ME.add_(0.05 * torch.randn(M, E, generator=generator))
        sae.W_dec_EM.mul_(0.5 + 3 * torch.rand(E, 1, generator=generator))
        sae.threshold.fill_(0.5)
    return sae


@pytest.mark.parametrize(
    ("shape", "threshold"),
    [
        (BatchTopKShape(M, E, 3.5), 0.5),
        (BatchTopKShape(M, E, 3.5), 0.0),
        (BatchTopKShape(M, E, 3, selection="sample"), 0.0),
        (BatchTopKShape(M, E, 3.0, matryoshka_widths=(5, 20, E)), 0.5),
    ],
    ids=["batchtopk-candidates", "batchtopk-full-scan", "topk", "matryoshka"],
)
def test_sparse_loss_equals_autograd_through_the_dense_loss(
    shape: BatchTopKShape, threshold: float
) -> None:
    """Loss parts, every gradient, the threshold and the idle counters, on random weights."""
    fast = scrambled(shape, 5)
    with torch.no_grad():
        fast.threshold.fill_(threshold)
    slow = copy.deepcopy(fast)
    x_BM = 2 * torch.randn(B, M)
    fast_loss = fast.sparse_loss(x_BM)
    slow_loss = slow.dense_loss(x_BM)
    assert fast_loss.parts.keys() == slow_loss.parts.keys()
    for name, part in fast_loss.parts.items():
        torch.testing.assert_close(part, slow_loss.parts[name])
    fast_loss.total.backward()
    slow_loss.total.backward()
    for (name, param), reference in zip(fast.named_parameters(), slow.parameters(), strict=True):
        assert param.grad is not None and reference.grad is not None
        assert reference.grad.abs().max() > 0, name
        torch.testing.assert_close(param.grad, reference.grad, atol=1e-5, rtol=1e-4)
        assert param.grad.stride() == param.stride(), name
    torch.testing.assert_close(fast.threshold, slow.threshold)
    assert torch.equal(fast.steps_since_fired_E, slow.steps_since_fired_E)


def test_cpu_loss_takes_the_sparse_path_until_a_latent_is_dead() -> None:
    sae = scrambled(BatchTopKShape(M, E, 3.5, dead_after_steps=2), 6)
    x_BM = torch.randn(B, M)
    assert "auxk" not in sae.loss(x_BM).parts
    sae.steps_since_fired_E[0] = 3
    assert "auxk" in sae.loss(x_BM).parts


@pytest.mark.parametrize("matryoshka", [False, True])
def test_batch_top_k_loss_and_gradients_equal_sae_lens_training_sae(matryoshka: bool) -> None:
    """The same weights in sae-lens's training SAE: its loss, gradients and threshold update."""
    from sae_lens import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import TrainStepInput

    widths = (5, 20, E) if matryoshka else ()
    ours = scrambled(BatchTopKShape(M, E, 3.5, matryoshka_widths=widths), 7)
    if matryoshka:
        lens = MatryoshkaBatchTopKTrainingSAE(
            MatryoshkaBatchTopKTrainingSAEConfig(
                d_in=M, d_sae=E, k=3.5, matryoshka_widths=[5, 20, E]
            )
        )
    else:
        lens = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=M, d_sae=E, k=3.5))
    with torch.no_grad():
        lens.W_enc.copy_(ours.W_enc_ME)
        lens.b_enc.copy_(ours.b_enc_E)
        lens.W_dec.copy_(ours.W_dec_EM)
        lens.b_dec.copy_(ours.b_dec_M)
        lens.topk_threshold.copy_(ours.threshold)
    x_BM = 2 * torch.randn(B, M)
    step = TrainStepInput(x_BM, {}, None, 0, False)
    out = lens.training_forward_pass(step)
    loss = ours.loss(x_BM)
    torch.testing.assert_close(loss.total, out.loss)
    loss.total.backward()
    out.loss.backward()
    pairs = [
        (ours.W_enc_ME, lens.W_enc),
        (ours.b_enc_E, lens.b_enc),
        (ours.W_dec_EM, lens.W_dec),
        (ours.b_dec_M, lens.b_dec),
    ]
    for mine, theirs in pairs:
        assert mine.grad is not None and theirs.grad is not None
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.threshold, lens.topk_threshold)

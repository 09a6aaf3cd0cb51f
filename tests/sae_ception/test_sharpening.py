"""Sharpened targets against slow, obvious references on small tensors."""

import pytest
import torch

from sae_hacking.saeception.sharpening import (
    class_latent_mask,
    per_class_codes,
    per_example_codes,
    random_unit_targets,
    sharpened_targets,
)


def sparse_codes(rows: int, width: int, generator: torch.Generator) -> torch.Tensor:
    values = torch.rand(rows, width, generator=generator)
    return values * (torch.rand(rows, width, generator=generator) < 0.4)


def slow_per_class_targets(codes, labels, W_dec, b_dec, classes, keep):
    targets = []
    latents_of = {}
    for c in range(classes):
        rows = [codes[b] for b in range(len(labels)) if labels[b] == c]
        means = [sum(float(r[e]) for r in rows) / max(len(rows), 1) for e in range(codes.shape[1])]
        latents_of[c] = sorted(range(codes.shape[1]), key=lambda e: -means[e])[:keep]
    for b in range(len(labels)):
        target = b_dec.clone()
        for e in latents_of[int(labels[b])]:
            target = target + codes[b, e] * W_dec[e]
        targets.append(target)
    return torch.stack(targets)


def slow_per_example_targets(codes, W_dec, b_dec, keep):
    targets = []
    for row in codes:
        target = b_dec.clone()
        for e in sorted(range(len(row)), key=lambda e: -float(row[e]))[:keep]:
            target = target + row[e] * W_dec[e]
        targets.append(target)
    return torch.stack(targets)


@pytest.mark.parametrize("keep", [1, 2, 5])
def test_per_class_targets_match_the_slow_reference(keep: int) -> None:
    g = torch.Generator().manual_seed(keep)
    codes_BE = sparse_codes(30, 8, g)
    labels_B = torch.randint(0, 3, (30,), generator=g)
    W_dec_EM, b_dec_M = torch.randn(8, 5, generator=g), torch.randn(5, generator=g)
    fast = sharpened_targets("per-class", codes_BE, labels_B, W_dec_EM, b_dec_M, 3, keep, g)
    slow = slow_per_class_targets(codes_BE, labels_B, W_dec_EM, b_dec_M, 3, keep)
    assert fast is not None
    torch.testing.assert_close(fast, slow)


@pytest.mark.parametrize("keep", [1, 3, 8])
def test_per_example_targets_match_the_slow_reference(keep: int) -> None:
    g = torch.Generator().manual_seed(10 + keep)
    codes_BE = sparse_codes(20, 8, g)
    W_dec_EM, b_dec_M = torch.randn(8, 4, generator=g), torch.randn(4, generator=g)
    labels_B = torch.zeros(20, dtype=torch.long)
    fast = sharpened_targets("per-example", codes_BE, labels_B, W_dec_EM, b_dec_M, 1, keep, g)
    slow = slow_per_example_targets(codes_BE, W_dec_EM, b_dec_M, keep)
    assert fast is not None
    torch.testing.assert_close(fast, slow)


def test_per_class_keeps_only_each_class_s_own_latents() -> None:
    codes_BE = torch.tensor([[3.0, 1.0, 0.0, 2.0], [0.0, 1.0, 4.0, 2.0]])
    labels_B = torch.tensor([0, 1])
    mask_LE = class_latent_mask(codes_BE, labels_B, 2, 1)
    assert mask_LE.tolist() == [[True, False, False, False], [False, False, True, False]]
    kept = per_class_codes(codes_BE, labels_B, mask_LE)
    assert kept.tolist() == [[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 4.0, 0.0]]
    assert per_example_codes(codes_BE, 2).tolist() == [[3.0, 0.0, 0.0, 2.0], [0.0, 0.0, 4.0, 2.0]]


def test_random_targets_are_unit_seeded_and_ignore_the_codes() -> None:
    first = random_unit_targets(50, 6, torch.Generator().manual_seed(3))
    again = random_unit_targets(50, 6, torch.Generator().manual_seed(3))
    torch.testing.assert_close(first.norm(dim=1), torch.ones(50))
    assert torch.equal(first, again)
    # Different examples point different ways: the mean direction is near zero.
    assert first.mean(dim=0).norm() < 0.5


def test_none_has_no_target_and_unknown_strategies_are_refused() -> None:
    codes_BE, labels_B = torch.ones(2, 3), torch.zeros(2, dtype=torch.long)
    W_dec_EM, b_dec_M, g = torch.ones(3, 2), torch.zeros(2), torch.Generator()
    assert sharpened_targets("none", codes_BE, labels_B, W_dec_EM, b_dec_M, 1, 1, g) is None
    with pytest.raises(ValueError, match="unknown strategy"):
        sharpened_targets("sharpest", codes_BE, labels_B, W_dec_EM, b_dec_M, 1, 1, g)

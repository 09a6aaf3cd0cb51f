import itertools

import pytest
import torch

from sae_hacking.core.matching import hungarian_assignment, hungarian_mcc, mean_max_cosine
from sae_hacking.core.similarity import cosine_matrix


def reference_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.empty(a.shape[0], b.shape[0])
    for i, j in itertools.product(range(a.shape[0]), range(b.shape[0])):
        out[i, j] = torch.dot(a[i], b[j]) / (a[i].norm() * b[j].norm())
    return out


def test_cosine_matrix_matches_reference() -> None:
    a, b = torch.randn(5, 8), torch.randn(7, 8)
    torch.testing.assert_close(cosine_matrix(a, b), reference_cosine(a, b))


def test_hungarian_matches_brute_force_on_small_problems() -> None:
    for _ in range(20):
        cos_NE = torch.rand(4, 5) * 2 - 1
        best = max(
            sum(abs(cos_NE[n, e].item()) for n, e in enumerate(perm))
            for perm in itertools.permutations(range(5), 4)
        )
        assert hungarian_mcc(cos_NE) == pytest.approx(best / 4)


def test_mmcs_can_be_high_where_one_to_one_matching_is_low() -> None:
    # Two features at cosine 0.9 share one latent: MMCS sees nothing wrong, MCC does.
    cos_NE = torch.tensor([[1.0, 0.0], [0.9, 0.0]])
    assert mean_max_cosine(cos_NE) == pytest.approx(0.95)
    assert hungarian_mcc(cos_NE) == pytest.approx(0.5)


def test_assignment_is_one_to_one_and_counts_missing_latents_as_zero() -> None:
    cos_NE = torch.eye(3)[:, :2]
    assignment = hungarian_assignment(cos_NE)
    assert len(set(assignment.latent_idx_D.tolist())) == 2
    assert hungarian_mcc(cos_NE) == pytest.approx(2 / 3)

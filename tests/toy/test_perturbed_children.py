import math
from collections import Counter

import pytest
import torch

from sae_hacking.toy.data.perturbed_children import PerturbedChildren, distinct_draws


def make_source(k: int = 3, parents: int = 12, model_dim: int = 20) -> PerturbedChildren:
    return PerturbedChildren.random(parents, model_dim, 0.4, k, torch.Generator().manual_seed(1))


def test_parents_are_unit_and_perturbations_have_the_given_norm() -> None:
    source = make_source()
    torch.testing.assert_close(source.parents_AM.norm(dim=-1), torch.ones(12))
    torch.testing.assert_close(source.perturbations_A2M.norm(dim=-1), torch.full((12, 2), 0.4))


def test_features_are_parent_plus_perturbation_with_siblings_adjacent() -> None:
    source = make_source()
    for a in range(12):
        for c in range(2):
            expected = source.parents_AM[a] + source.perturbations_A2M[a, c]
            torch.testing.assert_close(source.features_NM[2 * a + c], expected)
    assert source.siblings.parent_of_N.tolist() == [a for a in range(12) for _ in range(2)]


@pytest.mark.parametrize("k", [1, 3, 12])
def test_every_sample_has_exactly_k_distinct_parents_and_one_child_each(k: int) -> None:
    source = make_source(k=k)
    _, magnitudes_BN = source.sample(500, torch.Generator().manual_seed(2))
    assert torch.equal(magnitudes_BN.sum(dim=1), torch.full((500,), float(k)))
    per_parent_BA = magnitudes_BN.unflatten(1, (12, 2)).sum(dim=-1)
    assert per_parent_BA.max().item() == 1.0


def test_activations_are_the_sum_of_the_active_children() -> None:
    source = make_source()
    x_BM, magnitudes_BN = source.sample(64, torch.Generator().manual_seed(3))
    for b in range(64):
        expected_M = sum(
            (source.features_NM[n] for n in range(24) if magnitudes_BN[b, n] == 1),
            torch.zeros(20),
        )
        torch.testing.assert_close(x_BM[b], expected_M)


def test_parents_and_children_are_drawn_uniformly() -> None:
    source = make_source(k=2)
    _, magnitudes_BN = source.sample(60_000, torch.Generator().manual_seed(4))
    rate_N = magnitudes_BN.mean(dim=0)
    # Each child fires with probability k / A / 2 = 1/12; 60k draws put it within ~0.005.
    torch.testing.assert_close(rate_N, torch.full((24,), 1 / 12), atol=0.006, rtol=0)


def test_same_seed_gives_same_batches() -> None:
    source = make_source()
    first, _ = source.sample(32, torch.Generator().manual_seed(5))
    second, _ = source.sample(32, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)


def test_dataset_k_outside_range_is_refused() -> None:
    with pytest.raises(ValueError, match="dataset_k"):
        make_source(k=13)


@pytest.mark.parametrize(("population", "k"), [(5, 2), (4, 4), (6, 3)])
def test_distinct_draws_are_uniform_over_subsets(population: int, k: int) -> None:
    draws_BK = distinct_draws(40_000, population, k, torch.Generator().manual_seed(6))
    assert all(len(set(row)) == k for row in draws_BK.tolist()[:2000])
    assert draws_BK.min().item() >= 0 and draws_BK.max().item() < population
    subsets = Counter(tuple(sorted(row)) for row in draws_BK.tolist())
    expected = 40_000 / math.comb(population, k)
    assert len(subsets) == math.comb(population, k)
    assert max(abs(count - expected) for count in subsets.values()) < 5 * expected**0.5


def test_large_k_takes_the_top_k_path_with_the_same_guarantees() -> None:
    source = PerturbedChildren.random(12, 8, 0.4, 10, torch.Generator().manual_seed(1))
    _, magnitudes_BN = source.sample(300, torch.Generator().manual_seed(2))
    per_parent_BA = magnitudes_BN.unflatten(1, (12, 2)).sum(dim=-1)
    assert torch.equal(per_parent_BA.sum(dim=1), torch.full((300,), 10.0))
    assert per_parent_BA.max().item() == 1.0

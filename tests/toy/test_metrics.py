import math

import pytest
import torch

from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.metrics.activity import (
    dead_latent_count,
    fraction_variance_unexplained,
    mean_l0,
)
from sae_hacking.toy.metrics.evaluation import evaluate
from sae_hacking.toy.metrics.recovery import recovery
from sae_hacking.toy.metrics.siblings import (
    child_specificity_rate,
    pair_detection_rate,
    sibling_split_rate,
)
from sae_hacking.toy.protocol import SiblingStructure
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape


@pytest.fixture
def source() -> PerturbedChildren:
    return PerturbedChildren.random(10, 40, 0.4, 2, torch.Generator().manual_seed(0))


def test_true_features_score_one_on_every_recovery_metric(source: PerturbedChildren) -> None:
    shuffled = source.features_NM[torch.randperm(20)]
    found = recovery(shuffled, source.features_NM)
    assert found.mmcs == pytest.approx(1.0)
    assert found.mcc == pytest.approx(1.0)
    torch.testing.assert_close(shuffled[found.matched_latent_N], source.features_NM)
    assert sibling_split_rate(found.best_latent_N, source.siblings.parent_of_N) == 1.0
    rate = child_specificity_rate(
        shuffled, found.best_latent_N, source.features_NM, source.siblings
    )
    assert rate == 1.0


def test_parent_directions_fool_mmcs_but_not_mcc_or_sibling_metrics(
    source: PerturbedChildren,
) -> None:
    # A collapsed SAE: one latent per parent. Each child sits at cosine ~0.93 to its parent.
    found = recovery(source.parents_AM, source.features_NM)
    assert found.mmcs > 0.85
    assert found.mcc < 0.5 + 1e-6  # half the children have no latent left
    assert sibling_split_rate(found.best_latent_N, source.siblings.parent_of_N) == 0.0
    rate = child_specificity_rate(
        source.parents_AM, found.best_latent_N, source.features_NM, source.siblings
    )
    assert rate == 0.0


def test_pair_detection_is_one_for_true_pairs_and_zero_for_unrelated_pairs(
    source: PerturbedChildren,
) -> None:
    parent_of_N = source.siblings.parent_of_N
    assert pair_detection_rate(source.features_NM, source.features_NM, parent_of_N) == 1.0
    crossed = source.features_NM.view(10, 2, 40).roll(1, dims=0).flatten(0, 1)
    interleaved = torch.stack([source.features_NM[0::2], crossed[1::2]], dim=1).flatten(0, 1)
    assert pair_detection_rate(interleaved, source.features_NM, parent_of_N) == 0.0


def test_activity_metrics_on_a_known_code() -> None:
    dense_BE = torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    assert mean_l0(dense_BE) == 1.5
    assert dead_latent_count(dense_BE) == 2
    x_BM = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert fraction_variance_unexplained(x_BM, x_BM) == 0.0
    assert fraction_variance_unexplained(x_BM, torch.zeros(2, 2)) == pytest.approx(1.0)


def test_a_hierarchical_sae_at_the_truth_scores_perfectly(source: PerturbedChildren) -> None:
    sae = HierarchicalTopKSAE(HierarchicalShape(40, 10, 2), torch.Generator().manual_seed(0))
    sae.load_hierarchy(source.parents_AM, source.perturbations_A2M)
    x_BM, _ = source.sample(512, torch.Generator().manual_seed(1))
    scalars = evaluate(sae, source, x_BM).scalars
    assert scalars["mcc"] == pytest.approx(1.0)
    assert scalars["pair_detection_rate"] == 1.0
    assert scalars["sibling_split_rate"] == 1.0
    # Two parents per sample, each with one child unless interference pushes the child below 0.
    assert 3.5 < scalars["l0"] <= 4.0


def test_evaluation_of_a_plain_topk_sae_has_no_pair_detection(source: PerturbedChildren) -> None:
    sae = TopKSAE(TopKShape(40, 20, 2), torch.Generator().manual_seed(0))
    x_BM, _ = source.sample(256, torch.Generator().manual_seed(1))
    scalars = evaluate(sae, source, x_BM).scalars
    assert "pair_detection_rate" not in scalars
    assert all(math.isfinite(value) for value in scalars.values())
    assert scalars["l0"] <= 2.0


def original_pair_successes(cos_HN: torch.Tensor) -> list[bool]:
    """The original toolkit's rule, latent by latent: the two children's nearest features are
    adjacent and the lower one is even (siblings are features 2a and 2a + 1)."""
    successes = []
    for latent in range(cos_HN.shape[0] // 2):
        first = int(cos_HN[2 * latent].argmax())
        second = int(cos_HN[2 * latent + 1].argmax())
        successes.append(
            first != second and abs(first - second) == 1 and min(first, second) % 2 == 0
        )
    return successes


def test_pair_detection_matches_the_original_rule_on_random_directions(
    source: PerturbedChildren,
) -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(20):
        # Mix true features with noise so that every outcome of the rule occurs.
        mix_HN = torch.rand(12, 20, generator=generator).pow(8)
        composed_HM = mix_HN @ source.features_NM + 0.1 * torch.randn(12, 40, generator=generator)
        cos_HN = torch.nn.functional.cosine_similarity(
            composed_HM[:, None], source.features_NM[None], dim=-1
        )
        expected = original_pair_successes(cos_HN)
        rate = pair_detection_rate(composed_HM, source.features_NM, source.siblings.parent_of_N)
        assert rate == pytest.approx(sum(expected) / len(expected))


def test_a_collapsed_hierarchical_sae_detects_no_pairs(source: PerturbedChildren) -> None:
    # Parents at the truth, children that add nothing: both children of a latent are its parent.
    sae = HierarchicalTopKSAE(HierarchicalShape(40, 10, 2), torch.Generator().manual_seed(0))
    sae.load_hierarchy(source.parents_AM, torch.zeros(10, 2, 40))
    x_BM, _ = source.sample(512, torch.Generator().manual_seed(1))
    scalars = evaluate(sae, source, x_BM).scalars
    assert scalars["pair_detection_rate"] == 0.0
    assert scalars["sibling_split_rate"] == 0.0


def test_parentless_features_are_nobodys_siblings_or_children() -> None:
    # Features 0 and 3 are roots (-1); 1, 2 are children of parent row 0, 4, 5 of parent row 1.
    features_NM = torch.eye(6)
    siblings = SiblingStructure(
        parents_AM=features_NM[[0, 3]], parent_of_N=torch.tensor([-1, 0, 0, -1, 1, 1])
    )
    # Both roots share latent 0, which must not count as an unsplit sibling group.
    best_latent_N = torch.tensor([0, 1, 2, 0, 4, 4])
    assert sibling_split_rate(best_latent_N, siblings.parent_of_N) == 0.5
    # Children 1, 2 and 4 get their own direction; child 5 gets its parent's.
    directions_DM = torch.eye(6)
    best_latent_N = torch.tensor([0, 1, 2, 3, 4, 3])
    rate = child_specificity_rate(directions_DM, best_latent_N, features_NM, siblings)
    assert rate == 0.75

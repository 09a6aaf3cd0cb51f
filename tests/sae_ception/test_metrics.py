"""Class selectivity and the uncertainty coefficient on hand-built codes and against references."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import mutual_info_score

from sae_hacking.saeception.metrics import (
    class_selectivity,
    clustering_scores,
    nan_mean,
    uncertainty_coefficient,
)

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 2])


def test_a_latent_firing_on_exactly_one_class_scores_one() -> None:
    one_hot_E = (LABELS == 2).float() * torch.tensor([1.0, 2, 3, 4, 5, 6, 7])
    codes_BE = one_hot_E.unsqueeze(1)
    assert class_selectivity(codes_BE, LABELS, 3).tolist() == [1.0]
    assert uncertainty_coefficient(codes_BE, LABELS, 3).item() == pytest.approx(1.0)


def test_a_latent_blind_to_the_class_scores_zero_and_a_dead_one_is_undefined() -> None:
    labels_B = torch.tensor([0, 0, 1, 1])
    codes_BE = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    csi_E = class_selectivity(codes_BE, labels_B, 2)
    u_E = uncertainty_coefficient(codes_BE, labels_B, 2)
    assert csi_E[0].item() == pytest.approx(0.0) and math.isnan(csi_E[1].item())
    assert u_E[0].item() == pytest.approx(0.0) and math.isnan(u_E[1].item())
    assert nan_mean(csi_E) == pytest.approx(0.0)


def test_a_latent_firing_on_two_whole_classes_has_u_one_and_csi_below_one() -> None:
    codes_BE = (LABELS <= 1).float().unsqueeze(1)
    assert uncertainty_coefficient(codes_BE, LABELS, 3).item() == pytest.approx(1.0)
    # mu_max = 1 (class 0), mu_other = 2/5 (class 1's two of the five others)
    assert class_selectivity(codes_BE, LABELS, 3).item() == pytest.approx((1 - 0.4) / (1 + 0.4))


def slow_csi(codes: np.ndarray, labels: np.ndarray, classes: int) -> list[float]:
    out = []
    for e in range(codes.shape[1]):
        means = [
            codes[labels == c, e].mean() if (labels == c).any() else 0.0 for c in range(classes)
        ]
        top = int(np.argmax(means))
        other = codes[labels != top, e].mean()
        out.append(
            (means[top] - other) / (means[top] + other) if means[top] + other > 0 else math.nan
        )
    return out


def test_csi_and_u_match_references_on_random_codes() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    codes = rng.random((200, 12)) * (rng.random((200, 12)) < (0.2 + 0.15 * labels[:, None] / 3))
    codes[:, 3] = 0.0  # a dead latent
    codes_BE = torch.from_numpy(codes).float()
    labels_B = torch.from_numpy(labels)
    np.testing.assert_allclose(
        class_selectivity(codes_BE, labels_B, 4).numpy(), slow_csi(codes, labels, 4), rtol=1e-5
    )
    u = uncertainty_coefficient(codes_BE, labels_B, 4).numpy()
    for e in range(12):
        fires = (codes[:, e] > 0).astype(int)
        p = fires.mean()
        if p in (0.0, 1.0):
            assert math.isnan(u[e])
            continue
        # scikit-learn's mutual information is in nats, as is the firing entropy here.
        h_x = -(p * math.log(p) + (1 - p) * math.log(1 - p))
        assert u[e] == pytest.approx(mutual_info_score(fires, labels) / h_x, rel=1e-5)


def test_clustering_scores_see_well_separated_classes() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 30)
    rows = np.eye(3)[labels] * 10 + rng.normal(0, 0.1, (90, 3))
    scores = clustering_scores(rows, labels, 3, seed=0)
    assert scores["ari"] == pytest.approx(1.0)
    assert scores["silhouette"] > 0.9

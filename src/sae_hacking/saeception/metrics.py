"""How class-like an SAE's codes are: per-latent selectivity, probes and clustering.

Logs are natural (nats) throughout. The uncertainty coefficient is a ratio of two of them, so it
does not depend on the base as long as both share one; the original mixed scikit-learn's nats
(mutual information) with bits (label entropy), which scales every value by ln 2.
"""

import math

import numpy as np
import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.saeception.sharpening import class_mean_codes


@jaxtyped(typechecker=beartype)
def class_selectivity(
    codes_BE: Float[Tensor, "B E"], labels_B: Int[Tensor, " B"], classes: int
) -> Float[Tensor, " E"]:
    """Class selectivity index of each latent, (mu_max - mu_other) / (mu_max + mu_other).

    ``mu_max`` is the latent's mean over its most activating class and ``mu_other`` its mean over
    every other example. Codes are non-negative, so the index lies in [0, 1]: 1 for a latent that
    fires only on one class. NaN for a latent silent on every example.
    """
    means_LE = class_mean_codes(codes_BE, labels_B, classes)
    mu_max_E, top_class_E = means_LE.max(dim=0)
    total_E = codes_BE.sum(dim=0)
    count_L = torch.bincount(labels_B, minlength=classes).to(codes_BE.dtype)
    in_top_E = mu_max_E * count_L[top_class_E]
    others_E = (labels_B.shape[0] - count_L[top_class_E]).clamp_min(1)
    mu_other_E = (total_E - in_top_E).clamp_min(0) / others_E
    denominator_E = mu_max_E + mu_other_E
    csi_E = (mu_max_E - mu_other_E) / denominator_E.clamp_min(1e-12)
    return torch.where(denominator_E > 0, csi_E, torch.full_like(csi_E, math.nan))


def _entropy(p_D: Tensor) -> Tensor:
    """Entropy in nats of each distribution along the last dimension (0 log 0 = 0)."""
    return -(torch.xlogy(p_D, p_D)).sum(dim=-1)


@jaxtyped(typechecker=beartype)
def uncertainty_coefficient(
    codes_BE: Float[Tensor, "B E"], labels_B: Int[Tensor, " B"], classes: int
) -> Float[Tensor, " E"]:
    """Theil's U(X|Y) = I(X; Y) / H(X) of each latent's firing X (code > 0) given the class Y.

    The share of a latent's firing entropy the class explains: 1 when the latent fires exactly on
    the examples of some set of classes, 0 when firing is independent of the class. Normalising
    by H(Y) instead (as the original did) caps a perfect detector of one of ten equally common
    classes at H(0.1)/ln 10 = 0.14. NaN for a latent that fires on no example or on every one.
    """
    fires_BE = (codes_BE > 0).to(torch.float64)
    onehot_BL = torch.nn.functional.one_hot(labels_B, classes).to(torch.float64)
    n = labels_B.shape[0]
    joint_fire_LE = onehot_BL.T @ fires_BE / n
    p_class_L = onehot_BL.mean(dim=0)
    joint_LE2 = torch.stack([p_class_L.unsqueeze(1) - joint_fire_LE, joint_fire_LE], dim=-1)
    p_fire_E = fires_BE.mean(dim=0)
    marginal_E2 = torch.stack([1 - p_fire_E, p_fire_E], dim=-1)
    h_x_E = _entropy(marginal_E2)
    h_y = _entropy(p_class_L)
    h_xy_E = _entropy(joint_LE2.permute(1, 0, 2).reshape(codes_BE.shape[1], -1).clamp_min(0))
    mutual_E = h_x_E + h_y - h_xy_E
    u_E = (mutual_E / h_x_E.clamp_min(1e-300)).clamp(0, 1)
    undefined_E = h_x_E <= 1e-12
    return torch.where(undefined_E, torch.full_like(u_E, math.nan), u_E).to(codes_BE.dtype)


def nan_mean(values_E: Tensor) -> float:
    """Mean over the defined (non-NaN) entries; NaN when none is."""
    defined = values_E[~values_E.isnan()]
    return defined.mean().item() if defined.numel() else math.nan


def probe_accuracy(
    train_BD: np.ndarray,
    train_labels: np.ndarray,
    test_BD: np.ndarray,
    test_labels: np.ndarray,
    seed: int,
    max_rows: int = 20_000,
) -> float:
    """Held-out accuracy of a multinomial logistic probe fit on (at most ``max_rows``) training rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if train_BD.shape[0] > max_rows:
        # A full SST-2 training set at 3,072 latents would make the probe the slowest part of a cycle.
        keep = np.random.default_rng(seed).choice(train_BD.shape[0], max_rows, replace=False)
        train_BD, train_labels = train_BD[keep], train_labels[keep]

    scaler = StandardScaler().fit(train_BD)
    probe = LogisticRegression(max_iter=2000)
    probe.fit(scaler.transform(train_BD), train_labels)
    return float(probe.score(scaler.transform(test_BD), test_labels))


def clustering_scores(
    rows_BD: np.ndarray, labels: np.ndarray, classes: int, seed: int, max_rows: int = 2000
) -> dict[str, float]:
    """Adjusted Rand index of k-means (k = classes) against the labels, and the labels' silhouette.

    The silhouette scores the true classes as clusters of the rows (Euclidean), on at most
    ``max_rows`` rows drawn with ``seed``; rows that are all equal score NaN.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    if np.unique(rows_BD, axis=0).shape[0] < classes:
        return {"ari": math.nan, "silhouette": math.nan}
    found = KMeans(n_clusters=classes, n_init="auto", random_state=seed).fit_predict(rows_BD)
    ari = float(adjusted_rand_score(labels, found))
    if len(np.unique(labels)) < 2:
        return {"ari": ari, "silhouette": math.nan}
    sample = min(max_rows, rows_BD.shape[0])
    silhouette = float(silhouette_score(rows_BD, labels, sample_size=sample, random_state=seed))
    return {"ari": ari, "silhouette": silhouette}

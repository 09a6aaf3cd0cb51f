"""k-sparse probing: the batched logistic fit against sklearn, the jump rule, and feature splitting."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from sae_hacking.first_letter import ksparse
from sae_hacking.first_letter.ksparse import (
    fit_balanced_logistic,
    k_sparse_probing,
    latent_ranking,
    main_latents,
    sparse_inputs,
)
from sae_hacking.first_letter.probe import batch_size_for
from tests.first_letter.reference import jump_rule


def test_the_batched_fit_equals_sklearns_balanced_logistic_regression() -> None:
    generator = torch.Generator().manual_seed(0)
    n, k = 300, 4
    x_NK = torch.rand(n, k, generator=generator) * (torch.rand(n, k, generator=generator) < 0.4)
    target_N = (x_NK[:, 0] + 0.5 * x_NK[:, 1] + 0.3 * torch.randn(n, generator=generator)) > 0.4
    x_PNJ = sparse_inputs(x_NK[:, None, :])[0]  # the k prefixes, each with an intercept column
    w_PJ = fit_balanced_logistic(x_PNJ, target_N)
    for prefix in range(k):
        sk = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=10_000)
        sk.fit(x_NK[:, : prefix + 1].double().numpy(), target_N.numpy())  # float64, as here
        expected = np.concatenate([sk.coef_[0], np.zeros(k - prefix - 1), sk.intercept_])
        np.testing.assert_allclose(w_PJ[prefix].numpy(), expected, atol=1e-5)


def test_the_jump_rule_equals_the_reference() -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(200):
        f1_K = torch.rand(6, generator=generator).sort().values * torch.rand(1, generator=generator)
        if torch.rand(1, generator=generator) < 0.5:
            f1_K = torch.rand(6, generator=generator)
        ranking_K = torch.randperm(50, generator=generator)[:6]
        assert main_latents(f1_K, ranking_K, 0.03) == jump_rule(
            f1_K.tolist(), ranking_K.tolist(), 0.03
        )


def letter_latents(
    n: int, generator: torch.Generator, duplicated: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One latent per letter firing on its words (and a few noise latents); optionally one letter's
    latent split into two with disjoint support (latent 26 takes every other word of it)."""
    labels_N = torch.arange(n) % 26
    latents_NE = torch.zeros(n, 30)
    latents_NE[torch.arange(n), labels_N] = 1.0 + torch.rand(n, generator=generator)
    latents_NE[:, 27:] = torch.rand(n, 3, generator=generator) * (
        torch.rand(n, 3, generator=generator) < 0.3
    )
    if duplicated is not None:
        rows = (labels_N == duplicated).nonzero().flatten()[::2]
        latents_NE[rows, 26] = latents_NE[rows, duplicated]
        latents_NE[rows, duplicated] = 0.0
    return latents_NE, labels_N


@pytest.mark.parametrize("duplicated", [None, 3])
def test_a_letter_latent_split_in_two_gives_two_main_latents(duplicated: int | None) -> None:
    generator = torch.Generator().manual_seed(2)
    train_NE, train_N = letter_latents(26 * 24, generator, duplicated)
    test_NE, test_N = letter_latents(26 * 8, generator, duplicated)
    ranking_CK, _ = latent_ranking(
        lambda index: train_NE[index],
        train_N,
        30,
        4,
        50,
        batch_size_for(624, 4096),
        0.01,
        generator,
    )
    result = k_sparse_probing(
        train_NE[:, ranking_CK], train_N, test_NE[:, ranking_CK], test_N, ranking_CK, 0.03
    )
    for letter in range(26):
        if letter == duplicated:
            assert sorted(result.main_latents[letter]) == [letter, 26]
            assert result.split_count(letter) == 1
        else:
            assert result.main_latents[letter] == [letter]
            assert result.f1_CK[letter, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("fit_elements", [2**23, 1])  # all letters in one fit; one letter a fit
def test_k_sparse_f1_of_every_letter_equals_sklearn_fits_one_by_one(
    fit_elements: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import f1_score

    monkeypatch.setattr(ksparse, "FIT_ELEMENTS", fit_elements)
    generator = torch.Generator().manual_seed(2)
    n, t, c, k = 240, 120, 4, 3
    labels = torch.randint(c, (n + t,), generator=generator)
    picked = torch.rand(n + t, c, k, generator=generator) * (
        torch.rand(n + t, c, k, generator=generator) < 0.5
    )
    picked[torch.arange(n + t), labels, 0] += 0.8  # each letter's first latent predicts it
    f1_CK = ksparse.k_sparse_f1(picked[:n], labels[:n], picked[n:], labels[n:])
    for letter in range(c):
        for size in range(1, k + 1):
            sk = LogisticRegression(class_weight="balanced", tol=1e-10, max_iter=10_000)
            sk.fit(picked[:n, letter, :size].double().numpy(), (labels[:n] == letter).numpy())
            predicted = sk.decision_function(picked[n:, letter, :size].double().numpy()) > 0
            expected = f1_score((labels[n:] == letter).numpy(), predicted)
            assert float(f1_CK[letter, size - 1]) == pytest.approx(expected, abs=1e-6)

import torch

from sae_hacking.toy.metrics.probing import k_sparse_probing, rank_latents


def random_labels(batch: int, features: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, features, generator=gen) < 0.3


def test_one_latent_per_feature_needs_one_latent_with_perfect_f1() -> None:
    labels_BN = random_labels(800, 4, seed=0)
    acts_BE = torch.cat([labels_BN.float() * 2.0, torch.zeros(800, 2)], dim=1)
    report = k_sparse_probing(acts_BE, labels_BN, k_max=3)
    assert report.ranked_latents_NK[:, 0].tolist() == [0, 1, 2, 3]
    assert torch.equal(report.f1_NK[:, 0], torch.ones(4))
    assert report.latents_needed_N.tolist() == [1, 1, 1, 1]


def test_feature_split_over_two_latents_needs_two() -> None:
    labels_BN = random_labels(2000, 1, seed=1)
    half_B = torch.rand(2000, generator=torch.Generator().manual_seed(2)) < 0.5
    split_BE = torch.stack([labels_BN[:, 0] & half_B, labels_BN[:, 0] & ~half_B], dim=1).float()
    noise_BE = torch.rand(2000, 2, generator=torch.Generator().manual_seed(3)) < 0.1
    acts_BE = torch.cat([split_BE, noise_BE.float()], dim=1)
    report = k_sparse_probing(acts_BE, labels_BN, k_max=3)
    assert report.f1_NK[0, 0] < 0.8
    assert report.f1_NK[0, 1] == 1.0
    assert report.latents_needed_N.tolist() == [2]
    assert sorted(report.ranked_latents_NK[0, :2].tolist()) == [0, 1]


def test_ranking_matches_a_loop_over_latents() -> None:
    gen = torch.Generator().manual_seed(4)
    acts_BE = torch.rand(300, 7, generator=gen)
    labels_BN = torch.rand(300, 3, generator=gen) < 0.4
    ranked_NK = rank_latents(acts_BE, labels_BN, k_max=7)
    for n in range(3):
        pos, neg = acts_BE[labels_BN[:, n]], acts_BE[~labels_BN[:, n]]
        diff = [(pos[:, e].mean() - neg[:, e].mean()).item() for e in range(7)]
        assert ranked_NK[n].tolist() == sorted(range(7), key=lambda e: -diff[e])

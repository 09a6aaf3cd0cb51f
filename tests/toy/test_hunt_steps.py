"""The toy hunt's steps against slow obvious references, on hand-made SAEs and random samples."""

import itertools

import torch

from sae_hacking.core.pairs import Pairs
from sae_hacking.toy.experiments.hunt.model import (
    Downstream,
    FiringThreshold,
    Reader,
    build_downstream,
)
from sae_hacking.toy.experiments.hunt.scoring import Score, pairs_passing, sweep
from sae_hacking.toy.experiments.hunt.steps import (
    ablation_effects,
    count_cooccurrences,
    search_pairs,
)
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape

M, E, K = 6, 8, 3


def random_sae() -> TopKSAE:
    return TopKSAE(TopKShape(M, E, K), torch.Generator().manual_seed(1))


def fixed_draws(n_batches: int, size: int):
    data = [
        torch.randn(size, M, generator=torch.Generator().manual_seed(i)) for i in range(n_batches)
    ]
    calls = iter(data)
    probe = torch.zeros(1, M)

    def draw(n: int) -> torch.Tensor:
        return probe if n == 1 else next(calls)

    return torch.cat(data), draw


def test_cooccurrence_counts_match_a_loop_over_samples_and_pairs() -> None:
    sae = random_sae()
    x_BM, draw = fixed_draws(3, 50)
    counts = count_cooccurrences(sae, draw, 150, 50)
    fires_BE = sae.encode_dense(x_BM).detach() > 0
    for i, j in itertools.combinations(range(E), 2):
        expected = int((fires_BE[:, i] & fires_BE[:, j]).sum())
        assert int(counts.lookup(torch.tensor([i]), torch.tensor([j]))) == expected
    assert counts.firing_E.tolist() == fires_BE.sum(0).tolist()


def test_ablation_effects_match_one_ablation_at_a_time() -> None:
    sae = random_sae()
    x_BM, draw = fixed_draws(2, 20)
    downstream = build_downstream("random", torch.eye(M), 5, 0.1, torch.Generator().manual_seed(2))
    effects = ablation_effects(sae, downstream, Reader(None), draw, 40, 20, abridge_to=2)
    acts_BE = sae.encode_dense(x_BM).detach()
    expected = torch.zeros(E, 5)
    counts = torch.zeros(E, dtype=torch.long)
    for b in range(40):
        top = acts_BE[b].topk(2)
        for value, latent in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            if value <= 0:
                continue
            ablated = x_BM[b] - value * sae.W_dec_EM[latent].detach()
            expected[latent] += downstream(x_BM[b : b + 1])[0] - downstream(ablated[None])[0]
            counts[latent] += 1
    rows = counts.nonzero().squeeze(1)
    assert effects.latents_R.tolist() == rows.tolist()
    assert effects.counts_R.tolist() == counts[rows].tolist()
    torch.testing.assert_close(effects.rows_RD, expected[rows], atol=1e-5, rtol=1e-5)


def test_firing_threshold_silences_weak_latents_and_keeps_the_decoder() -> None:
    sae = random_sae()
    gated = FiringThreshold(sae, 0.5)
    x_BM = torch.randn(30, M)
    raw_BE, gated_BE = sae.encode_dense(x_BM), gated.encode_dense(x_BM)
    assert bool(((gated_BE == 0) | (gated_BE > 0.5)).all())
    torch.testing.assert_close(gated_BE[raw_BE > 0.5], raw_BE[raw_BE > 0.5])
    assert gated.decoder_directions() is sae.decoder_directions()
    expected_BM = gated_BE @ sae.W_dec_EM + sae.b_dec_M
    torch.testing.assert_close(gated.reconstruct(x_BM), expected_BM)


def test_readout_downstream_reads_true_features_through_a_relu() -> None:
    features_NM = torch.eye(3, M)
    downstream = build_downstream("readout", features_NM, 99, 0.0, torch.Generator())
    x_BM = torch.tensor([[1.0, -2.0, 0.5, 7.0, 0.0, 0.0]])
    assert downstream(x_BM).tolist() == [[1.0, 0.0, 0.5]]
    assert isinstance(downstream, Downstream)


def test_pair_search_finds_exactly_the_rare_similar_pairs() -> None:
    sae = random_sae()
    _, draw = fixed_draws(1, 200)
    counts = count_cooccurrences(sae, draw, 200, 200)
    rows_RD = torch.randn(E, 4, generator=torch.Generator().manual_seed(3))
    latents_R = torch.arange(E)
    found = search_pairs(latents_R, rows_RD, counts, 0.2, 3).pairs
    unit = rows_RD / rows_RD.norm(dim=1, keepdim=True)
    expected = set()
    for i, j in itertools.combinations(range(E), 2):
        count = int(counts.lookup(torch.tensor([i]), torch.tensor([j])))
        if float(unit[i] @ unit[j]) >= 0.2 and count <= 3:
            expected.add((i, j))
    assert pairs_passing(found, 0.2, 3) == expected


def test_sweep_filters_one_loose_search_like_separate_searches() -> None:
    pairs = Pairs(
        torch.tensor([0, 1, 2]),
        torch.tensor([5, 4, 3]),
        torch.tensor([0.9, 0.5, 0.3]),
        torch.tensor([0, 4, 0]),
    )
    truth = frozenset({(0, 5), (2, 3), (6, 7)})
    scores = {
        (s.cosine_threshold, s.cooccurrence_threshold): s
        for s in sweep(pairs, truth, (0.4, 0.2), (0, 5))
    }
    assert scores[(0.4, 0)] == Score(0.4, 0, 1, 1, 3)
    assert scores[(0.2, 0)] == Score(0.2, 0, 2, 2, 3)
    assert scores[(0.2, 5)] == Score(0.2, 5, 3, 2, 3)
    assert scores[(0.2, 5)].precision == 2 / 3
    assert scores[(0.2, 5)].recall == 2 / 3


def test_nothing_predicted_scores_precision_one_and_f1_zero() -> None:
    empty = Score(0.5, 0, 0, 0, 4)
    assert (empty.precision, empty.recall, empty.f1) == (1.0, 0.0, 0.0)

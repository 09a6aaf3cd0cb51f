"""The toy hunt's steps against slow obvious references, on hand-made SAEs and random samples."""

import itertools

import pytest
import torch

from sae_hacking.core.thresholds import otsu_thresholds
from sae_hacking.toy.experiments.hunt.cases import (
    CHILD_MAGNITUDE,
    LOOKALIKE_COSINE,
    MISLEADING_GATES,
    lookalike_children,
    misleading_source,
)
from sae_hacking.toy.experiments.hunt.model import (
    Downstream,
    FiringThreshold,
    Reader,
    build_downstream,
)
from sae_hacking.toy.experiments.hunt.scoring import METHODS, PairTable, Score, method_scores
from sae_hacking.toy.experiments.hunt.steps import (
    ablation_effects,
    count_cooccurrences,
    pair_table,
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


NO_PARENTS = torch.full((M,), -1)


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
    downstream = build_downstream(
        "random", torch.eye(M), NO_PARENTS, 5, 0.1, torch.Generator().manual_seed(2)
    )
    (effects,) = ablation_effects(
        sae, downstream, Reader(None), draw, 40, 20, abridge_to=2
    ).values()
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


def test_parents_downstream_reads_only_features_with_a_child() -> None:
    features_NM = torch.eye(4, M)
    parent_N = torch.tensor([-1, 0, 0, -1])  # feature 0 has two children, 3 none
    downstream = build_downstream("parents", features_NM, parent_N, 99, 0.5, torch.Generator())
    x_BM = torch.tensor([[2.0, 1.0, 1.0, 3.0, 0.0, 0.0]])
    assert downstream(x_BM).tolist() == [[1.5]]


def test_misleading_case_hides_absorption_from_decoder_cosines() -> None:
    source = misleading_source(96, torch.Generator().manual_seed(0))
    features_NM = source.features_NM
    cosine_NN = features_NM @ features_NM.T
    for first, lookalike in lookalike_children():
        assert float(cosine_NN[first, lookalike]) == pytest.approx(LOOKALIKE_COSINE, abs=1e-5)
        assert int(source.parent_N[first]) == int(source.parent_N[lookalike])
    _, acts_BN = source.sample(4000, torch.Generator().manual_seed(1))
    fired_BN = acts_BN > 0
    parents = source.parent_N[source.parent_N >= 0].unique()
    assert len(parents) == 2 * MISLEADING_GATES
    for gate in range(MISLEADING_GATES):
        first, second = int(parents[2 * gate]), int(parents[2 * gate + 1])
        assert not bool((fired_BN[:, first] & fired_BN[:, second]).any())  # exclusive parents
    children = source.parent_N >= 0
    assert set(acts_BN[:, children][fired_BN[:, children]].tolist()) == {CHILD_MAGNITUDE}


def test_readout_downstream_reads_true_features_through_a_relu() -> None:
    features_NM = torch.eye(3, M)
    downstream = build_downstream(
        "readout", features_NM, NO_PARENTS[:3], 99, 0.0, torch.Generator()
    )
    x_BM = torch.tensor([[1.0, -2.0, 0.5, 7.0, 0.0, 0.0]])
    assert downstream(x_BM).tolist() == [[1.0, 0.0, 0.5]]
    assert isinstance(downstream, Downstream)


def test_effects_in_every_space_match_one_ablation_at_a_time_through_a_reader_sae() -> None:
    sae = random_sae()
    x_BM, draw = fixed_draws(1, 30)
    downstream = build_downstream(
        "random", torch.eye(M), NO_PARENTS, 5, 0.0, torch.Generator().manual_seed(2)
    )
    reader_sae = TopKSAE(TopKShape(5, 7, 2), torch.Generator().manual_seed(4))
    reader = Reader(reader_sae)
    spaces = ("latents", "preactivations", "activations", "reconstruction")
    effects = ablation_effects(sae, downstream, reader, draw, 30, 30, abridge_to=1, spaces=spaces)
    acts_BE = sae.encode_dense(x_BM).detach()
    read = {
        "latents": lambda y: reader_sae.encode_dense(y),
        "preactivations": lambda y: reader_sae.preactivations(y),
        "activations": lambda y: y,
        "reconstruction": lambda y: reader_sae.encode_dense(y) @ reader_sae.W_dec_EM,
    }
    for space, rows in effects.items():
        expected = {}
        for b in range(30):
            value, latent = acts_BE[b].max(dim=0)
            if value <= 0:
                continue
            ablated = x_BM[b] - value * sae.W_dec_EM[int(latent)].detach()
            delta = read[space](downstream(x_BM[b : b + 1])) - read[space](
                downstream(ablated[None])
            )
            expected[int(latent)] = expected.get(int(latent), 0) + delta[0].detach()
        assert rows.latents_R.tolist() == sorted(expected)
        stacked = torch.stack([expected[e] for e in sorted(expected)])
        torch.testing.assert_close(rows.rows_RD, stacked, atol=1e-5, rtol=1e-5)


def test_pair_table_holds_every_pair_with_its_cosines_and_counts() -> None:
    sae = random_sae()
    _, draw = fixed_draws(1, 200)
    counts = count_cooccurrences(sae, draw, 200, 200)
    rows_RD = torch.randn(5, 4, generator=torch.Generator().manual_seed(3))
    latents_R = torch.tensor([0, 2, 3, 5, 7])
    table = pair_table(latents_R, {"effect": rows_RD}, counts)
    assert len(table.first_P) == 10
    unit = rows_RD / rows_RD.norm(dim=1, keepdim=True)
    for p, (a, b) in enumerate(itertools.combinations(range(5), 2)):
        i, j = int(latents_R[a]), int(latents_R[b])
        assert (int(table.first_P[p]), int(table.second_P[p])) == (i, j)
        assert float(table.similarity["effect"][p]) == pytest.approx(float(unit[a] @ unit[b]))
        observed = int(counts.lookup(torch.tensor([i]), torch.tensor([j])))
        assert int(table.cooccurrence_P[p]) == observed
        expected = int(counts.firing_E[i]) * int(counts.firing_E[j]) / 200
        assert float(table.expected_P[p]) == pytest.approx(expected)


def toy_table() -> PairTable:
    return PairTable(
        first_P=torch.tensor([0, 1, 2, 3]),
        second_P=torch.tensor([5, 4, 3, 6]),
        cooccurrence_P=torch.tensor([0, 4, 0, 0]),
        expected_P=torch.tensor([50.0, 50.0, 0.1, 50.0], dtype=torch.float64),
        confidence_P=torch.tensor([1.0, 1.0, 0.1, 1.0]),
        similarity={
            "effect": torch.tensor([0.9, 0.5, 0.9, 0.1]),
            "sign": torch.tensor([0.6, 0.6, 0.2, 0.2]),
            "decoder": torch.tensor([0.5, 0.1, 0.8, 0.7]),
        },
        firing_E=torch.tensor([90, 80, 1, 70, 60, 50, 40]),
    )


def test_each_method_keeps_the_pairs_its_rule_names() -> None:
    table = toy_table()
    truth = frozenset({(0, 5), (1, 4)})
    kept = {m.name: table.pairs(m.keep(table, 0.45)) for m in METHODS}
    assert kept["original"] == {(0, 5)}
    assert kept["decoder"] == {(0, 5), (2, 3), (3, 6)}
    assert kept["decoder+never"] == {(0, 5), (2, 3), (3, 6)}
    assert kept["never"] == {(0, 5), (2, 3), (3, 6)}
    assert kept["effect+never"] == {(0, 5), (2, 3)}
    # The rare pair (2, 3) never met, but chance alone explains that: the score drops it, and the
    # pair that met 4 times where 50 were expected keeps its place.
    assert kept["ranked"] == {(0, 5), (1, 4)}
    (ranked,) = [m for m in METHODS if m.name == "ranked"]
    (scored,) = method_scores(table, truth, ranked, (0.45,))
    assert (scored.predicted, scored.true_positives, scored.actual) == (2, 2, 2)


def test_method_scores_match_python_sets_of_kept_and_true_pairs() -> None:
    generator = torch.Generator().manual_seed(5)
    width = 30
    first_P, second_P = torch.triu_indices(width, width, offset=1)
    pairs = len(first_P)

    def uniform() -> torch.Tensor:
        return torch.rand(pairs, generator=generator)

    table = PairTable(
        first_P=first_P,
        second_P=second_P,
        cooccurrence_P=torch.randint(0, 3, (pairs,), generator=generator),
        expected_P=5 * uniform().double(),
        confidence_P=uniform(),
        similarity={"effect": 2 * uniform() - 1, "sign": uniform(), "decoder": uniform()},
        firing_E=torch.randint(1, 100, (width,), generator=generator),
    )
    chosen = torch.randperm(pairs, generator=generator)[:40].tolist()
    truth = frozenset((int(first_P[p]), int(second_P[p])) for p in chosen)
    bars = (0.2, 0.5, 0.8)
    for method in METHODS:
        expected = []
        for bar in bars if method.thresholded else (float("nan"),):
            kept = table.pairs(method.keep(table, bar))
            expected.append((len(kept), len(kept & truth), len(truth)))
        scores = method_scores(table, truth, method, bars)
        assert [(s.predicted, s.true_positives, s.actual) for s in scores] == expected


def test_nothing_predicted_scores_precision_one_and_f1_zero() -> None:
    empty = Score(0.5, 0, 0, 4)
    assert (empty.precision, empty.recall, empty.f1) == (1.0, 0.0, 0.0)


def test_otsu_thresholds_match_a_loop_over_latents_and_splits() -> None:
    generator = torch.Generator().manual_seed(3)
    weak = 0.3 * torch.rand(200, 5, generator=generator)
    strong = 0.8 + 0.2 * torch.rand(200, 5, generator=generator)
    acts_BE = torch.cat([weak, strong, torch.zeros(50, 5)])
    acts_BE[:, 4] = 0.0  # a latent that never fires
    bins = 16
    fitted_E = otsu_thresholds(acts_BE, bins)
    for e in range(5):
        values = acts_BE[:, e][acts_BE[:, e] > 0].double()
        if not len(values):
            assert float(fitted_E[e]) == 0.0
            continue
        top = float(values.max())
        index = (values / top * bins).long().clamp(0, bins - 1)
        centre = (index.double() + 0.5) / bins
        best, best_split = -1.0, 0
        for split in range(bins - 1):
            low, high = centre[index <= split], centre[index > split]
            if not len(low) or not len(high):
                continue
            between = len(low) * len(high) * float(high.mean() - low.mean()) ** 2
            if between > best:
                best, best_split = between, split
        assert float(fitted_E[e]) == pytest.approx((best_split + 1) / bins * top, rel=1e-5)
        assert 0.3 <= float(fitted_E[e]) <= 0.8 + 1 / bins  # between the weak and strong firings

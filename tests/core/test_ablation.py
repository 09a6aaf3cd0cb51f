import torch

from sae_hacking.core.ablation import (
    ablatable_latents,
    ablation_deltas,
    choose_ablations,
    decoder_directions,
    last_real_positions,
)


def reference_choice(acts_BSE, counted_BS, k, ablatable_E, selected, thresholds=None):
    """Loop version: sum counted tokens (activations above ``thresholds``, default 0), skip
    excluded latents, keep the k largest that fired."""
    bars = [0.0] * acts_BSE.shape[2] if thresholds is None else thresholds
    out = []
    for b in range(acts_BSE.shape[0]):
        sums = {}
        for e in range(acts_BSE.shape[2]):
            if ablatable_E[e]:
                sums[e] = sum(
                    float(acts_BSE[b, s, e])
                    for s in range(acts_BSE.shape[1])
                    if counted_BS[b, s] and float(acts_BSE[b, s, e]) > bars[e]
                )
        top = sorted(sums, key=lambda e: -sums[e])[:k]
        top = [e for e in top if sums[e] > 0]
        chosen = bool(top) if not selected else any(e in top for e in selected)
        out.append((sorted(top), chosen))
    return out


def test_choice_matches_loop_reference_skipping_pads_bos_and_excluded_latents() -> None:
    gen = torch.Generator().manual_seed(0)
    acts_BSE = torch.relu(torch.randn(5, 7, 30, generator=gen) - 1.0)
    acts_BSE[1] = 0.0  # a prompt on which nothing fires
    counted_BS = torch.rand(5, 7, generator=gen) > 0.3
    ablatable_E = torch.rand(30, generator=gen) > 0.2
    for selected in ([], [3, 17]):
        choice = choose_ablations(
            acts_BSE, counted_BS, 6, ablatable_E, torch.tensor(selected, dtype=torch.long)
        )
        expected = reference_choice(acts_BSE, counted_BS, 6, ablatable_E, selected)
        for b, (top, chosen) in enumerate(expected):
            got = sorted(
                int(e) for e, ok in zip(choice.latents_BK[b], choice.valid_BK[b], strict=True) if ok
            )
            assert got == top
            assert bool(choice.chosen_B[b]) == chosen
    assert not bool(choice.valid_BK[1].any())


def test_choice_above_firing_thresholds_matches_the_loop_reference() -> None:
    gen = torch.Generator().manual_seed(1)
    acts_BSE = torch.relu(torch.randn(6, 7, 30, generator=gen) - 0.5)
    counted_BS = torch.rand(6, 7, generator=gen) > 0.3
    ablatable_E = torch.ones(30, dtype=torch.bool)
    thresholds_E = torch.rand(30, generator=gen) * 1.5
    none = torch.tensor([], dtype=torch.long)
    choice = choose_ablations(acts_BSE, counted_BS, 4, ablatable_E, none, thresholds_E)
    expected = reference_choice(acts_BSE, counted_BS, 4, ablatable_E, [], thresholds_E.tolist())
    plain = choose_ablations(acts_BSE, counted_BS, 4, ablatable_E, none)
    assert not torch.equal(plain.latents_BK, choice.latents_BK)  # the bars change the choice
    for b, (top, chosen) in enumerate(expected):
        got = sorted(
            int(e) for e, ok in zip(choice.latents_BK[b], choice.valid_BK[b], strict=True) if ok
        )
        assert got == top
        assert bool(choice.chosen_B[b]) == chosen


def test_deltas_are_activation_times_direction_and_zero_where_not_fired() -> None:
    acts_KS = torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    dirs_KM = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    deltas = ablation_deltas(acts_KS, dirs_KM)
    assert torch.equal(deltas[0, 0], torch.zeros(3))
    assert torch.equal(deltas[0, 1], torch.tensor([2.0, 0.0, 0.0]))
    assert torch.equal(deltas[1, 0], torch.tensor([0.0, 3.0, 1.0]))


def test_decoder_directions_rescale_to_unit_rows_when_asked() -> None:
    W = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    assert torch.equal(decoder_directions(W, torch.tensor([0]), False), W[:1])
    assert torch.allclose(
        decoder_directions(W, torch.tensor([0]), True), torch.tensor([[0.6, 0.8]])
    )


def test_exclusion_by_firing_frequency() -> None:
    counts = torch.tensor([0, 10, 11, 100])
    assert ablatable_latents(counts, 100, 0.1, 4).tolist() == [True, True, False, False]
    assert ablatable_latents(None, 0, None, 4).all()


def test_last_real_position_for_left_and_right_padding() -> None:
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    assert last_real_positions(mask).tolist() == [3, 2, 3]

import pytest
import torch

from sae_hacking.core import cooccurrence
from sae_hacking.core.cooccurrence import (
    active_entries,
    active_latents,
    add_counts_,
    add_row_counts_,
)
from sae_hacking.core.triangle import triangle_size


def random_acts(
    batch: int, seq: int, width: int, density: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """JumpReLU-like activations (exact zeros or positive) and a left-padded count mask."""
    fires = torch.rand(batch, seq, width) < density
    acts_BSE = torch.where(fires, torch.rand(batch, seq, width) + 0.1, torch.zeros(()))
    lengths = torch.randint(0, seq + 1, (batch,))
    counted_BS = torch.arange(seq)[None, :] >= (seq - lengths)[:, None]
    counted_BS[:, 0] &= False  # a BOS-like first column is never counted
    return acts_BSE, counted_BS


def reference_counts(acts_BSE: torch.Tensor, counted_BS: torch.Tensor) -> tuple[dict, list[int]]:
    """Token by token: every pair of firing latents on a counted token, and each latent's firings."""
    pairs: dict[tuple[int, int], int] = {}
    firing = [0] * acts_BSE.shape[2]
    for b in range(acts_BSE.shape[0]):
        for s in range(acts_BSE.shape[1]):
            if not counted_BS[b, s]:
                continue
            on = [e for e in range(acts_BSE.shape[2]) if acts_BSE[b, s, e] > 0]
            for e in on:
                firing[e] += 1
            for x, i in enumerate(on):
                for j in on[x + 1 :]:
                    pairs[(i, j)] = pairs.get((i, j), 0) + 1
    return pairs, firing


def unpacked(counts_P: torch.Tensor, width: int) -> dict[tuple[int, int], int]:
    i, j = torch.triu_indices(width, width, 1)
    return {(int(a), int(b)): int(c) for a, b, c in zip(i, j, counts_P, strict=True) if c}


@pytest.mark.parametrize(
    ("batch", "seq", "width", "density"),
    [(3, 7, 11, 0.4), (5, 9, 40, 0.15), (2, 4, 5, 1.0), (6, 20, 200, 0.02)],
)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_pair_and_firing_counts_match_the_per_token_reference(
    batch: int, seq: int, width: int, density: float, dtype: torch.dtype
) -> None:
    acts_BSE, counted_BS = random_acts(batch, seq, width, density)
    active_TE = active_latents(acts_BSE, counted_BS)
    counts_P = torch.zeros(triangle_size(width), dtype=dtype)
    firing_E = torch.zeros(width, dtype=torch.int64)
    add_counts_(counts_P, firing_E, active_TE)
    pairs, firing = reference_counts(acts_BSE, counted_BS)
    assert unpacked(counts_P, width) == pairs
    assert firing_E.tolist() == firing


def test_small_chunks_give_the_same_counts_as_one_scatter() -> None:
    acts_BSE, counted_BS = random_acts(4, 16, 30, 0.3)
    active_TE = active_latents(acts_BSE, counted_BS)
    whole = torch.zeros(triangle_size(30), dtype=torch.int32)
    chunked = torch.zeros_like(whole)
    add_counts_(whole, torch.zeros(30, dtype=torch.int64), active_TE)
    add_counts_(chunked, torch.zeros(30, dtype=torch.int64), active_TE, max_pairs=7)
    assert torch.equal(whole, chunked)


@pytest.mark.parametrize("density", [0.005, 0.2])
@pytest.mark.parametrize("width", [1, 7, 8, 13, 64, 300])
def test_active_entries_are_the_nonzero_entries_in_row_major_order(
    width: int, density: float
) -> None:
    active_TE = torch.rand(37, width) < density
    token_D, latent_D = active_entries(active_TE)
    expected_token_D, expected_latent_D = active_TE.nonzero(as_tuple=True)
    assert torch.equal(token_D, expected_token_D) and torch.equal(latent_D, expected_latent_D)


def test_active_entries_of_a_view_at_an_odd_offset_and_a_strided_view() -> None:
    base_TE = torch.rand(30, 24) < 0.02
    at_offset_5 = base_TE.reshape(-1)[5 : 5 + 29 * 24].view(29, 24)
    for view_TE in (at_offset_5, base_TE[:, 1:], base_TE[::2], base_TE.T):
        expected = view_TE.nonzero(as_tuple=True)
        got = active_entries(view_TE)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    ("latent_major", "int32_indices"), [(True, True), (False, False), (True, False)]
)
def test_latent_major_order_and_int64_indices_give_the_same_counts(
    monkeypatch: pytest.MonkeyPatch, latent_major: bool, int32_indices: bool
) -> None:
    """Each scatter order and index width agrees with the per-token reference, chunked too."""
    acts_BSE, counted_BS = random_acts(4, 12, 33, 0.3)
    active_TE = active_latents(acts_BSE, counted_BS)
    if latent_major:
        monkeypatch.setattr(cooccurrence, "LATENT_MAJOR_BYTES", 0)
    if not int32_indices:
        monkeypatch.setattr(cooccurrence, "_INT32_MAX", 0)
    pairs, firing = reference_counts(acts_BSE, counted_BS)
    for max_pairs in (5, cooccurrence.DEFAULT_MAX_PAIRS):
        counts_P = torch.zeros(triangle_size(33), dtype=torch.int64)
        firing_E = torch.zeros(33, dtype=torch.int64)
        add_counts_(counts_P, firing_E, active_TE, max_pairs=max_pairs)
        assert unpacked(counts_P, 33) == pairs and firing_E.tolist() == firing


def test_counts_of_another_width_are_refused() -> None:
    with pytest.raises(ValueError, match="not those of 6 latents"):
        add_counts_(
            torch.zeros(triangle_size(5), dtype=torch.int32),
            torch.zeros(6, dtype=torch.int64),
            torch.ones(2, 6, dtype=torch.bool),
        )


def test_padding_and_silent_tokens_add_nothing() -> None:
    acts_BSE = torch.rand(2, 3, 6) + 0.1
    counted_BS = torch.zeros(2, 3, dtype=torch.bool)
    counts_P = torch.zeros(triangle_size(6), dtype=torch.int32)
    firing_E = torch.zeros(6, dtype=torch.int64)
    add_counts_(counts_P, firing_E, active_latents(acts_BSE, counted_BS))
    silent_TE = active_latents(torch.zeros(2, 3, 6), torch.ones(2, 3, dtype=torch.bool))
    add_counts_(counts_P, firing_E, silent_TE)
    assert not counts_P.any() and not firing_E.any()


def test_row_counts_are_rows_of_the_full_matrix_with_firings_on_the_diagonal() -> None:
    width = 25
    acts_BSE, counted_BS = random_acts(4, 10, width, 0.3)
    active_TE = active_latents(acts_BSE, counted_BS)
    rows_R = torch.tensor([0, 7, 24])
    counts_RE = torch.zeros(3, width, dtype=torch.int64)
    firing_E = torch.zeros(width, dtype=torch.int64)
    add_row_counts_(counts_RE, firing_E, active_TE, rows_R)
    pairs, firing = reference_counts(acts_BSE, counted_BS)
    assert firing_E.tolist() == firing
    for r, row in enumerate(rows_R.tolist()):
        for e in range(width):
            expected = firing[row] if e == row else pairs.get((min(row, e), max(row, e)), 0)
            assert counts_RE[r, e] == expected

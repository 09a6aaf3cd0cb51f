import pytest
import torch
from torch import Tensor

from sae_hacking.core.pairs import find_pairs


def brute_force(
    latents: list[int],
    rows_RY: Tensor,
    cooc: dict[tuple[int, int], int],
    cos_min: float,
    cooc_max: int,
    sign: bool,
    just_these: set[int] | None,
) -> dict[tuple[int, int], float]:
    """Every pair once, by two loops over rows: the obvious reference."""
    found: dict[tuple[int, int], float] = {}
    for a in range(len(latents)):
        for b in range(a + 1, len(latents)):
            i, j = latents[a], latents[b]
            if just_these is not None and i not in just_these and j not in just_these:
                continue
            x, y = rows_RY[a], rows_RY[b]
            if sign:
                x, y = torch.sign(x), torch.sign(y)
            cos = float(torch.dot(x, y) / (x.norm() * y.norm()).clamp_min(1e-12))
            if cos >= cos_min and cooc.get((i, j), 0) <= cooc_max:
                found[(i, j)] = cos
    return found


def make_case(
    n_rows: int, width: int, seed: int
) -> tuple[Tensor, Tensor, dict[tuple[int, int], int]]:
    gen = torch.Generator().manual_seed(seed)
    latents_R = torch.randperm(5 * n_rows, generator=gen)[:n_rows].sort().values
    rows_RY = torch.randn(n_rows, width, generator=gen) * (
        torch.rand(n_rows, width, generator=gen) < 0.3
    )
    rows_RY[n_rows // 2] = rows_RY[0] * 2.0  # an exact duplicate direction
    cooc = {}
    lat = latents_R.tolist()
    for a in range(n_rows):
        for b in range(a + 1, n_rows):
            if torch.rand(1, generator=gen).item() < 0.5:
                cooc[(lat[a], lat[b])] = int(torch.randint(1, 5, (1,), generator=gen))
    return latents_R, rows_RY, cooc


def lookup(cooc: dict[tuple[int, int], int]):
    def counts(first_P: Tensor, second_P: Tensor) -> Tensor:
        assert bool((first_P < second_P).all())
        return torch.tensor(
            [cooc.get((int(i), int(j)), 0) for i, j in zip(first_P, second_P, strict=True)],
            dtype=torch.long,
        )

    return counts


@pytest.mark.parametrize("sign", [False, True])
@pytest.mark.parametrize(
    ("block_rows", "screen_dtype", "max_cached_bytes"),
    [
        (1, torch.bfloat16, 1 << 30),
        (7, torch.bfloat16, 0),  # nothing cached: blocks re-read for every query block
        (7, torch.float32, 1 << 30),
        (64, torch.bfloat16, 1 << 30),
    ],
)
@pytest.mark.parametrize("just_these", [None, (0, 3, 10)])
def test_blocked_search_finds_exactly_the_brute_force_pairs(
    sign: bool,
    block_rows: int,
    screen_dtype: torch.dtype,
    max_cached_bytes: int,
    just_these: tuple[int, ...] | None,
) -> None:
    latents_R, rows_RY, cooc = make_case(40, 16, seed=block_rows)
    chosen = None if just_these is None else {int(latents_R[r]) for r in just_these}
    expected = brute_force(latents_R.tolist(), rows_RY, cooc, 0.1, 1, sign, chosen)
    search = find_pairs(
        latents_R,
        lambda a, b: rows_RY[a:b],
        lookup(cooc),
        cosine_threshold=0.1,
        cooccurrence_threshold=1,
        top_n=10_000,
        sign=sign,
        just_these=None if chosen is None else torch.tensor(sorted(chosen)),
        block_rows=block_rows,
        screen_dtype=screen_dtype,
        max_cached_bytes=max_cached_bytes,
    )
    pairs = search.pairs
    got = {
        (int(i), int(j)): float(c)
        for i, j, c in zip(pairs.first_P, pairs.second_P, pairs.cosine_P, strict=True)
    }
    assert got.keys() == expected.keys()
    assert search.passed == len(expected)
    for key, cos in expected.items():
        assert got[key] == pytest.approx(cos, abs=1e-5)
    assert bool((pairs.first_P < pairs.second_P).all())
    assert bool((pairs.cosine_P[:-1] >= pairs.cosine_P[1:]).all())
    for i, j, c in zip(
        pairs.first_P.tolist(), pairs.second_P.tolist(), pairs.cooccurrence_P.tolist(), strict=True
    ):
        assert c == cooc.get((i, j), 0)
    n = len(latents_R)
    n_compared = (
        n * (n - 1) // 2
        if chosen is None
        else sum(
            1
            for a in range(n)
            for b in range(a + 1, n)
            if int(latents_R[a]) in chosen or int(latents_R[b]) in chosen
        )
    )
    assert search.compared == n_compared == int(search.histogram_D.sum())


@pytest.mark.parametrize("sign", [False, True])
def test_bfloat16_screening_keeps_pairs_right_at_the_threshold(sign: bool) -> None:
    """Pairs whose exact cosine sits within bfloat16 rounding of the bar are neither lost nor let in."""
    latents_R, rows_RY, _ = make_case(60, 48, seed=5)
    exact = brute_force(latents_R.tolist(), rows_RY, {}, -1.0, 0, sign, None)
    for threshold in sorted(exact.values())[-40::7]:
        for nudge in (-1e-6, 0.0, 1e-6):
            bar = threshold + nudge
            expected = {k for k, c in exact.items() if c >= bar}
            pairs = find_pairs(
                latents_R, lambda a, b: rows_RY[a:b], lookup({}), bar, 0, 10_000, sign=sign
            ).pairs
            got = set(zip(pairs.first_P.tolist(), pairs.second_P.tolist(), strict=True))
            # Only exact float32 ties at the bar may go either way.
            assert got ^ expected <= {k for k, c in exact.items() if abs(c - bar) < 1e-6}


def test_top_n_keeps_the_highest_cosines() -> None:
    latents_R, rows_RY, _ = make_case(30, 8, seed=1)
    full = find_pairs(latents_R, lambda a, b: rows_RY[a:b], lookup({}), -1.0, 0, 10_000).pairs
    top = find_pairs(
        latents_R, lambda a, b: rows_RY[a:b], lookup({}), -1.0, 0, 5, block_rows=4
    ).pairs
    assert len(full) == 30 * 29 // 2
    assert torch.allclose(top.cosine_P, full.cosine_P[:5])


@pytest.mark.parametrize("screen_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("block_rows", [7, 64])
@pytest.mark.parametrize("just_these", [None, (0, 3, 10)])
def test_passed_counts_every_passing_pair_not_only_the_top_n_kept(
    screen_dtype: torch.dtype, block_rows: int, just_these: tuple[int, ...] | None
) -> None:
    latents_R, rows_RY, cooc = make_case(50, 12, seed=3)
    chosen = None if just_these is None else {int(latents_R[r]) for r in just_these}
    exact = brute_force(latents_R.tolist(), rows_RY, cooc, -1.0, 1, False, chosen)
    # Bars at exact cosines of pairs: the pairs nearest a bar are the ones screening must get right.
    for threshold in sorted(exact.values())[::137]:
        expected = sum(1 for c in exact.values() if c >= threshold)
        search = find_pairs(
            latents_R,
            lambda a, b: rows_RY[a:b],
            lookup(cooc),
            threshold,
            1,
            top_n=4,
            just_these=None if chosen is None else torch.tensor(sorted(chosen)),
            block_rows=block_rows,
            screen_dtype=screen_dtype,
        )
        assert abs(search.passed - expected) <= sum(
            1 for c in exact.values() if abs(c - threshold) < 1e-6
        )
        assert len(search.pairs) == min(4, search.passed)


def test_duplicate_direction_is_found_with_cosine_one() -> None:
    latents_R, rows_RY, _ = make_case(20, 8, seed=2)
    pairs = find_pairs(latents_R, lambda a, b: rows_RY[a:b], lookup({}), 0.999, 0, 10).pairs
    assert (int(pairs.first_P[0]), int(pairs.second_P[0])) == (
        int(latents_R[0]),
        int(latents_R[10]),
    )
    assert float(pairs.cosine_P[0]) == pytest.approx(1.0, abs=1e-6)


def test_unsorted_latents_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        find_pairs(torch.tensor([3, 1]), lambda a, b: torch.ones(b - a, 2), lookup({}), 0.0, 0, 1)

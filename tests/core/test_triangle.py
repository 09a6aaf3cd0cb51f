import pytest
import torch

from sae_hacking.core.triangle import (
    bits_at,
    pack_bits,
    pair_index,
    pair_of_index,
    triangle_row,
    triangle_size,
    unpack_bits,
)


def reference_pairs(width: int) -> list[tuple[int, int]]:
    """Pairs i < j in packed order: row by row, columns ascending."""
    return [(i, j) for i in range(width) for j in range(i + 1, width)]


@pytest.mark.parametrize("width", [2, 3, 17, 64])
def test_pair_index_enumerates_the_triangle_row_by_row(width: int) -> None:
    pairs = reference_pairs(width)
    i_D = torch.tensor([p[0] for p in pairs])
    j_D = torch.tensor([p[1] for p in pairs])
    assert torch.equal(pair_index(i_D, j_D, width), torch.arange(triangle_size(width)))
    first, second = pair_of_index(torch.arange(triangle_size(width)), width)
    assert torch.equal(first, i_D) and torch.equal(second, j_D)


def test_pair_index_is_exact_past_two_to_the_31() -> None:
    width = 70000
    last = pair_index(torch.tensor([width - 2]), torch.tensor([width - 1]), width)
    assert last.item() == triangle_size(width) - 1 > 2**31
    i, j = pair_of_index(last, width)
    assert (i.item(), j.item()) == (width - 2, width - 1)


def test_triangle_row_is_a_row_of_the_symmetric_matrix() -> None:
    width = 9
    dense = torch.randint(0, 100, (width, width))
    dense = torch.triu(dense, 1) + torch.triu(dense, 1).T
    i, j = torch.triu_indices(width, width, 1)
    counts_P = dense[i, j]
    for row in range(width):
        assert torch.equal(triangle_row(counts_P, row, width), dense[row])


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_bits_round_trip_and_read_in_place(n: int) -> None:
    flags = torch.rand(n) < 0.3
    words = pack_bits(flags)
    assert words.shape == (-(-n // 64),)
    assert torch.equal(unpack_bits(words, n), flags)
    assert torch.equal(bits_at(words, torch.arange(n)), flags)


@pytest.mark.parametrize("n", [5, 64, 130])
def test_packed_words_match_a_bit_by_bit_reference(n: int) -> None:
    flags = torch.rand(n) < 0.5
    expected = []
    for first in range(0, n, 64):
        word = sum(1 << b for b, flag in enumerate(flags[first : first + 64].tolist()) if flag)
        expected.append(word - (1 << 64) if word >= 1 << 63 else word)  # two's complement
    assert pack_bits(flags).tolist() == expected


def test_bit_63_is_kept_in_the_sign() -> None:
    flags = torch.zeros(64, dtype=torch.bool)
    flags[63] = True
    assert pack_bits(flags).item() == -(2**63)
    assert bits_at(pack_bits(flags), torch.tensor([63])).item()

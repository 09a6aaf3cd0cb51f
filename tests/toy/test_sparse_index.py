"""The sparse index helpers against the torch calls they replace, on random masks and rows."""

import pytest
import torch

from sae_hacking.toy.sparse_index import compressed_rows, flat_nonzero


@pytest.mark.parametrize("density", [0.0, 0.003, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("shape", [(64, 40), (1000,), (7, 9)], ids=["2d", "1d", "not-whole-words"])
def test_flat_nonzero_equals_nonzero_of_the_flattened_mask(
    density: float, shape: tuple[int, ...]
) -> None:
    mask = torch.rand(shape) < density
    expected = mask.flatten().nonzero().squeeze(1)
    assert torch.equal(flat_nonzero(mask), expected)


def test_compressed_rows_point_at_each_rows_first_entry() -> None:
    rows_K = torch.randint(0, 12, (50,)).sort().values
    starts = compressed_rows(rows_K, 15)
    assert starts.shape == (16,)
    for row in range(15):
        in_row = (rows_K == row).nonzero().squeeze(1)
        assert int(starts[row + 1] - starts[row]) == len(in_row)
        if len(in_row):
            assert int(starts[row]) == int(in_row[0])
    assert int(starts[-1]) == 50

"""Index helpers for sparse codes and sparse batches on one CPU thread.

Both are exact replacements of one torch call (tested in ``tests/toy/test_sparse_index.py``).
"""

import torch
from jaxtyping import Bool, Int
from torch import Tensor

# Bytes of a bool mask read as one 64-bit word.
WORD = 8


def compressed_rows(rows_K: Int[Tensor, " K"], size: int) -> Int[Tensor, " D"]:
    """CSR row pointers (``size + 1``) of sorted row indices: where each row's entries start."""
    return torch._convert_indices_from_coo_to_csr(rows_K, size)  # pyright: ignore[reportPrivateImportUsage, reportAttributeAccessIssue]


def flat_nonzero(mask_D: Bool[Tensor, "*D"]) -> Int[Tensor, " C"]:
    """``mask.flatten().nonzero().squeeze(1)``, faster for a mostly-false mask on the CPU.

    torch's CPU ``nonzero`` costs about 2 ns an element whatever the density; here the mask is
    scanned as 64-bit words (an eighth as many elements), then only the words holding a True.
    Measured on one CPU thread: 0.80 -> 0.37 ms for a 1024 x 352 mask 0.9% true (the sampler's
    firing of loose features), but slower than ``nonzero`` from about 5% true. Sorted ascending.
    """
    flat_D = mask_D.flatten()
    if flat_D.device.type != "cpu" or flat_D.numel() % WORD:
        return flat_D.nonzero().squeeze(1)
    live_W = flat_D.view(torch.int64).ne(0).nonzero().squeeze(1)
    word_C, byte_C = flat_D.view(-1, WORD).index_select(0, live_W).nonzero(as_tuple=True)
    return live_W.index_select(0, word_C) * WORD + byte_C

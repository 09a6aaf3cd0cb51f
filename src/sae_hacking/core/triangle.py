"""Packed strict upper triangles (pairs i < j of E latents) and bit-packed flags.

Pair (i, j), i < j, sits at ``i*E - i*(i+1)/2 + (j - i - 1)``: row i's pairs are contiguous, so a
row of the full symmetric matrix is one slice of row i plus one strided gather down column i.
At E = 65,536 the triangle has 2.1e9 entries: 8.6 GB as int32, 268 MB as bits.
"""

import sys

import torch
from beartype import beartype
from jaxtyping import Bool, Int, jaxtyped
from torch import Tensor

BITS_PER_WORD = 64
# Pack bits a slice at a time so packing a 65k triangle never holds a second full-size copy.
_PACK_SLICE = BITS_PER_WORD * (1 << 20)


def triangle_size(width: int) -> int:
    """Number of pairs i < j among ``width`` latents."""
    return width * (width - 1) // 2


def row_start(i: Int[Tensor, "*D"], width: int) -> Int[Tensor, "*D"]:
    """Packed index of pair (i, i+1), the first pair of row i."""
    return i * width - i * (i + 1) // 2


@jaxtyped(typechecker=beartype)
def pair_index(i_D: Int[Tensor, " D"], j_D: Int[Tensor, " D"], width: int) -> Int[Tensor, " D"]:
    """Packed index of each pair; needs i < j elementwise (int64 arithmetic, safe past 2^31)."""
    i_D, j_D = i_D.long(), j_D.long()
    return row_start(i_D, width) + (j_D - i_D - 1)


@jaxtyped(typechecker=beartype)
def pair_of_index(
    index_D: Int[Tensor, " D"], width: int
) -> tuple[Int[Tensor, " D"], Int[Tensor, " D"]]:
    """The pair (i, j) stored at each packed index (inverse of ``pair_index``)."""
    index_D = index_D.long()
    # Row i holds indices [row_start(i), row_start(i+1)); invert the quadratic, then fix rounding.
    n = 2 * width - 1
    i_D = ((n - torch.sqrt((n * n - 8 * index_D).double())) / 2).floor().long()
    i_D = i_D - (row_start(i_D, width) > index_D).long()
    i_D = i_D + (row_start(i_D + 1, width) <= index_D).long()
    j_D = index_D - row_start(i_D, width) + i_D + 1
    return i_D, j_D


@jaxtyped(typechecker=beartype)
def triangle_row(counts_P: Int[Tensor, " P"], row: int, width: int) -> Int[Tensor, " E"]:
    """Row ``row`` of the symmetric matrix the triangle packs, with 0 on the diagonal."""
    device = counts_P.device
    out_E = torch.zeros(width, dtype=counts_P.dtype, device=device)
    above = torch.arange(row, device=device)
    out_E[:row] = counts_P[row_start(above, width) + (row - above - 1)]
    start = row * width - row * (row + 1) // 2
    out_E[row + 1 :] = counts_P[start : start + width - row - 1]
    return out_E


@jaxtyped(typechecker=beartype)
def pack_bits(flags_P: Bool[Tensor, " P"]) -> Int[Tensor, " W"]:
    """Pack flags into int64 words, flag p at bit p % 64 of word p // 64 (the tail padded with 0).

    Eight flags become one byte, and eight bytes one little-endian word, so a slice costs about
    two bytes per flag of scratch (an int64 product per flag cost sixteen).
    """
    if sys.byteorder != "little":
        raise NotImplementedError("pack_bits writes bytes into little-endian words")
    n_words = -(-flags_P.shape[0] // BITS_PER_WORD)
    words_W = torch.zeros(n_words, dtype=torch.int64, device=flags_P.device)
    byte_W = words_W.view(torch.uint8)
    shifts = torch.arange(8, dtype=torch.uint8, device=flags_P.device)
    for start in range(0, flags_P.shape[0], _PACK_SLICE):
        part = flags_P[start : start + _PACK_SLICE]
        pad = (-part.shape[0]) % 8
        if pad:
            part = torch.cat([part, part.new_zeros(pad)])
        # Distinct bits never carry, so the sum is their OR.
        packed = (part.view(-1, 8).view(torch.uint8) << shifts).sum(dim=1, dtype=torch.uint8)
        first = start // 8
        byte_W[first : first + packed.shape[0]] = packed
    return words_W


@jaxtyped(typechecker=beartype)
def unpack_bits(words_W: Int[Tensor, " W"], n_flags: int) -> Bool[Tensor, " P"]:
    """The flags ``pack_bits`` packed (the first ``n_flags``)."""
    shifts = torch.arange(BITS_PER_WORD, device=words_W.device)
    bits = (words_W[:, None] >> shifts) & 1
    return bits.reshape(-1)[:n_flags].bool()


@jaxtyped(typechecker=beartype)
def bits_at(words_W: Int[Tensor, " W"], index_D: Int[Tensor, " D"]) -> Bool[Tensor, " D"]:
    """The packed flags at the given indices, without unpacking the rest."""
    index_D = index_D.long()
    return ((words_W[index_D // BITS_PER_WORD] >> (index_D % BITS_PER_WORD)) & 1).bool()

"""How many distinct tokens each latent fired on, from a fixed-size bitmap per latent.

A parent latent ("starts with S") fires on many distinct tokens, an absorber ("snake") on one or a
few, whatever their firing counts (under Zipf an absorbing word can fire more often than its
letter). Each latent keeps ``TOKEN_BITS`` bits; a firing on token id ``t`` sets bit
``token_bit(t)``, a fixed multiplicative hash. The union of two bitmaps is their OR, so the bitmap
is exact across checkpoints, ranks and merged runs. Linear counting (Whang et al. 1990) estimates
the distinct tokens behind a bitmap with ``z`` of its ``m`` bits zero as ``-m ln(z / m)``: within a
few percent up to about ``m`` distinct tokens, and still monotone (so still ranks generality) far
beyond; a full bitmap is read as ``z = 1`` (``m ln m``, about 7,100 for 1,024 bits).
"""

import math

import torch
from beartype import beartype
from jaxtyping import Float, Int, UInt8, jaxtyped
from torch import Tensor

TOKEN_BITS = 1024
# Knuth's multiplicative hash: the top 10 of the 32 low bits of ``id * HASH_MULTIPLIER``.
HASH_MULTIPLIER = 2654435761
_SHIFT = 32 - int(math.log2(TOKEN_BITS))


def token_bits_layout() -> dict[str, object]:
    """What a saved bitmap means, written to the manifest beside it."""
    return {"bits": TOKEN_BITS, "hash": f"((id * {HASH_MULTIPLIER}) mod 2^32) >> {_SHIFT}"}


def token_bit(token_ids_J: Int[Tensor, " J"]) -> Int[Tensor, " J"]:
    """The bit of each token id.

    Called per batch by ``add_token_bits_``, so undecorated, as ``histogram_bins`` is: one
    jaxtyped wrapper per batch is enough; pytest still checks the shapes.
    """
    return ((token_ids_J.long() * HASH_MULTIPLIER) & 0xFFFFFFFF) >> _SHIFT


@jaxtyped(typechecker=beartype)
def add_token_bits_(
    bits_ED: UInt8[Tensor, "E D"], latent_J: Int[Tensor, " J"], token_ids_J: Int[Tensor, " J"]
) -> None:
    """Set latent ``latent_J[j]``'s bit of token ``token_ids_J[j]`` for every firing j (D: bits)."""
    index_J = latent_J.to(bits_ED.device) * TOKEN_BITS + token_bit(token_ids_J.to(bits_ED.device))
    bits_ED.view(-1)[index_J] = 1


@jaxtyped(typechecker=beartype)
def distinct_tokens(bits_ED: UInt8[Tensor, "E D"]) -> Float[Tensor, " E"]:
    """Each latent's linear-counting estimate of the distinct tokens it fired on (0 if none)."""
    m = bits_ED.shape[1]
    zero_E = (m - bits_ED.sum(dim=1, dtype=torch.int64)).clamp_min(1).double()
    return (-m * torch.log(zero_E / m)).float()

"""Exact co-occurrence counting: which SAE latents fire together on the same token.

Counts are integers accumulated in place on the counts' device. Pairs go into a packed upper
triangle (see core/triangle.py) by a pair scatter over the active entries only: each token adds 1
at the packed index of every pair of its active latents, so work grows with L0^2 per token rather
than with E^2 per prompt as in a dense matmul, and silent or padded tokens cost nothing.
Measured choices are in benchmarks/cooccurrence.py.
"""

import itertools

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

# Bounds the index buffers of one scatter (16M pairs: 64 MB of int32 indices per buffer).
DEFAULT_MAX_PAIRS = 1 << 24
# Above this many bytes of counts, pairs are scattered row by row (latent-major) rather than token
# by token: at E = 16k (537 MB of int32) that made the scatter ~1.4x faster on one CPU thread by
# keeping each row's few hundred KB in cache; at E = 4096 (33 MB) token order was faster.
LATENT_MAJOR_BYTES = 1 << 26
_INT32_MAX = 2**31 - 1
_FLAGS_PER_WORD = 8  # bool flags are bytes; an int64 view sees 8 of them at once
# Above 1 in this many words holding a flag, the second scan is no longer small (measured on one
# thread: the two scans won from ~2% density down, lost 1.5x at 4%).
_DENSE_WORDS = 4


@jaxtyped(typechecker=beartype)
def active_latents(
    acts_BSE: Float[Tensor, "B S E"], counted_BS: Bool[Tensor, "B S"]
) -> Bool[Tensor, "T E"]:
    """Which latents fire (activation > 0) on each counted token, tokens flattened in order."""
    return (acts_BSE > 0)[counted_BS]


@jaxtyped(typechecker=beartype)
def active_entries(active_TE: Bool[Tensor, "T E"]) -> tuple[Int[Tensor, " D"], Int[Tensor, " D"]]:
    """Token and latent of every active entry, in row-major order (latents ascending per token).

    A sparse nonzero: one scan over int64 words (8 flags each), then a scan of only the words that
    hold a flag. At 0.5% density this ran 2-3x faster than ``nonzero`` on the bool tensor (which
    cost more than the whole pair scatter at E = 4096), and 3x at E = 16k.
    """
    pad = (-active_TE.shape[1]) % _FLAGS_PER_WORD
    if pad:
        active_TE = torch.nn.functional.pad(active_TE, (0, pad))
    elif not active_TE.is_contiguous() or active_TE.storage_offset() % _FLAGS_PER_WORD:
        # The int64 view needs whole, aligned words.
        active_TE = active_TE.clone(memory_format=torch.contiguous_format)
    words_per_token = active_TE.shape[1] // _FLAGS_PER_WORD
    words = active_TE.view(torch.int64)
    if int(torch.count_nonzero(words)) * _DENSE_WORDS > words.numel():
        # Most words hold a flag (e.g. L0 22 of 512 latents): a plain nonzero is cheaper there.
        token_D, latent_D = active_TE.nonzero(as_tuple=True)
        return token_D, latent_D
    word_token, word_column = words.nonzero(as_tuple=True)
    word_flags = active_TE.view(torch.uint8).view(-1, _FLAGS_PER_WORD)
    word_flags = word_flags.index_select(0, word_token * words_per_token + word_column)
    hit_D = word_flags.reshape(-1).nonzero().squeeze(1)
    word_D = hit_D // _FLAGS_PER_WORD
    latent_D = word_column.index_select(0, word_D) * _FLAGS_PER_WORD + hit_D % _FLAGS_PER_WORD
    return word_token.index_select(0, word_D), latent_D


def _scatter_pairs_(
    counts_P: Tensor,
    row_base_D: Tensor,
    latent_D: Tensor,
    first_D: Tensor,
    partners_D: Tensor,
) -> None:
    """Add 1 at pair (latent[f], latent[f + 1 + k]) for each listed entry f and k < its partners.

    ``latent_D`` lists every active entry, token after token, latents ascending within a token, and
    ``row_base_D`` each entry's term of the packed index; ``first_D`` picks the entries whose pairs
    to add, in the order to add them, and ``partners_D`` says how many later entries of the same
    token each one pairs with.
    """
    n_pairs = int(partners_D.sum())
    if n_pairs == 0:
        return
    index_dtype = latent_D.dtype
    # Pair q of entry f is (f, f + 1 + q - start(f)): fold f + 1 - start(f) into one shift.
    shift_D = (first_D + 1 - (partners_D.cumsum(0) - partners_D)).to(index_dtype)
    owner_Q = torch.repeat_interleave(partners_D.to(index_dtype), output_size=n_pairs)
    second_Q = torch.arange(n_pairs, dtype=index_dtype, device=counts_P.device)
    second_Q += shift_D.index_select(0, owner_Q)
    index_Q = row_base_D.index_select(0, first_D).index_select(0, owner_Q)
    index_Q += latent_D.index_select(0, second_Q)
    one = torch.ones(1, dtype=counts_P.dtype, device=counts_P.device)
    counts_P.index_add_(0, index_Q, one.expand(n_pairs))


def _chunks(partners_D: Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Entry ranges holding about ``max_pairs`` pairs each (at most one entry's partners more)."""
    total = int(partners_D.sum())
    if total <= max_pairs:
        return [(0, partners_D.shape[0])]
    start_D = partners_D.cumsum(0) - partners_D
    marks = torch.arange(max_pairs, total, max_pairs, device=partners_D.device)
    bounds = [0, *torch.searchsorted(start_D, marks).tolist(), partners_D.shape[0]]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


@jaxtyped(typechecker=beartype)
def add_counts_(
    counts_P: Int[Tensor, " P"],
    firing_E: Int[Tensor, " E"],
    active_TE: Bool[Tensor, "T E"],
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> None:
    """Add 1 to ``counts_P`` at every pair (i < j) of latents active on the same token, and each
    latent's active tokens to ``firing_E``."""
    token_D, latent_D = active_entries(active_TE)
    add_entry_counts_(counts_P, firing_E, token_D, latent_D, active_TE.shape[0], max_pairs)


@jaxtyped(typechecker=beartype)
def add_entry_counts_(
    counts_P: Int[Tensor, " P"],
    firing_E: Int[Tensor, " E"],
    token_D: Int[Tensor, " D"],
    latent_D: Int[Tensor, " D"],
    n_tokens: int,
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> None:
    """``add_counts_`` from the active entries (token, latent) of ``n_tokens`` tokens, listed in
    row-major order as ``active_entries`` gives them (or any subset of those, in the same order)."""
    width = firing_E.shape[0]
    if counts_P.shape[0] != width * (width - 1) // 2:
        raise ValueError(f"counts hold {counts_P.shape[0]} pairs, not those of {width} latents")
    firing_E += torch.bincount(latent_D, minlength=width)
    if latent_D.shape[0] == 0:
        return
    token_end_T = torch.bincount(token_D, minlength=n_tokens).cumsum(0)
    entry_D = torch.arange(latent_D.shape[0], device=latent_D.device)
    partners_D = token_end_T.index_select(0, token_D) - entry_D - 1
    # Pair (i, j) sits at row_start(i) + j - i - 1: fold what depends on i into one term.
    row_base_D = latent_D * width - (latent_D * (latent_D + 1) >> 1) - latent_D - 1
    # int32 indices halve the memory traffic of the scatter; they fit up to E = 65,536.
    index_dtype = torch.int32 if counts_P.shape[0] <= _INT32_MAX else torch.int64
    first_D = entry_D
    if counts_P.shape[0] * counts_P.element_size() > LATENT_MAJOR_BYTES:
        first_D = torch.sort(latent_D, stable=True).indices
        partners_D = partners_D.index_select(0, first_D)
    row_base_D, latent_D = row_base_D.to(index_dtype), latent_D.to(index_dtype)
    for start, end in _chunks(partners_D, max_pairs):
        _scatter_pairs_(counts_P, row_base_D, latent_D, first_D[start:end], partners_D[start:end])


@jaxtyped(typechecker=beartype)
def add_row_counts_(
    counts_RE: Int[Tensor, "R E"],
    firing_E: Int[Tensor, " E"],
    active_TE: Bool[Tensor, "T E"],
    rows_R: Int[Tensor, " R"],
) -> None:
    """For each selected latent r and every latent e, add the tokens where both fire (e = r: r's
    firings); add each latent's active tokens to ``firing_E``."""
    firing_E += torch.bincount(active_entries(active_TE)[1], minlength=active_TE.shape[1])
    # A float32 product is exact for integer sums below 2^24; keep each chunk's tokens under that.
    step = 1 << 23
    for start in range(0, active_TE.shape[0], step):
        chunk_TE = active_TE[start : start + step].float()
        together_RE = chunk_TE[:, rows_R].T @ chunk_TE
        counts_RE += together_RE.round().to(counts_RE.dtype)

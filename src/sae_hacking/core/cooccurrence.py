"""Exact co-occurrence counting: which SAE latents fire together on the same token.

Counts are integers accumulated in place on the counts' device. Pairs go into a packed upper
triangle (see core/triangle.py) by a per-token pair scatter: each token adds 1 at the packed
index of every pair of its active latents, so work grows with L0^2 per token rather than with
E^2 per prompt as in a dense matmul (see benchmarks/cooccurrence.py).
"""

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.triangle import pair_index

# Bounds the int64 index buffers of one scatter (16M pairs = 128 MB per buffer).
DEFAULT_MAX_PAIRS = 1 << 24


@jaxtyped(typechecker=beartype)
def active_latents(
    acts_BSE: Float[Tensor, "B S E"], counted_BS: Bool[Tensor, "B S"]
) -> Bool[Tensor, "T E"]:
    """Which latents fire (activation > 0) on each counted token, tokens flattened in order."""
    return (acts_BSE > 0)[counted_BS]


def _pairs_of_tokens(active_TE: Tensor) -> tuple[Tensor, Tensor]:
    """Latent ids (i, j), i < j, of every pair active together on some token (one entry per token)."""
    token_N, latent_N = active_TE.nonzero(as_tuple=True)  # row-major: sorted by token, then latent
    per_token_T = active_TE.sum(dim=1)
    group_start_T = per_token_T.cumsum(0) - per_token_T
    rank_N = torch.arange(latent_N.shape[0], device=latent_N.device) - group_start_T[token_N]
    # Entry n pairs with the later entries of its token: per_token - 1 - rank of them.
    partners_N = per_token_T[token_N] - 1 - rank_N
    first_Q = torch.repeat_interleave(
        torch.arange(latent_N.shape[0], device=latent_N.device), partners_N
    )
    partner_start_N = partners_N.cumsum(0) - partners_N
    offset_Q = torch.arange(first_Q.shape[0], device=first_Q.device) - partner_start_N[first_Q]
    return latent_N[first_Q], latent_N[first_Q + 1 + offset_Q]


def _token_chunks(active_TE: Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Token ranges whose pairs number at most ``max_pairs`` (a single token may exceed it)."""
    per_token_T = active_TE.sum(dim=1)
    pairs_T = per_token_T * (per_token_T - 1) // 2
    ends = torch.cumsum(pairs_T, 0).cpu().tolist()
    chunks: list[tuple[int, int]] = []
    start, base = 0, 0
    for t, cumulative in enumerate(ends):
        if cumulative - base > max_pairs and t > start:
            chunks.append((start, t))
            start, base = t, ends[t - 1]
    if start < len(ends):
        chunks.append((start, len(ends)))
    return chunks


@jaxtyped(typechecker=beartype)
def add_pair_counts_(
    counts_P: Int[Tensor, " P"], active_TE: Bool[Tensor, "T E"], max_pairs: int = DEFAULT_MAX_PAIRS
) -> None:
    """Add 1 to ``counts_P`` at every pair (i < j) of latents active on the same token."""
    width = active_TE.shape[1]
    for start, end in _token_chunks(active_TE, max_pairs):
        i_Q, j_Q = _pairs_of_tokens(active_TE[start:end])
        index_Q = pair_index(i_Q, j_Q, width)
        counts_P.index_add_(0, index_Q, torch.ones_like(index_Q, dtype=counts_P.dtype))


@jaxtyped(typechecker=beartype)
def add_row_counts_(
    counts_RE: Int[Tensor, "R E"], active_TE: Bool[Tensor, "T E"], rows_R: Int[Tensor, " R"]
) -> None:
    """Add, for each selected latent r and every latent e, the tokens where both fire (e = r: r's firings)."""
    # A float32 product is exact for integer sums below 2^24; keep each chunk's tokens under that.
    step = 1 << 23
    for start in range(0, active_TE.shape[0], step):
        chunk_TE = active_TE[start : start + step].float()
        together_RE = chunk_TE[:, rows_R].T @ chunk_TE
        counts_RE += together_RE.round().to(counts_RE.dtype)


@jaxtyped(typechecker=beartype)
def add_firing_counts_(firing_E: Int[Tensor, " E"], active_TE: Bool[Tensor, "T E"]) -> None:
    """Add each latent's number of active tokens."""
    firing_E += active_TE.sum(dim=0, dtype=firing_E.dtype)

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

# Bounds the int64 index buffers of one scatter (16M pairs = 128 MB per buffer).
DEFAULT_MAX_PAIRS = 1 << 24


@jaxtyped(typechecker=beartype)
def active_latents(
    acts_BSE: Float[Tensor, "B S E"], counted_BS: Bool[Tensor, "B S"]
) -> Bool[Tensor, "T E"]:
    """Which latents fire (activation > 0) on each counted token, tokens flattened in order."""
    return (acts_BSE > 0)[counted_BS]


def _packed_pairs(latent_N: Tensor, per_token_T: Tensor, width: int) -> Tensor:
    """Packed index of every pair (i < j) of active latents on the same token.

    ``latent_N`` lists each token's active latents in ascending order, token after token;
    ``per_token_T`` says how many belong to each token.
    """
    device = latent_N.device
    group_start_T = per_token_T.cumsum(0) - per_token_T
    entry_N = torch.arange(latent_N.shape[0], device=device)
    token_N = torch.repeat_interleave(
        torch.arange(per_token_T.shape[0], device=device),
        per_token_T,
        output_size=latent_N.shape[0],
    )
    # Entry n pairs with the later entries of its token: per_token - 1 - (its rank in the token).
    partners_N = per_token_T[token_N] - 1 - (entry_N - group_start_T[token_N])
    # Pair q of entry n is (latent_N[n], latent_N[n + 1 + q - first_pair_of_n]); fold what depends
    # only on n into two per-entry terms, so each pair costs one gather and two adds.
    shift_N = entry_N + 1 - (partners_N.cumsum(0) - partners_N)
    row_base_N = latent_N * width - latent_N * (latent_N + 1) // 2 - latent_N - 1
    n_pairs = int(partners_N.sum())
    second_Q = torch.arange(n_pairs, device=device) + torch.repeat_interleave(
        shift_N, partners_N, output_size=n_pairs
    )
    return torch.repeat_interleave(row_base_N, partners_N, output_size=n_pairs) + latent_N[second_Q]


def _token_chunks(per_token_T: Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Token ranges whose pairs number at most ``max_pairs`` (a single token may exceed it)."""
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
def add_counts_(
    counts_P: Int[Tensor, " P"],
    firing_E: Int[Tensor, " E"],
    active_TE: Bool[Tensor, "T E"],
    max_pairs: int = DEFAULT_MAX_PAIRS,
) -> None:
    """Add 1 to ``counts_P`` at every pair (i < j) of latents active on the same token, and each
    latent's active tokens to ``firing_E``."""
    # One nonzero, then integer work on the active entries only: reductions over the dense
    # boolean T x E tensor cost more than the whole pair scatter (measured on CPU at E = 16k).
    token_N, latent_N = active_TE.nonzero(as_tuple=True)  # row-major: by token, then latent
    width = active_TE.shape[1]
    firing_E += torch.bincount(latent_N, minlength=width).to(firing_E.dtype)
    per_token_T = torch.bincount(token_N, minlength=active_TE.shape[0])
    entry_end_T = per_token_T.cumsum(0).tolist()
    for start, end in _token_chunks(per_token_T, max_pairs):
        first = entry_end_T[start - 1] if start else 0
        index_Q = _packed_pairs(
            latent_N[first : entry_end_T[end - 1]], per_token_T[start:end], width
        )
        counts_P.index_add_(0, index_Q, torch.ones_like(index_Q, dtype=counts_P.dtype))


@jaxtyped(typechecker=beartype)
def add_row_counts_(
    counts_RE: Int[Tensor, "R E"],
    firing_E: Int[Tensor, " E"],
    active_TE: Bool[Tensor, "T E"],
    rows_R: Int[Tensor, " R"],
) -> None:
    """For each selected latent r and every latent e, add the tokens where both fire (e = r: r's
    firings); add each latent's active tokens to ``firing_E``."""
    firing_E += torch.bincount(
        active_TE.nonzero(as_tuple=True)[1], minlength=active_TE.shape[1]
    ).to(firing_E.dtype)
    # A float32 product is exact for integer sums below 2^24; keep each chunk's tokens under that.
    step = 1 << 23
    for start in range(0, active_TE.shape[0], step):
        chunk_TE = active_TE[start : start + step].float()
        together_RE = chunk_TE[:, rows_R].T @ chunk_TE
        counts_RE += together_RE.round().to(counts_RE.dtype)

"""Blocked pair search: ablator latents with similar effects that (almost) never co-occur.

Rows are effect vectors of ablated latents, sorted by latent id, so row order is latent order and
"each pair once, i < j" is the upper triangle of the row-by-row cosine matrix. The matrix is never
built: blocks of rows are compared with one matrix product each, and only the best ``top_n`` pairs
that pass both thresholds are kept.

Default similarity is the cosine of the raw effects, not of their sign pattern (the original's
default). A sign pattern gives a reader latent moved by 1e-6 the same weight as one moved by 10,
so float noise and tiny indirect effects dominate it; the raw cosine weighs latents by how much
the ablation moved them. ``sign=True`` reproduces the original.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.similarity import unit_rows

CooccurrenceLookup = Callable[[Tensor, Tensor], Tensor]
"""``(first_P, second_P) -> counts_P``: co-occurrence counts of latent pairs (first < second)."""


@dataclass(frozen=True)
class Pairs:
    """Latent pairs, best cosine first."""

    first_P: Int[Tensor, " P"]
    second_P: Int[Tensor, " P"]
    cosine_P: Float[Tensor, " P"]
    cooccurrence_P: Int[Tensor, " P"]

    def __len__(self) -> int:
        return int(self.first_P.shape[0])


@dataclass(frozen=True)
class PairSearch:
    """The best pairs, and a histogram of every compared pair's cosine over [-1, 1]."""

    pairs: Pairs
    histogram_D: Int[Tensor, " D"]
    compared: int


@jaxtyped(typechecker=beartype)
def comparable_rows(rows_RE: Float[Tensor, "R E"], sign: bool) -> Float[Tensor, "R E"]:
    """Rows as compared: unit-norm raw effects, or unit-norm sign patterns."""
    rows_RE = rows_RE.float()
    return unit_rows(torch.sign(rows_RE) if sign else rows_RE)


def _empty(device: torch.device) -> Pairs:
    long = torch.zeros(0, dtype=torch.long, device=device)
    return Pairs(long, long.clone(), torch.zeros(0, device=device), long.clone())


def _best(pairs: Pairs, top_n: int) -> Pairs:
    if len(pairs) <= top_n:
        order = pairs.cosine_P.argsort(descending=True, stable=True)
    else:
        order = pairs.cosine_P.topk(top_n).indices
        order = order[pairs.cosine_P[order].argsort(descending=True, stable=True)]
    return Pairs(
        pairs.first_P[order],
        pairs.second_P[order],
        pairs.cosine_P[order],
        pairs.cooccurrence_P[order],
    )


def _concat(a: Pairs, b: Pairs) -> Pairs:
    return Pairs(
        torch.cat([a.first_P, b.first_P]),
        torch.cat([a.second_P, b.second_P]),
        torch.cat([a.cosine_P, b.cosine_P]),
        torch.cat([a.cooccurrence_P, b.cooccurrence_P]),
    )


@jaxtyped(typechecker=beartype)
def find_pairs(
    latents_R: Int[Tensor, " R"],
    load_rows: Callable[[int, int], Tensor],
    cooccurrence: CooccurrenceLookup,
    cosine_threshold: float,
    cooccurrence_threshold: int,
    top_n: int,
    sign: bool = False,
    just_these: Int[Tensor, " D"] | None = None,
    block_rows: int = 4096,
    device: torch.device | None = None,
    bins: int = 100,
) -> PairSearch:
    """The ``top_n`` pairs with cosine >= threshold and co-occurrence <= threshold, each once.

    ``latents_R`` must be sorted and unique; ``load_rows(start, stop)`` returns those rows' effects
    (memory-mapped, so only two blocks are ever in memory). With ``just_these``, only pairs with
    at least one of those latents are searched.
    """
    device = device or torch.device("cpu")
    if latents_R.numel() > 1 and not bool((latents_R[1:] > latents_R[:-1]).all()):
        raise ValueError("latents_R must be sorted and unique")
    n_rows = latents_R.shape[0]
    latents_R = latents_R.to(device)
    best = _empty(device)
    histogram_D = torch.zeros(bins, dtype=torch.long, device=device)
    compared = 0
    starts = list(range(0, n_rows, block_rows))
    in_query_R = torch.ones(n_rows, dtype=torch.bool, device=device)
    if just_these is not None:
        # The restricted rows are the queries, compared against every row; a pair of two query
        # rows is met twice and kept once (from its smaller row).
        in_query_R = torch.isin(latents_R, just_these.to(device))
        query_R = in_query_R.nonzero().squeeze(1)
        query_blocks = [query_R[b : b + block_rows] for b in range(0, query_R.shape[0], block_rows)]
    else:
        query_blocks = [torch.arange(s, min(s + block_rows, n_rows), device=device) for s in starts]
    for query_Q in query_blocks:
        if query_Q.numel() == 0:
            continue
        a_QE = _gather_rows(load_rows, query_Q, sign, device)
        first_start = 0 if just_these is not None else int(query_Q[0])
        for start in starts:
            stop = min(start + block_rows, n_rows)
            if stop <= first_start:
                continue
            b_DE = comparable_rows(load_rows(start, stop).to(device), sign)
            cos_QD = a_QE @ b_DE.T
            row_Q1 = query_Q[:, None]
            col_1D = torch.arange(start, stop, device=device)[None, :]
            if just_these is None:
                keep_QD = col_1D > row_Q1
            else:
                # Each unordered pair once: a query row pairs with every other row, except another
                # query row with a smaller index (that pair was already met the other way round).
                keep_QD = (col_1D != row_Q1) & ~(in_query_R[col_1D] & (col_1D < row_Q1))
            compared_P = cos_QD[keep_QD].clamp(-1.0, 1.0)
            compared += compared_P.numel()
            bin_P = ((compared_P + 1.0) * (bins / 2.0)).long().clamp(max=bins - 1)
            histogram_D += torch.bincount(bin_P, minlength=bins)
            keep_QD &= cos_QD >= cosine_threshold
            q_P, d_P = keep_QD.nonzero(as_tuple=True)
            if q_P.numel() == 0:
                continue
            i_P, j_P = query_Q[q_P], d_P + start
            low_P, high_P = torch.minimum(i_P, j_P), torch.maximum(i_P, j_P)
            first_P, second_P = latents_R[low_P], latents_R[high_P]
            counts_P = cooccurrence(first_P, second_P).to(device=device, dtype=torch.long)
            rare_P = counts_P <= cooccurrence_threshold
            found = Pairs(
                first_P[rare_P], second_P[rare_P], cos_QD[q_P, d_P][rare_P], counts_P[rare_P]
            )
            best = _best(_concat(best, found), top_n)
    return PairSearch(best, histogram_D, compared)


def _gather_rows(
    load_rows: Callable[[int, int], Tensor], rows_Q: Tensor, sign: bool, device: torch.device
) -> Tensor:
    start, stop = int(rows_Q.min()), int(rows_Q.max()) + 1
    if stop - start == rows_Q.numel():
        return comparable_rows(load_rows(start, stop).to(device), sign)
    picked = [load_rows(int(r), int(r) + 1) for r in rows_Q.tolist()]
    return comparable_rows(torch.cat(picked).to(device), sign)

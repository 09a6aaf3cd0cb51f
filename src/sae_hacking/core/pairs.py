"""Blocked pair search: ablator latents with similar effects that (almost) never co-occur.

Rows are effect vectors of ablated latents, sorted by latent id, so row order is latent order and
"each pair once, i < j" is the upper triangle of the row-by-row cosine matrix. The matrix is never
built: blocks of unit rows are compared with one matrix product each; every pair that passes both
thresholds is counted, and only the best ``top_n`` of them are kept.

Screening: the block products run in bfloat16 by default (on CPUs with AMX and on GPUs, 5-6x the
float32 rate: see benchmarks/pair_search.py). Rounding unit rows to bfloat16 and the product
back to bfloat16 moves a cosine by at most about 2^-7, so a pair can only matter if its screened
cosine is within ``SCREEN_MARGIN`` of the bar; those few candidates get their cosine recomputed
in float32 from the unrounded rows, and only exact cosines are compared with the thresholds and
reported. The histogram of all compared pairs bins the screened cosines (bins are 0.02 wide).

Default similarity is the cosine of the raw effects, not of their sign pattern (the original's
default). A sign pattern gives a reader latent moved by 1e-6 the same weight as one moved by 10,
so float noise and tiny indirect effects dominate it; the raw cosine weighs latents by how much
the ablation moved them. ``sign=True`` reproduces the original.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.similarity import unit_rows

CooccurrenceLookup = Callable[[Tensor, Tensor], Tensor]
"""``(first_P, second_P) -> counts_P``: co-occurrence counts of latent pairs (first < second).

A lookup may cap counts above the threshold (e.g. report 1 for "ever co-occurred"): only
whether a count passes the threshold, and the exact count of passing pairs, matter.
"""

# Bound on |screened - exact| cosine for bfloat16 screening, with room to spare: input rounding
# moves a dot of unit rows by <= (2u + u^2) (u = 2^-8), output rounding by <= u.
SCREEN_MARGIN = 2.0**-5
# Candidates whose exact cosine is recomputed at once (their rows gathered: pairs x width floats).
_RECOMPUTE_ELEMENTS = 1 << 24
# Candidate pairs looked up at once: bounds memory when a low threshold lets most pairs through.
_CANDIDATE_PAIRS = 1 << 22


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
    """The best pairs, how many passed both thresholds, and every compared pair's cosine histogram."""

    pairs: Pairs
    histogram_D: Int[Tensor, " D"]
    compared: int
    passed: int


@jaxtyped(typechecker=beartype)
def comparable_rows(rows_RY: Float[Tensor, "R Y"], sign: bool) -> Float[Tensor, "R Y"]:
    """Rows as compared: unit-norm raw effects, or unit-norm sign patterns."""
    rows_RY = rows_RY.float()
    return unit_rows(torch.sign(rows_RY) if sign else rows_RY)


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


class _UnitRows:
    """Unit rows by block, in float32 (exact) and the screening dtype, each block normalized once.

    Blocks are kept when all rows fit in ``max_cached_bytes``; otherwise a block is re-read from
    ``load_rows`` (memory-mapped) each time a query block needs it.
    """

    def __init__(
        self,
        load_rows: Callable[[int, int], Tensor],
        n_rows: int,
        block_rows: int,
        sign: bool,
        device: torch.device,
        screen_dtype: torch.dtype,
        max_cached_bytes: int,
    ) -> None:
        self.load_rows, self.n_rows, self.block_rows = load_rows, n_rows, block_rows
        self.sign, self.device, self.screen_dtype = sign, device, screen_dtype
        self.width: int | None = None
        self.max_cached_bytes = max_cached_bytes
        self._cache: dict[int, tuple[Tensor, Tensor]] = {}

    def block(self, start: int) -> tuple[Tensor, Tensor]:
        if start in self._cache:
            return self._cache[start]
        exact = comparable_rows(
            self.load_rows(start, min(start + self.block_rows, self.n_rows)).to(self.device),
            self.sign,
        )
        screen = exact if self.screen_dtype == torch.float32 else exact.to(self.screen_dtype)
        per_element = 4 + (0 if screen is exact else screen.element_size())
        if self.n_rows * exact.shape[1] * per_element <= self.max_cached_bytes:
            self._cache[start] = (exact, screen)
        return exact, screen

    def gather(self, rows_Q: Tensor) -> tuple[Tensor, Tensor]:
        """Rows at any indices, block by block."""
        parts_exact, parts_screen = [], []
        block_Q = torch.div(rows_Q, self.block_rows, rounding_mode="floor")
        for b in block_Q.unique().tolist():
            exact, screen = self.block(b * self.block_rows)
            local = rows_Q[block_Q == b] - b * self.block_rows
            parts_exact.append(exact[local])
            parts_screen.append(screen[local])
        return torch.cat(parts_exact), torch.cat(parts_screen)


def _add_histogram(histogram_D: Tensor, cos_QD: Tensor, keep_QD: Tensor | None) -> None:
    """Count cosines into equal bins over [-1, 1]; entries outside ``keep_QD`` are not counted.

    Bins are found by casting to uint8 and counted with bincount, several times faster than
    torch.histc on one CPU thread; dropped entries go to a bin past the end.
    """
    bins = histogram_D.shape[0]
    value_QD = cos_QD.clamp(-1.0, 1.0)
    if keep_QD is not None:
        value_QD.masked_fill_(~keep_QD, 1.0 + 3.0 / bins)  # lands in bin bins + 1
    bin_T = value_QD.add_(1.0).mul_(bins / 2.0).to(torch.uint8).reshape(-1)
    counts_D = torch.bincount(bin_T, minlength=bins + 2)
    histogram_D += counts_D[:bins]
    histogram_D[bins - 1] += counts_D[bins]  # cosine exactly 1


def _exact_cosines(a_QY: Tensor, b_DY: Tensor, q_P: Tensor, d_P: Tensor) -> Tensor:
    step = max(1, _RECOMPUTE_ELEMENTS // max(a_QY.shape[1], 1))
    parts = [
        (a_QY[q_P[s : s + step]] * b_DY[d_P[s : s + step]]).sum(dim=1)
        for s in range(0, q_P.shape[0], step)
    ]
    return torch.cat(parts) if parts else a_QY.new_zeros(0)


def _exact_of(
    screened_P: Tensor,
    q_P: Tensor,
    d_P: Tensor,
    a_exact_QY: Tensor,
    b_exact_DY: Tensor,
    margin: float,
    selected_P: Tensor,
) -> Tensor:
    """Exact cosines of the selected candidates (their screened ones when screening is exact)."""
    if not margin:
        return screened_P[selected_P]
    return _exact_cosines(a_exact_QY, b_exact_DY, q_P[selected_P], d_P[selected_P])


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
    screen_dtype: torch.dtype = torch.bfloat16,
    max_cached_bytes: int = 4 << 30,
) -> PairSearch:
    """The ``top_n`` best pairs with cosine >= threshold and co-occurrence <= threshold, each once,
    and how many pairs passed both thresholds.

    ``latents_R`` must be sorted and unique; ``load_rows(start, stop)`` returns those rows' effects
    (memory-mapped). With ``just_these``, only pairs with at least one of those latents are
    searched. Memory: two blocks (block_rows x width x 6 bytes each), or every row when they fit
    in ``max_cached_bytes``.
    """
    device = device or torch.device("cpu")
    if not 1 <= bins < 250:
        raise ValueError("bins must be in [1, 250)")
    if latents_R.numel() > 1 and not bool((latents_R[1:] > latents_R[:-1]).all()):
        raise ValueError("latents_R must be sorted and unique")
    n_rows = latents_R.shape[0]
    latents_R = latents_R.to(device)
    rows = _UnitRows(load_rows, n_rows, block_rows, sign, device, screen_dtype, max_cached_bytes)
    margin = 0.0 if screen_dtype == torch.float32 else SCREEN_MARGIN
    best = _empty(device)
    histogram_D = torch.zeros(bins, dtype=torch.long, device=device)
    compared = passed = 0
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
        if just_these is None:
            a_exact_QY, a_screen_QY = rows.block(int(query_Q[0]))
        else:
            a_exact_QY, a_screen_QY = rows.gather(query_Q)
        first_start = 0 if just_these is not None else int(query_Q[0])
        for start in starts:
            stop = min(start + block_rows, n_rows)
            if stop <= first_start:
                continue
            b_exact_DY, b_screen_DY = rows.block(start)
            cos_QD = (a_screen_QY @ b_screen_DY.T).float()
            row_Q1 = query_Q[:, None]
            col_1D = torch.arange(start, stop, device=device)[None, :]
            keep_QD: Tensor | None = None
            if just_these is not None:
                # Each unordered pair once: a query row pairs with every other row, except another
                # query row with a smaller index (that pair was already met the other way round).
                keep_QD = (col_1D != row_Q1) & ~(in_query_R[col_1D] & (col_1D < row_Q1))
            elif start <= int(query_Q[-1]):
                keep_QD = col_1D > row_Q1  # a block on the diagonal: only its upper triangle
            if keep_QD is None:
                compared += cos_QD.numel()
            elif just_these is None:
                compared += cos_QD.shape[0] * (cos_QD.shape[0] - 1) // 2
            else:
                compared += int(keep_QD.sum())
            _add_histogram(histogram_D, cos_QD, keep_QD)
            if keep_QD is not None:
                cos_QD.masked_fill_(~keep_QD, -3.0)
            # Most rows hold no candidate: find the rows first, then search only those.
            hit_H = (cos_QD.amax(dim=1) >= cosine_threshold - margin).nonzero().squeeze(1)
            step = max(1, _CANDIDATE_PAIRS // max(cos_QD.shape[1], 1))
            for h in range(0, hit_H.numel(), step):
                rows_H = hit_H[h : h + step]
                h_P, d_P = (cos_QD[rows_H] >= cosine_threshold - margin).nonzero(as_tuple=True)
                q_P = rows_H[h_P]
                i_P, j_P = query_Q[q_P], d_P + start
                first_P = latents_R[torch.minimum(i_P, j_P)]
                second_P = latents_R[torch.maximum(i_P, j_P)]
                counts_P = cooccurrence(first_P, second_P).to(device=device, dtype=torch.long)
                rare_P = (counts_P <= cooccurrence_threshold).nonzero().squeeze(1)
                q_P, d_P = q_P[rare_P], d_P[rare_P]
                first_P, second_P, counts_P = first_P[rare_P], second_P[rare_P], counts_P[rare_P]
                screened_P = cos_QD[q_P, d_P]
                exact = partial(_exact_of, screened_P, q_P, d_P, a_exact_QY, b_exact_DY, margin)
                # A screened cosine a margin above the threshold passes for sure; only those
                # near it need their exact cosine to be counted.
                near_P = (screened_P < cosine_threshold + margin).nonzero().squeeze(1)
                passed += screened_P.numel() - near_P.numel()
                passed += int((exact(near_P) >= cosine_threshold).sum())
                # Once top_n pairs are held, a pair must beat the worst of them to be kept.
                bar = cosine_threshold
                if len(best) >= top_n:
                    bar = max(bar, float(best.cosine_P[-1]))
                kept_P = (screened_P >= bar - margin).nonzero().squeeze(1)
                if margin and kept_P.numel() > top_n:
                    # Only pairs within 2 margins of the top_n-th screened cosine can be kept.
                    nth = float(screened_P[kept_P].topk(top_n).values[-1])
                    kept_P = kept_P[screened_P[kept_P] >= nth - 2 * margin]
                cosine_P = exact(kept_P)
                passing_P = kept_P[cosine_P >= cosine_threshold]
                found = Pairs(
                    first_P[passing_P],
                    second_P[passing_P],
                    cosine_P[cosine_P >= cosine_threshold],
                    counts_P[passing_P],
                )
                best = _best(_concat(best, found), top_n)
    return PairSearch(best, histogram_D, compared, passed)

"""Pair search: the original's loop against the blocked matrix-product search, same rows, one run.

The original compared every pair of ablated latents one after another, skipped pairs over the
co-occurrence threshold, appended to a list and re-sorted it after each row. The baseline here
keeps that structure but computes one row's dots with all later rows in a single matrix-vector
product (faster than the original's per-pair ``torch.dot``, so the speed-up shown is a lower
bound). Both use the sign pattern (the original's default) and return the same top pairs.

    uv run benchmarks/pair_search.py [--device cuda] [--rows 4096] [--width 4096]
"""

import argparse
import time

import torch
from torch import Tensor

from sae_hacking.core.pairs import find_pairs
from sae_hacking.core.triangle import pair_index, triangle_size


def original(
    rows_RE: Tensor, latents_R: Tensor, cooc_P: Tensor, width: int, cos_min: float, top_n: int
):
    signs_RE = torch.sign(rows_RE)
    norms_R = signs_RE.norm(dim=1).clamp_min(1e-12)
    found: list[tuple[int, int, float]] = []
    lat = latents_R.tolist()
    for a in range(len(lat) - 1):
        cos_D = (signs_RE[a + 1 :] @ signs_RE[a]) / (norms_R[a + 1 :] * norms_R[a])
        firsts = latents_R[a].expand(len(lat) - a - 1)
        counts_D = cooc_P[pair_index(firsts, latents_R[a + 1 :], width)]
        keep = ((counts_D <= 0) & (cos_D >= cos_min)).nonzero().squeeze(1).tolist()
        values = cos_D.tolist()
        found.extend((lat[a], lat[a + 1 + d], values[d]) for d in keep)
        found.sort(key=lambda item: item[2], reverse=True)
        found = found[:top_n]
    return found


def timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=4096, help="ablated latents")
    parser.add_argument(
        "--width", type=int, default=4096, help="reader SAE width (effect row length)"
    )
    parser.add_argument("--ablator-width", type=int, default=16384)
    parser.add_argument("--block-rows", type=int, default=2048)
    parser.add_argument("--top-n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    latents_R = torch.randperm(args.ablator_width, generator=gen)[: args.rows].sort().values
    # Effects are sparse-ish: most reader latents are untouched by a given ablation.
    rows_RE = torch.randn(args.rows, args.width, generator=gen) * (
        torch.rand(args.rows, args.width, generator=gen) < 0.05
    )
    # Plant absorption-like pairs: every 16th row is a noisy copy of the row after it.
    planted = torch.arange(0, args.rows - 1, 16)
    noise = torch.randn(planted.numel(), args.width, generator=gen) * (
        torch.rand(planted.numel(), args.width, generator=gen) < 0.02
    )
    rows_RE[planted] = rows_RE[planted + 1] + noise
    cooc_P = (torch.rand(triangle_size(args.ablator_width), generator=gen) < 0.7).to(torch.int32)
    rows_RE, latents_R, cooc_P = rows_RE.to(device), latents_R.to(device), cooc_P.to(device)
    w = args.ablator_width

    def lookup(first_P: Tensor, second_P: Tensor) -> Tensor:
        return cooc_P[pair_index(first_P, second_P, w)]

    def blocked():
        return find_pairs(
            latents_R,
            lambda a, b: rows_RE[a:b],
            lookup,
            0.2,
            0,
            args.top_n,
            sign=True,
            block_rows=args.block_rows,
            device=device,
        ).pairs

    blocked()  # warm-up
    ref, t_ref = timed(lambda: original(rows_RE, latents_R, cooc_P, w, 0.2, args.top_n), device)
    fast, t_fast = timed(blocked, device)
    ref_pairs = {(i, j) for i, j, _ in ref}
    fast_pairs = set(zip(fast.first_P.tolist(), fast.second_P.tolist(), strict=True))
    same = len(ref_pairs & fast_pairs)
    max_diff = (
        max(abs(c - f) for (_, _, c), f in zip(ref, fast.cosine_P.tolist(), strict=True))
        if ref
        else 0.0
    )
    print(
        f"device {device}, threads {torch.get_num_threads()}, {args.rows} ablated rows x {args.width} reader "
        f"latents, ablator width {w}, sign patterns, cosine >= 0.2, co-occurrence <= 0, top {args.top_n}"
    )
    print("| search | seconds | speed-up | pairs kept | same pairs as original | max cosine diff |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| original loop (row by row) | {t_ref:.2f} | 1.0x | {len(ref)} | - | - |")
    print(
        f"| blocked, {args.block_rows}-row blocks | {t_fast:.3f} | {t_ref / t_fast:.1f}x | {len(fast)} | "
        f"{same} of {len(ref)} | {max_diff:.1e} |"
    )


if __name__ == "__main__":
    main()

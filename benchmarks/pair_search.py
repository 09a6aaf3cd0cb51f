"""Pair search: the original algorithm against the blocked search, same effects, one run each.

The baseline is the original look_for_pairs.py's search, re-implemented as it ran: a dense
ablator-width x reader-width float32 effect matrix (never-ablated latents are zero rows), rows
normalized once (after ``torch.sign`` unless raw effects are asked for), then for every row a
float32 matrix-vector product with all rows, a dense float32 co-occurrence row compared with the
threshold, ``torch.where``, a Python loop appending each passing pair, and one sort at the end.
It meets every pair twice (and each latent with itself); its pairs are reduced to i < j to
compare. The blocked search reads only ablated rows and the bit-packed "ever co-occurred"
triangle (threshold 0), and keeps the top N (N larger than the pairs found, so both return the
same set).

    uv run benchmarks/pair_search.py [--device cuda]
"""

import argparse

import torch
import torch.nn.functional as F
from timing import timed
from torch import Tensor

from sae_hacking.core.pairs import find_pairs
from sae_hacking.core.triangle import bits_at, pack_bits, pair_index, triangle_size


def original(
    effects_eE: Tensor, cooccurrences_ee: Tensor, cooc_max: int, cos_min: float, sign: bool
) -> list[tuple[int, int, float]]:
    """The original's row loop, line for line in effect (its .cuda() is the ``device`` here)."""
    similar_pairs: list[tuple[int, int, float]] = []
    normalized_eE = F.normalize(effects_eE if not sign else torch.sign(effects_eE), dim=1)
    for i in range(effects_eE.shape[0]):
        if i >= effects_eE.shape[0] - 1:
            continue
        cosines_e = torch.matmul(normalized_eE, normalized_eE[i])
        valid_cooc_e = cooccurrences_ee[i] <= cooc_max
        valid_cos_e = cosines_e >= cos_min
        valid = torch.where(valid_cooc_e & valid_cos_e.cpu())[0]
        if len(valid) == 0:
            continue
        sims = cosines_e[valid].cpu()
        valid = valid.cpu()
        for idx in range(len(valid)):
            similar_pairs.append((i, int(valid[idx]), float(sims[idx])))
    similar_pairs.sort(key=lambda x: x[2], reverse=True)
    return similar_pairs


def make_inputs(ablator_width: int, reader_width: int, ablated: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    latents_R = torch.randperm(ablator_width, generator=gen)[:ablated].sort().values
    # Effects are sparse: an ablation moves few reader latents.
    rows_RE = torch.randn(ablated, reader_width, generator=gen) * (
        torch.rand(ablated, reader_width, generator=gen) < 0.05
    )
    # Plant absorption-like pairs: every 16th row is a noisy copy of the row after it.
    planted = torch.arange(0, ablated - 1, 16)
    noise = torch.randn(planted.numel(), reader_width, generator=gen) * (
        torch.rand(planted.numel(), reader_width, generator=gen) < 0.02
    )
    rows_RE[planted] = rows_RE[planted + 1] + noise
    # 70% of pairs co-occur at least once.
    cooc_ee = (torch.rand(ablator_width, ablator_width, generator=gen) < 0.7).float()
    cooc_ee = torch.triu(cooc_ee, 1)
    cooc_ee = cooc_ee + cooc_ee.T + torch.eye(ablator_width) * 100  # diagonal: firing counts
    return latents_R, rows_RE, cooc_ee


def compare(args, ablator_width: int, ablated: int, sign: bool, device: torch.device) -> str:
    latents_R, rows_RE, cooc_ee = make_inputs(ablator_width, args.reader_width, ablated, seed=0)
    effects_eE = torch.zeros(ablator_width, args.reader_width)
    effects_eE[latents_R] = rows_RE
    upper = torch.triu_indices(ablator_width, ablator_width, 1)
    ever_W = pack_bits(cooc_ee[upper[0], upper[1]] > 0)
    assert ever_W.shape[0] * 64 >= triangle_size(ablator_width)
    effects_eE, cooc_dev = effects_eE.to(device), cooc_ee.to(device)
    rows_RE, latents_R, ever_W = rows_RE.to(device), latents_R.to(device), ever_W.to(device)

    def never_together(first_P: Tensor, second_P: Tensor) -> Tensor:
        return bits_at(ever_W, pair_index(first_P, second_P, ablator_width)).long()

    def blocked():
        return find_pairs(
            latents_R,
            lambda a, b: rows_RE[a:b],
            never_together,
            args.cosine,
            0,
            args.top_n,
            sign=sign,
            block_rows=args.block_rows,
            device=device,
        ).pairs

    blocked()  # warm-up
    ref, t_ref = timed(lambda: original(effects_eE, cooc_dev, 0, args.cosine, sign), device)
    fast, t_fast = timed(blocked, device)
    ref_pairs = {(int(i), int(j)): c for i, j, c in ref if i < j}
    fast_pairs = {
        (int(i), int(j)): c
        for i, j, c in zip(
            fast.first_P.tolist(), fast.second_P.tolist(), fast.cosine_P.tolist(), strict=True
        )
    }
    same = len(ref_pairs.keys() & fast_pairs.keys())
    diff = max(
        (abs(ref_pairs[k] - fast_pairs[k]) for k in ref_pairs.keys() & fast_pairs.keys()),
        default=0.0,
    )
    kind = "sign" if sign else "raw"
    return (
        f"| {ablator_width} | {ablated} | {kind} | {t_ref:.2f} | {t_fast:.3f} | "
        f"{t_ref / t_fast:.1f}x | {len(ref_pairs)} | {len(fast_pairs)} | {same} | {diff:.1e} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reader-width", type=int, default=4096)
    parser.add_argument(
        "--cases",
        default="4096:4096,8192:2048",
        help="ablator width:ablated latents, comma-separated",
    )
    parser.add_argument("--cosine", type=float, default=0.2)
    parser.add_argument("--block-rows", type=int, default=2048)
    parser.add_argument("--top-n", type=int, default=100_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    print(
        f"device {device}, threads {torch.get_num_threads()}, reader width {args.reader_width}, "
        f"cosine >= {args.cosine}, co-occurrence <= 0, blocks of {args.block_rows} rows, "
        f"bfloat16 screening with float32 recompute"
    )
    print(
        "| ablator width | ablated | effects | original s | blocked s | speed-up | original pairs (i<j) "
        "| blocked pairs | same | max cosine diff |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for case in args.cases.split(","):
        width, ablated = (int(x) for x in case.split(":"))
        for sign in (True, False):
            print(compare(args, width, ablated, sign, device), flush=True)


if __name__ == "__main__":
    main()

"""The absorption hunt's three steps on a GPU at Gemma-2-2b and Gemma Scope 65k shapes, each
against the original algorithm in the same run, with peak GPU and host memory per step.

No hub is reachable, so weights are random: Gemma-2-2b's real configuration (transformer-lens's
preset, read offline) with random weights, and random JumpReLU SAEs of 65,536 latents calibrated
to Gemma Scope's L0. Steps:

* co-occurrence: the counting step on firing masks of width 65,536 at L0 64 (log-uniform latent
  rates): the original's per-prompt sparse matmul into a dense float32 matrix
  (``cooccurrence.py``'s baseline) against the pair scatter into an int32 triangle. The model's
  forward is the same for both and not timed here.
* selective ablation at K = 100: the original's loop (K + 2 full forwards of the whole 26-layer
  model per prompt, ``ablation.py``'s baseline) against the batched suffix forward from layer 20's
  ablator to layer 21's reader, several prompts per batch; the original is timed on fewer
  prompts and compared per prompt.
* pair search at 65,536 ablated x 65,536 reader latents: the original's row loop (a
  matrix-vector product with the whole dense effect matrix per row; co-occurrence rows on the
  host, as the original kept them) timed on a sample of rows and extrapolated to all rows (its
  rows cost the same), against the blocked search over every row.

    python benchmarks/gpu_gemma_shapes.py [--device cuda] [--steps cooccurrence,ablation,pairs]
    python benchmarks/gpu_gemma_shapes.py --smoke --device cpu    # tiny sizes, checks the code
"""

import argparse
import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ablation_reference import reference_effects
from cooccurrence import original_counting, toolkit_counting
from transformer_lens import HookedTransformerConfig

from sae_hacking.ablation.batched import batched_ablation_effects
from sae_hacking.ablation.sites import plan_for
from sae_hacking.core.pairs import find_pairs
from sae_hacking.core.triangle import bits_at, pair_index, row_start, triangle_size
from sae_hacking.llm.models import model_config, random_model, tiny_config
from sae_hacking.llm.saes import random_sae

GOALS = {"co-occurrence": 40.0, "selective ablation": 100.0, "pair search": 20.0}


@dataclass(frozen=True)
class Sizes:
    """Everything that scales; ``--smoke`` swaps in tiny ones."""

    width: int = 65536
    cooc_prompts: int = 256
    seq: int = 128
    l0: float = 64.0
    ablation_layers: int = 26  # the whole model: the original runs every layer per latent
    ablator_layer: int = 20
    k: int = 100
    original_prompts: int = 2
    batched_prompts: int = 32
    prompts_per_batch: int = 16
    max_batch_ablations: int = 512
    reader_width: int = 65536
    original_rows: int = 128
    block_rows: int = 4096


SMOKE = Sizes(
    width=512,
    cooc_prompts=4,
    seq=16,
    l0=8.0,
    ablation_layers=4,
    ablator_layer=1,
    k=4,
    original_prompts=2,
    batched_prompts=4,
    prompts_per_batch=2,
    max_batch_ablations=8,
    reader_width=512,
    original_rows=16,
    block_rows=128,
)


@dataclass
class Measured:
    step: str
    shape: str
    original_seconds: float
    ours_seconds: float
    unit: str  # what one "second" above covers, e.g. "per prompt"
    check: str
    peak_gpu_bytes: int = 0
    peak_host_bytes: int = 0

    @property
    def speedup(self) -> float:
        return self.original_seconds / max(self.ours_seconds, 1e-12)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_of(work: Callable[[], Any], device: torch.device, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        work()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best


class Peaks:
    """Peak GPU memory (allocator) and host resident memory while the block runs."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.gpu = 0
        self.host = 0

    def __enter__(self) -> "Peaks":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        with contextlib.suppress(OSError):  # Linux: reset the peak-RSS mark to the current RSS
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.gpu = torch.cuda.max_memory_allocated(self.device)
        self.host = host_peak_bytes()


def host_peak_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cooccurrence_step(sizes: Sizes, device: torch.device) -> Measured:
    width = sizes.width
    generator = torch.Generator().manual_seed(0)
    # cooccurrence.py's random_active, drawn on the device a prompt at a time (no 4-byte T x E
    # temporary; drawing 2^31 numbers on the host would take longer than the step).
    rates_E = 10.0 ** (-3.0 * torch.rand(width, generator=generator))
    rates_E = (rates_E * (sizes.l0 / rates_E.sum())).clamp(max=0.5).to(device)
    on_device = torch.Generator(device).manual_seed(0)
    active_BSE = torch.empty(sizes.cooc_prompts, sizes.seq, width, dtype=torch.bool, device=device)
    for b in range(sizes.cooc_prompts):
        draws_SE = torch.rand(sizes.seq, width, generator=on_device, device=device)
        active_BSE[b] = draws_SE < rates_E
    tokens = sizes.cooc_prompts * sizes.seq
    with Peaks(device) as peaks:
        dense_EE = original_counting(active_BSE)
        counts_P = toolkit_counting(active_BSE)
        # Exact check on sampled rows (the whole upper triangle would need 2^31 index pairs).
        rows = torch.randperm(width - 1, generator=generator)[:32].tolist()
        for i in rows:
            start = int(row_start(torch.tensor(i), width))
            packed = counts_P[start : start + width - i - 1].long()
            assert torch.equal(dense_EE[i, i + 1 :].long(), packed), f"row {i} differs"
        del dense_EE, counts_P
        t_original = seconds_of(lambda: original_counting(active_BSE), device, repeats=2)
        t_ours = seconds_of(lambda: toolkit_counting(active_BSE), device, repeats=3)
    l0 = float(active_BSE.sum(-1).float().mean())
    return Measured(
        "co-occurrence",
        f"E {width:,}, {tokens:,} tokens, L0 {l0:.0f}",
        t_original / tokens * 1e6,
        t_ours / tokens * 1e6,
        "µs per token",
        f"32 rows identical; {tokens / t_ours:,.0f} tokens/s (original {tokens / t_original:,.0f})",
        peaks.gpu,
        peaks.host,
    )


def gemma_config(sizes: Sizes, device: torch.device, smoke: bool) -> HookedTransformerConfig:
    base = tiny_config() if smoke else model_config("random:google/gemma-2-2b")
    fields = base.to_dict()
    fields.update(
        n_layers=sizes.ablation_layers,
        attn_types=(base.attn_types or [])[: sizes.ablation_layers],
        device=str(device),
        dtype=torch.float32,
    )
    return HookedTransformerConfig.from_dict(fields)


def random_tokens(prompts: int, seq: int, vocab: int, seed: int, device: torch.device):
    generator = torch.Generator().manual_seed(seed)
    tokens_BS = torch.randint(3, vocab, (prompts, seq), generator=generator)
    tokens_BS[:, 0] = 2  # Gemma's BOS
    mask_BS = torch.ones_like(tokens_BS)
    counted_BS = torch.ones_like(tokens_BS, dtype=torch.bool)
    counted_BS[:, 0] = False
    return tokens_BS.to(device), mask_BS.to(device), counted_BS.to(device)


@torch.no_grad()
def ablation_step(sizes: Sizes, device: torch.device, smoke: bool) -> Measured:
    cfg = gemma_config(sizes, device, smoke)
    model = random_model(cfg, device, torch.float32)
    a_hook = f"blocks.{sizes.ablator_layer}.hook_resid_post"
    r_hook = f"blocks.{sizes.ablator_layer + 1}.hook_resid_post"
    sample_tokens, _, _ = random_tokens(4, sizes.seq, cfg.d_vocab, 99, device)
    _, cache = model.run_with_cache(
        sample_tokens, names_filter=[a_hook, r_hook], stop_at_layer=sizes.ablator_layer + 2
    )
    saes = []
    for hook in (a_hook, r_hook):
        sample_TM = cache[hook][:, 1:].reshape(-1, cfg.d_model).float().cpu()
        sae = random_sae(
            "jumprelu",
            sample_TM,
            sizes.reader_width,
            hook,
            torch.Generator().manual_seed(1),
            sizes.l0,
        )
        saes.append(sae.to(device))
    ablator, reader = saes
    plan = plan_for(a_hook, r_hook)
    tokens_BS, mask_BS, counted_BS = random_tokens(
        sizes.batched_prompts, sizes.seq, cfg.d_vocab, 0, device
    )
    everything_E = torch.ones(ablator.cfg.d_sae, dtype=torch.bool)

    def ours(prompts: int, per_batch: int) -> dict[int, torch.Tensor]:
        effects: dict[int, torch.Tensor] = {}
        for start in range(0, prompts, per_batch):
            part = slice(start, min(start + per_batch, prompts))
            _, chunks = batched_ablation_effects(
                model,
                plan,
                ablator,
                reader,
                tokens_BS[part],
                mask_BS[part],
                counted_BS[part],
                sizes.k,
                everything_E,
                torch.zeros(0, dtype=torch.long),
                sizes.max_batch_ablations,
            )
            for chunk in chunks:
                for latent, row in zip(chunk.latents_K.tolist(), chunk.effects_KY, strict=True):
                    effects[latent] = effects.get(latent, 0) + row
        return effects

    n = sizes.original_prompts
    with Peaks(device) as peaks:
        ours(sizes.prompts_per_batch, sizes.prompts_per_batch)  # warm-up
        t_ours = (
            seconds_of(lambda: ours(sizes.batched_prompts, sizes.prompts_per_batch), device)
            / sizes.batched_prompts
        )
        t_original = (
            seconds_of(
                lambda: reference_effects(
                    model, ablator, reader, tokens_BS[:n], mask_BS[:n], counted_BS[:n], sizes.k
                ),
                device,
            )
            / n
        )
    # The same effects on the prompts both ran (the original's latents, summed over them).
    _, reference = reference_effects(
        model, ablator, reader, tokens_BS[:n], mask_BS[:n], counted_BS[:n], sizes.k
    )
    fast = ours(n, n)
    assert reference.keys() == fast.keys(), "different latents ablated"
    ref_LD = torch.stack([reference[i] for i in sorted(reference)]).float()
    fast_LD = torch.stack([fast[i] for i in sorted(reference)]).float()
    flipped = int((~torch.isclose(fast_LD, ref_LD, rtol=1e-3, atol=1e-4)).sum())
    error = float((fast_LD - ref_LD).norm() / ref_LD.norm().clamp(min=1e-12))
    return Measured(
        "selective ablation",
        f"{cfg.n_layers} layers, d_model {cfg.d_model}, {a_hook} -> {r_hook}, "
        f"E {sizes.reader_width:,}, K {sizes.k}, {sizes.seq} tokens/prompt",
        t_original,
        t_ours,
        "s per prompt",
        f"{len(reference)} latents, relative error {error:.1e}, {flipped} of "
        f"{ref_LD.numel():,} entries flipped; original on {n} prompts, ours on "
        f"{sizes.batched_prompts} ({sizes.prompts_per_batch} per batch)",
        peaks.gpu,
        peaks.host,
    )


def original_pair_rows(
    normalized_eE: torch.Tensor,
    cooccurrence_Re: torch.Tensor,
    rows: list[int],
    cooc_max: int,
    cos_min: float,
) -> list[tuple[int, int, float]]:
    """The original look_for_pairs.py's loop body (``pair_search.py``'s baseline) on some rows."""
    similar_pairs: list[tuple[int, int, float]] = []
    for r, i in enumerate(rows):
        cosines_e = torch.matmul(normalized_eE, normalized_eE[i])
        valid_cooc_e = cooccurrence_Re[r] <= cooc_max
        valid_cos_e = cosines_e >= cos_min
        valid = torch.where(valid_cooc_e & valid_cos_e.cpu())[0]
        if len(valid) == 0:
            continue
        sims = cosines_e[valid.to(cosines_e.device)].cpu()
        for idx in range(len(valid)):
            similar_pairs.append((i, int(valid[idx]), float(sims[idx])))
    similar_pairs.sort(key=lambda x: x[2], reverse=True)
    return similar_pairs


@torch.no_grad()
def pairs_step(sizes: Sizes, device: torch.device) -> Measured:
    width, reader_width, cosine = sizes.width, sizes.reader_width, 0.2
    generator = torch.Generator(device).manual_seed(0)
    effects_eE = torch.empty(width, reader_width, device=device)
    for start in range(0, width, 4096):  # sparse rows, drawn in blocks (no full-size temporaries)
        block = effects_eE[start : start + 4096]
        block.normal_(generator=generator)
        block.mul_(torch.rand(block.shape, generator=generator, device=device) < 0.05)
    # Plant absorption-like pairs: every 64th row is a noisy copy of the row after it.
    effects_eE[0:-1:64] = effects_eE[1::64][: effects_eE[0:-1:64].shape[0]] * 1.0
    effects_eE[0:-1:64] += 0.3 * torch.randn(
        effects_eE[0:-1:64].shape, generator=generator, device=device
    )
    words = (triangle_size(width) + 63) // 64
    # Random bits: about half of all pairs co-occurred.
    ever_W = torch.randint(
        0, 256, (8 * words,), generator=generator, device=device, dtype=torch.uint8
    ).view(torch.int64)
    latents_R = torch.arange(width, device=device)

    def never_together(first_P: torch.Tensor, second_P: torch.Tensor) -> torch.Tensor:
        return bits_at(ever_W, pair_index(first_P, second_P, width)).long()

    def ours():
        return find_pairs(
            latents_R,
            lambda a, b: effects_eE[a:b],
            never_together,
            cosine,
            0,
            1_000_000,
            block_rows=sizes.block_rows,
            device=device,
        ).pairs

    timed_rows = list(range(0, width, width // sizes.original_rows))[: sizes.original_rows]
    # The original's dense co-occurrence rows, on the host as it kept them (1 = co-occurred).
    all_j = torch.arange(width, device=device)
    cooc_rows = []
    for i in timed_rows:
        i_D = torch.full_like(all_j, i)
        low, high = torch.minimum(i_D, all_j), torch.maximum(i_D, all_j)
        off = low == high
        bits = bits_at(ever_W, pair_index(low[~off], high[~off], width)).float()
        row = torch.full((width,), 100.0, device=device)  # the diagonal: a firing count
        row[~off] = bits
        cooc_rows.append(row.cpu())
    cooccurrence_Re = torch.stack(cooc_rows)
    with Peaks(device) as peaks:
        ours()  # warm-up
        sync(device)
        started = time.perf_counter()
        found = ours()
        sync(device)
        t_ours_all = time.perf_counter() - started
        sync(device)
        started = time.perf_counter()
        normalized_eE = F.normalize(effects_eE, dim=1)
        sync(device)
        t_normalize = time.perf_counter() - started
        started = time.perf_counter()
        reference = original_pair_rows(normalized_eE, cooccurrence_Re, timed_rows, 0, cosine)
        sync(device)
        t_rows = time.perf_counter() - started
        del normalized_eE
    t_original_all = t_normalize + t_rows / len(timed_rows) * width
    timed = set(timed_rows)
    ref_pairs = {(i, j): c for i, j, c in reference if i < j}
    our_pairs = {
        (int(i), int(j)): float(c)
        for i, j, c in zip(
            found.first_P.tolist(), found.second_P.tolist(), found.cosine_P.tolist(), strict=True
        )
        if int(i) in timed
    }
    assert ref_pairs.keys() == our_pairs.keys(), (len(ref_pairs), len(our_pairs))
    diff = max((abs(ref_pairs[k] - our_pairs[k]) for k in ref_pairs), default=0.0)
    return Measured(
        "pair search",
        f"{width:,} ablated x {reader_width:,} reader latents, cosine >= {cosine}, never co-occurred",
        t_original_all,
        t_ours_all,
        "s for all rows",
        f"{len(found.first_P):,} pairs found; on the {len(timed_rows)} timed rows the same "
        f"{len(ref_pairs)} pairs, cosines within {diff:.1e}; original extrapolated from "
        f"{len(timed_rows)} rows ({t_rows / len(timed_rows) * 1e3:.1f} ms each)",
        peaks.gpu,
        peaks.host,
    )


def report(results: list[Measured], device: torch.device, seconds: float) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        f"### The hunt at Gemma-2-2b / Gemma Scope 65k shapes ({name}, {seconds:.0f} s)",
        "",
        "| step | shape | original | ours | unit | speed-up | goal | peak GPU GiB | peak host GiB | check |",
        "|---|---|---:|---:|---|---:|---|---:|---:|---|",
    ]
    for m in results:
        goal = GOALS[m.step]
        verdict = f"≥ {goal:.0f}x: {'met' if m.speedup >= goal else 'missed'}"
        lines.append(
            f"| {m.step} | {m.shape} | {m.original_seconds:.4g} | {m.ours_seconds:.4g} | {m.unit} "
            f"| {m.speedup:.1f}x | {verdict if device.type == 'cuda' else '(CPU smoke)'} "
            f"| {m.peak_gpu_bytes / 2**30:.2f} | {m.peak_host_bytes / 2**30:.2f} | {m.check} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", default="cooccurrence,ablation,pairs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (checks the code)")
    parser.add_argument("--report", type=Path, help="append the table here (Markdown)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the CPU benchmarks: small ops slow down with more threads
    sizes = SMOKE if args.smoke else Sizes()
    started = time.perf_counter()
    results: list[Measured] = []
    for step in args.steps.split(","):
        step_started = time.perf_counter()
        if step == "cooccurrence":
            results.append(cooccurrence_step(sizes, device))
        elif step == "ablation":
            results.append(ablation_step(sizes, device, args.smoke))
        elif step == "pairs":
            results.append(pairs_step(sizes, device))
        else:
            raise SystemExit(f"--steps: unknown step '{step}'")
        m = results[-1]
        print(
            f"{m.step}: {m.speedup:.1f}x ({m.original_seconds:.4g} vs {m.ours_seconds:.4g} "
            f"{m.unit}), {time.perf_counter() - step_started:.0f} s",
            flush=True,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()
    text = report(results, device, time.perf_counter() - started)
    print(text)
    if args.report is not None:
        with args.report.open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()

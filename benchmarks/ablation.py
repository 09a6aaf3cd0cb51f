"""Selective ablation: the original algorithm (K+2 full forwards a prompt) against the batched path.

Same model, SAEs and prompts; one run; one torch thread on CPU. The batched path is timed twice:
through transformer-lens's blocks over every position (the fallback for non-Gemma-2 models), and
through the Gemma-2 suffix forward (clean prefix reused, reader's token only in the last block).
Prints a table and checks that the fast one gives the original's effects (max abs difference, and
entries that differ by more than float noise: JumpReLU latents flipping across their thresholds).

    uv run benchmarks/ablation.py [--device cuda] [--d-model 64] [--k 32] [--prompts 16]
"""

import argparse
from functools import partial

import torch
from ablation_reference import reference_effects
from timing import timed
from torch import Tensor

from sae_hacking.ablation.batched import batched_ablation_effects
from sae_hacking.ablation.sites import plan_for
from sae_hacking.llm import tiny_model, tiny_sae, tokenize_batch
from sae_hacking.llm.tokenizer import TINY_TEXT


def batched(
    model, ablator, reader, tokens_BS, mask_BS, counted_BS, k, max_batch, transformer_lens_blocks
) -> dict[int, Tensor]:
    plan = plan_for(ablator.cfg.metadata.hook_name, reader.cfg.metadata.hook_name)
    effects: dict[int, Tensor] = {}
    for start in range(0, tokens_BS.shape[0], 8):
        part = slice(start, start + 8)
        _, chunks = batched_ablation_effects(
            model,
            plan,
            ablator,
            reader,
            tokens_BS[part],
            mask_BS[part],
            counted_BS[part],
            k,
            torch.ones(ablator.cfg.d_sae, dtype=torch.bool),
            torch.zeros(0, dtype=torch.long),
            max_batch,
            transformer_lens_blocks=transformer_lens_blocks,
        )
        for chunk in chunks:
            for latent, row in zip(chunk.latents_K.tolist(), chunk.effects_KY, strict=True):
                effects[latent] = effects.get(latent, 0) + row
    return effects


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--max-batch-ablations", type=int, default=256)
    parser.add_argument(
        "--pairings",
        default="3:resid_post>4:resid_post,3:resid_post>4:mlp_out,1:attn_out>4:resid_post",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    model = tiny_model(device=device, n_layers=args.layers, d_model=args.d_model)
    lines = [line for line in TINY_TEXT.splitlines() if line.strip()]
    texts = [" ".join(lines[i % len(lines) : i % len(lines) + 3]) for i in range(args.prompts)]
    batch = tokenize_batch(texts, model.tokenizer, args.tokens).to(device)  # pyright: ignore[reportArgumentType]
    print(
        f"device {device}, threads {torch.get_num_threads()}, d_model {args.d_model}, layers {args.layers}, "
        f"SAE width {args.width}, K {args.k}, prompts {args.prompts}, tokens/prompt {batch.tokens_BS.shape[1]}, "
        f"max batch ablations {args.max_batch_ablations}"
    )
    print(
        f"| {'ablator -> reader':52} | original s | batched, TL blocks s | speed-up "
        "| batched, suffix s | speed-up | max abs diff | flipped entries |"
    )
    print(
        f"|{'-' * 54}|-----------:|--------------------:|---------:|------------------:|---------:"
        "|-------------:|----------------:|"
    )
    for pairing in args.pairings.split(","):
        a, r = pairing.split(">")
        a_hook = f"blocks.{a.split(':')[0]}.hook_{a.split(':')[1]}"
        r_hook = f"blocks.{r.split(':')[0]}.hook_{r.split(':')[1]}"
        ablator = tiny_sae(model, f"{a_hook}/jumprelu/{args.width}", device)
        reader = tiny_sae(model, f"{r_hook}/jumprelu/{args.width}", device)
        inputs = (
            model,
            ablator,
            reader,
            batch.tokens_BS,
            batch.attention_mask_BS,
            batch.counted_BS,
            args.k,
        )
        for transformer_lens_blocks in (True, False):  # warm-up
            batched(*inputs, args.max_batch_ablations, transformer_lens_blocks)
        (_, ref), t_ref = timed(partial(reference_effects, *inputs), device)
        _, t_tl = timed(partial(batched, *inputs, args.max_batch_ablations, True), device)
        fast, t_fast = timed(partial(batched, *inputs, args.max_batch_ablations, False), device)
        assert ref.keys() == fast.keys()
        ref_LD = torch.stack([ref[i] for i in sorted(ref)])
        fast_LD = torch.stack([fast[i] for i in sorted(ref)])
        diff = (ref_LD - fast_LD).abs()
        flipped = int((~torch.isclose(fast_LD, ref_LD, rtol=1e-3, atol=1e-4)).sum())
        print(
            f"| {a_hook + ' -> ' + r_hook:52} | {t_ref:10.2f} | {t_tl:19.3f} | {t_ref / t_tl:7.1f}x "
            f"| {t_fast:17.3f} | {t_ref / t_fast:7.1f}x | "
            f"{float(diff.max()):12.2e} | {flipped:6d} of {diff.numel():7d} |"
        )


if __name__ == "__main__":
    main()

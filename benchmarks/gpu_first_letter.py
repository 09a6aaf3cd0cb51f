"""The first-letter evaluation's time per SAE at Gemma-2-2b and Gemma Scope 16k/65k shapes.

Random weights (``--model random:google/gemma-2-2b``, the tiny tokenizer's words) and random
JumpReLU SAEs calibrated to a realistic L0 (``--sae-release tiny``): no hub is needed, and the
time is the shapes' time, not the absorption of a real SAE. Three runs: each SAE alone, then
both in one run, which shares the model's forward passes, the activations and the probe, so
the time an extra SAE adds is the pair's time minus the other SAE's alone.

    python benchmarks/gpu_first_letter.py --device cuda --report table.md
    python benchmarks/gpu_first_letter.py --device cpu --smoke       # checks the code
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sae_hacking.first_letter.config import FirstLetterConfig
from sae_hacking.first_letter.run import run

GEMMA = "random:google/gemma-2-2b"
HOOK = "blocks.12.hook_resid_post"


def timed(model: str, sae_ids: tuple[str, ...], device: str, output: Path) -> float:
    config = FirstLetterConfig(
        model=model, sae_release="tiny", sae_ids=sae_ids, device=device, output_dir=output
    )
    started = time.perf_counter()
    run(config)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="the tiny model and small SAEs")
    parser.add_argument("--report", type=Path, help="append the table here (Markdown)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, hook, widths = (
        ("tiny", "blocks.2.hook_resid_post", (256, 512))
        if args.smoke
        else (GEMMA, HOOK, (16384, 65536))
    )
    small, large = (f"{hook}/jumprelu/{width}" for width in widths)
    with tempfile.TemporaryDirectory() as scratch:
        # A tiny run first pays the process's one-time costs (imports, kernels); each timed run
        # then builds its model and SAEs, as a user's run does.
        timed("tiny", ("blocks.2.hook_resid_post/jumprelu/256",), args.device, Path(scratch))
        alone = [timed(model, (sae_id,), args.device, Path(scratch)) for sae_id in (small, large)]
        both = timed(model, (small, large), args.device, Path(scratch))
    rows = [
        f"| {width:,} latents alone | {t:.1f} |" for width, t in zip(widths, alone, strict=True)
    ]
    rows.append(f"| both in one run | {both:.1f} |")
    rows += [
        f"| added by the {width:,}-latent SAE in a shared run | {both - other:.1f} |"
        for width, other in zip(widths, reversed(alone), strict=True)
    ]
    device_name = (
        torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device.upper()
    )
    table = "\n".join(
        [
            f"### First-letter evaluation, {model}, {hook} ({device_name})",
            "",
            "| run | seconds (whole evaluation, model load included) |",
            "|---|---:|",
            *rows,
            "",
        ]
    )
    print(table)
    if args.report is not None:
        with args.report.open("a", encoding="utf-8") as handle:
            handle.write(table + "\n")


if __name__ == "__main__":
    main()

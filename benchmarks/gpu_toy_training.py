"""Toy training on a GPU: sae-lens's ``train_toy_sae`` against this toolkit's loop, plain and fast.

The original's data (30 parents with two perturbed children, perturbation 0.4, 50 dims, two
parents per sample; ``toy_training.py``'s "original" task), a top-k SAE of 60 latents, k 2, the
same learning rate and samples for every trainer, in one process. sae-lens's trainer is fed this
toolkit's sampler on the device (it has none for this data), so the rows compare training loops.
This toolkit's rows: the plain loop, CUDA graphs, ``torch.compile``, and both. Each of ours runs
once untimed (compilation, graph capture) and then timed on the same SAE; the rate counts training
steps only. sae-lens's rate is its whole ``train_toy_sae`` call.

    python benchmarks/gpu_toy_training.py [--device cuda] [--batch-sizes 1024,65536] [--report out.md]
"""

import argparse
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from toy_training import mcc_of, original_task, run_saelens

from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainSettings, train
from sae_hacking.toy.training.schedule import Schedule

# Goals on an H100 (samples/s): at batch 1024 an absolute rate, at 65536 a multiple of sae-lens.
GOAL_RATE_AT_1024 = 5e6
GOAL_RATIO_AT_65536 = 2.0
VARIANTS = {
    "plain": {},
    "CUDA graphs": {"cuda_graphs": True},
    "torch.compile": {"compile": True},
    "compile + graphs": {"compile": True, "cuda_graphs": True},
}


@dataclass(frozen=True)
class Row:
    batch_size: int
    trainer: str
    samples_per_second: float
    mcc: float
    peak_gpu_bytes: int


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_of(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0


def run_ours(
    device: torch.device, batch_size: int, samples: int, lr: float, fast: dict[str, bool]
) -> Row:
    task = original_task(device, 0)
    sae = TopKSAE(TopKShape(50, task.width, task.k), torch.Generator(device).manual_seed(0))
    eval_x_BM, _ = task.source.sample(4096, torch.Generator(device).manual_seed(1))
    steps = max(samples // batch_size, 8)
    compiled, graphed = fast.get("compile", False), fast.get("cuda_graphs", False)
    warm = TrainSettings(
        8, batch_size, lr, Schedule(), log_every=8, compile=compiled, cuda_graphs=graphed
    )
    train(sae, task.source, warm, torch.Generator(device).manual_seed(2), eval_x_BM)
    peak_reset(device)
    settings = replace(warm, steps=steps, log_every=steps)
    result = train(sae, task.source, settings, torch.Generator(device).manual_seed(3), eval_x_BM)
    label = "ours, " + next(name for name, options in VARIANTS.items() if options == fast)
    return Row(
        batch_size,
        label,
        result.samples_per_second,
        mcc_of(sae.W_dec_EM, task.source.features_NM),
        peak_of(device),
    )


def run_theirs(device: torch.device, batch_size: int, samples: int, lr: float) -> Row:
    task = original_task(device, 0)
    args = argparse.Namespace(samples=samples, batch_size=batch_size, lr=lr)
    peak_reset(device)
    measured = run_saelens(task, args, device, 0)
    return Row(
        batch_size,
        "sae-lens train_toy_sae",
        measured.samples_per_second,
        measured.mcc,
        peak_of(device),
    )


def table(rows: list[Row], device: torch.device) -> str:
    lines = [
        "| batch | trainer | samples/s | vs sae-lens | MCC | peak GPU MiB | goal |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        theirs = next(
            r for r in rows if r.batch_size == row.batch_size and r.trainer.startswith("sae")
        )
        ratio = row.samples_per_second / theirs.samples_per_second
        goal = ""
        if row.trainer.startswith("ours") and device.type == "cuda":
            if row.batch_size == 1024:
                met = row.samples_per_second >= GOAL_RATE_AT_1024
                goal = f"≥ {GOAL_RATE_AT_1024 / 1e6:.0f}M/s: {'met' if met else 'missed'}"
            elif row.batch_size == 65536:
                met = ratio >= GOAL_RATIO_AT_65536
                goal = f"≥ {GOAL_RATIO_AT_65536:.0f}x sae-lens: {'met' if met else 'missed'}"
        lines.append(
            f"| {row.batch_size} | {row.trainer} | {row.samples_per_second:,.0f} "
            f"| {ratio:.1f}x | {row.mcc:.3f} | {row.peak_gpu_bytes / 2**20:.0f} | {goal} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", default="1024,65536")
    parser.add_argument(
        "--samples",
        default="2000000,100000000",
        help="samples per trainer at each batch size (sae-lens: ~7 s each at its H100 rates)",
    )
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--report", type=Path, help="append the table here (Markdown)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the CPU benchmarks: small ops slow down with more threads
    rows: list[Row] = []
    started = time.perf_counter()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    samples = [int(s) for s in args.samples.split(",")]
    for batch_size, count in zip(batch_sizes, samples, strict=True):
        rows.append(run_theirs(device, batch_size, count, args.lr))
        print(f"batch {batch_size}: sae-lens {rows[-1].samples_per_second:,.0f}/s", flush=True)
        for name in args.variants.split(","):
            if VARIANTS[name].get("cuda_graphs") and device.type != "cuda":
                continue  # the option is ignored off CUDA: the row would repeat "plain"
            rows.append(run_ours(device, batch_size, count, args.lr, VARIANTS[name]))
            print(f"batch {batch_size}: {name} {rows[-1].samples_per_second:,.0f}/s", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    title = (
        f"### Toy training on the original's data ({name}, {time.perf_counter() - started:.0f} s)"
    )
    text = f"{title}\n\n{table(rows, device)}\n"
    print(text)
    if args.report is not None:
        with args.report.open("a", encoding="utf-8") as report:
            report.write(text + "\n")


if __name__ == "__main__":
    main()

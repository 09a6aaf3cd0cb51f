"""SynthSAEBench training speed: this toolkit against sae-lens's ``SyntheticSAERunner``.

Both train the same architecture on the same sae-lens ``SyntheticModel`` (one instance, shared) for
the same samples, batch size and learning rate, and both are scored by SynthSAEBench's metrics on
fresh samples: both SAEs are saved in sae-lens's inference format (BatchTopK as a JumpReLU at its
threshold, as sae-lens saves it) and scored by sae-lens's own ``eval_sae_on_synthetic_data`` on
the same samples. Times cover the training alone (model building and scoring excluded), on one
torch thread on CPU. On CPU the rates are per CPU second of the process (``time.process_time``),
so other work on a shared machine does not skew the ratio; wall seconds are printed beside them.

    uv run benchmarks/synthetic_training.py                          # CPU, synth-sae-bench-1k
    uv run benchmarks/synthetic_training.py --model saved_model_dir  # skip building the preset
    uv run benchmarks/synthetic_training.py --gpu                    # SynthSAEBench-16k on CUDA,
        # width 4096, batch 1024, lr 3e-4, 200M samples, the fixed-shape sampler and CUDA graphs;
        # --samples 20000000 for a shorter run, --sae-lens-samples 2000000 to time sae-lens's
        # runner too (its rate is per sample)
    uv run benchmarks/synthetic_training.py --gpu --device cpu --model synth-sae-bench-1k \
        --samples 20480 --eval-samples 2000                          # the GPU run's code on a CPU

Offline: the 16k model is built from its published configuration on the GPU (seed 42).
"""

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

# sae-lens's runner draws progress bars; the table is what this script is for.
os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.synthetic_models import load_synthetic_model
from sae_hacking.toy.experiments.synthetic.config import SyntheticTrainConfig
from sae_hacking.toy.experiments.synthetic.run import (
    build_sae,
    default_matryoshka_widths,
    default_width,
    frequent_l0,
    make_source,
    sampler_overflow,
    training_evaluation,
)
from sae_hacking.toy.training.loop import TrainSettings, train


@dataclass(frozen=True)
class Row:
    trainer: str
    samples: int
    seconds: float
    cpu_seconds: float
    scores: dict[str, float]

    def rate(self, device: torch.device) -> float:
        """Samples per CPU second on CPU, per wall second on a GPU."""
        return self.samples / (self.cpu_seconds if device.type == "cpu" else self.seconds)


class Clock:
    """Wall and process CPU time of a block, the device synchronised at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> "Clock":
        sync(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        sync(self.device)
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def lens_scores(lens_sae: Any, model: Any, eval_samples: int) -> dict[str, float]:
    """sae-lens's SynthSAEBench metrics, on the same samples for every SAE (fixed torch seed)."""
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    torch.manual_seed(4)
    scores = eval_sae_on_synthetic_data(
        lens_sae.to(model.device),
        model.feature_dict,
        model.activation_generator,
        num_samples=eval_samples,
        batch_size=8192,
    )
    return {**scores.to_dict(), **scores.to_dict()["classification"]}


def ours(
    config: SyntheticTrainConfig,
    model: Any,
    width: int,
    l0: float,
    eval_samples: int,
    compile_loss: bool,
) -> Row:
    from sae_hacking.toy.saes.export import to_sae_lens

    device = torch.device(str(model.device))
    source = make_source(model, device, config.sampler)
    sae = build_sae(config, source.W_NM.shape[1], width, l0, torch.Generator(device).manual_seed(1))
    steps = config.samples // config.batch_size
    settings = TrainSettings(
        steps=steps,
        batch_size=config.batch_size,
        lr=config.lr,
        log_every=steps,
        compile=compile_loss,
        cuda_graphs=config.cuda_graphs,
    )
    eval_x_BM = source.sample_sparse(1024, torch.Generator(device).manual_seed(2)).x_BM
    with Clock(device) as clock:
        result = train(
            sae,
            source,
            settings,
            torch.Generator(device).manual_seed(3),
            eval_x_BM,
            evaluator=training_evaluation,
        )
    sae.eval()
    graphs = config.cuda_graphs and device.type == "cuda"
    name = f"sae_hacking ({type(source).__name__}{', CUDA graphs' if graphs else ''})"
    scores = lens_scores(to_sae_lens(sae), model, eval_samples)
    overflow = sampler_overflow(source)
    if overflow:
        print(
            f"fixed-shape sampler: cap {overflow['sampler_free_cap']}, dropped "
            f"{overflow['sampler_dropped']:,} of {overflow['sampler_fired']:,} loose features"
        )
    seconds = result.train_seconds if device.type == "cuda" else clock.wall
    return Row(name, steps * config.batch_size, seconds, clock.cpu, scores)


def sae_lens(
    config: SyntheticTrainConfig, model: Any, width: int, l0: float, samples: int, eval_samples: int
) -> Row:
    import tempfile

    from sae_lens import SAE, BatchTopKTrainingSAEConfig, LoggingConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAEConfig
    from sae_lens.synthetic import SyntheticSAERunner, SyntheticSAERunnerConfig

    hidden = model.cfg.hidden_dim
    if config.architecture == "matryoshka-batchtopk":
        sae_config = MatryoshkaBatchTopKTrainingSAEConfig(
            d_in=hidden, d_sae=width, k=l0, matryoshka_widths=list(default_matryoshka_widths(width))
        )
    else:
        sae_config = BatchTopKTrainingSAEConfig(d_in=hidden, d_sae=width, k=l0)
    runner = SyntheticSAERunner(
        SyntheticSAERunnerConfig(
            synthetic_model=model.cfg,
            sae=sae_config,
            training_samples=samples,
            batch_size=config.batch_size,
            lr=config.lr,
            device=str(model.device),
            output_path=None,
            run_final_eval=False,
            logger=LoggingConfig(log_to_wandb=False),
        ),
        override_synthetic_model=model,
    )
    device = torch.device(str(model.device))
    with Clock(device) as clock:
        result = runner.run()
    # Scored as sae-lens saves it: BatchTopK becomes a JumpReLU at its learned threshold.
    with tempfile.TemporaryDirectory() as folder:
        result.sae.save_inference_model(folder)
        scores = lens_scores(SAE.load_from_disk(folder), model, eval_samples)
    return Row("sae-lens SyntheticSAERunner", samples, clock.wall, clock.cpu, scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="SynthSAEBench-16k on CUDA")
    parser.add_argument("--model", default=None, help="preset, config file or saved model")
    parser.add_argument("--architecture", default="batchtopk")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--sae-lens-samples", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=None)
    parser.add_argument("--sampler", default="auto", help="auto, exact or fixed-shape")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="plain steps on the GPU")
    parser.add_argument("--compile", action="store_true", help="the SAE loss through torch.compile")
    parser.add_argument(
        "--device",
        default=None,
        help="cuda with --gpu, else cpu; --gpu --device cpu is a smoke run",
    )
    args = parser.parse_args()
    device = torch.device(args.device or ("cuda" if args.gpu else "cpu"))
    torch.set_num_threads(1)
    spec = args.model or ("synth-sae-bench-16k" if args.gpu else "synth-sae-bench-1k")
    samples = args.samples or (200_000_000 if args.gpu else 1_048_576)
    lens_samples = (
        args.sae_lens_samples if args.sae_lens_samples is not None else (0 if args.gpu else samples)
    )
    eval_samples = args.eval_samples or (500_000 if args.gpu else 50_000)
    config = SyntheticTrainConfig(
        model=spec,
        architecture=args.architecture,
        samples=samples,
        sampler="fixed-shape" if args.gpu and args.sampler == "auto" else args.sampler,
        cuda_graphs=args.gpu and not args.no_cuda_graphs,
        device=device.type,
    )
    started = time.perf_counter()
    model = load_synthetic_model(spec, str(device))
    print(f"built {spec} on {device} in {time.perf_counter() - started:.1f} s")
    probe = SyntheticSource(model, device)
    width = default_width(spec, probe.num_features)
    l0 = (
        25.0
        if spec == "synth-sae-bench-16k"
        else round(frequent_l0(probe, width, torch.Generator(device).manual_seed(0)), 1)
    )
    print(f"{args.architecture}, width {width}, k {l0}, batch 1024, lr 3e-4, {samples:,} samples")
    rows = [ours(config, model, width, l0, eval_samples, args.compile)]
    if lens_samples:
        rows.append(sae_lens(config, model, width, l0, lens_samples, eval_samples))
    unit = "CPU s" if device.type == "cpu" else "s"
    print(f"scored by sae-lens's eval_sae_on_synthetic_data on the same {eval_samples:,} samples")
    print(
        f"| trainer | samples | wall s | CPU s | samples / {unit} | MCC | F1 | L0 | explained variance |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row.scores
        print(
            f"| {row.trainer} | {row.samples:,} | {row.seconds:.1f} | {row.cpu_seconds:.1f} | "
            f"{row.rate(device):,.0f} | {s['mcc']:.3f} | {s['f1_score']:.3f} | {s['sae_l0']:.1f} | "
            f"{s['explained_variance']:.3f} |"
        )
    if len(rows) == 2:
        print(f"speed-up: {rows[0].rate(device) / rows[1].rate(device):.1f}x")


if __name__ == "__main__":
    main()

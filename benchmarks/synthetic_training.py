"""SynthSAEBench training speed: this toolkit against sae-lens's ``SyntheticSAERunner``.

Both train the same architecture on the same sae-lens ``SyntheticModel`` (one instance, shared) for
the same samples, batch size and learning rate, and both are scored by SynthSAEBench's metrics on
fresh samples (sae-lens by its own ``eval_sae_on_synthetic_data``, this toolkit by
``toy/metrics/synth_bench.py``, which a test holds equal to it). Times are wall-clock of the
training alone (model building and the final scoring excluded), after one torch thread on CPU.

    uv run benchmarks/synthetic_training.py                          # CPU, synth-sae-bench-1k
    uv run benchmarks/synthetic_training.py --model saved_model_dir  # skip building the preset
    uv run benchmarks/synthetic_training.py --gpu                    # SynthSAEBench-16k on CUDA,
        # width 4096, batch 1024, lr 3e-4, 200M samples; --samples 20000000 for a shorter run,
        # --sae-lens-samples 2000000 to time sae-lens's runner too (its rate is per sample)

Offline: the 16k model is built from its published configuration on the GPU (seed 42).
"""

import argparse
import os
import time
from dataclasses import dataclass

# sae-lens's runner draws progress bars; the table is what this script is for.
os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.synthetic_models import PRESETS, load_synthetic_model
from sae_hacking.toy.experiments.synthetic.config import SyntheticTrainConfig
from sae_hacking.toy.experiments.synthetic.run import (
    build_sae,
    default_width,
    frequent_l0,
    synth_bench_scores,
    training_evaluation,
)
from sae_hacking.toy.training.loop import TrainSettings, train


@dataclass(frozen=True)
class Row:
    trainer: str
    samples: int
    seconds: float
    scores: dict[str, float]

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours(
    config: SyntheticTrainConfig,
    source: SyntheticSource,
    width: int,
    l0: float,
    eval_samples: int,
) -> Row:
    device = source.device
    sae = build_sae(config, source.W_NM.shape[1], width, l0, torch.Generator(device).manual_seed(1))
    steps = config.samples // config.batch_size
    settings = TrainSettings(
        steps=steps, batch_size=config.batch_size, lr=config.lr, log_every=steps
    )
    eval_x_BM = source.sample_sparse(1024, torch.Generator(device).manual_seed(2)).x_BM
    result = train(
        sae,
        source,
        settings,
        torch.Generator(device).manual_seed(3),
        eval_x_BM,
        evaluator=training_evaluation,
    )
    bench, _, _ = synth_bench_scores(
        sae, source, eval_samples, 8192, torch.Generator(device).manual_seed(4)
    )
    return Row("sae_hacking", steps * config.batch_size, result.train_seconds, bench.record())


def sae_lens(
    config: SyntheticTrainConfig, model, width: int, l0: float, samples: int, eval_samples: int
) -> Row:
    from sae_lens import BatchTopKTrainingSAEConfig, LoggingConfig
    from sae_lens.saes.matryoshka_batchtopk_sae import MatryoshkaBatchTopKTrainingSAEConfig
    from sae_lens.synthetic import (
        SyntheticSAERunner,
        SyntheticSAERunnerConfig,
        eval_sae_on_synthetic_data,
    )

    from sae_hacking.toy.experiments.synthetic.run import default_matryoshka_widths

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
    sync(device)
    started = time.perf_counter()
    result = runner.run()
    sync(device)
    seconds = time.perf_counter() - started
    scores = eval_sae_on_synthetic_data(
        result.sae,
        model.feature_dict,
        model.activation_generator,
        num_samples=eval_samples,
        batch_size=8192,
    )
    record = {**scores.to_dict(), **scores.to_dict()["classification"]}
    return Row("sae-lens SyntheticSAERunner", samples, seconds, record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="SynthSAEBench-16k on CUDA")
    parser.add_argument("--model", default=None, help="preset, config file or saved model")
    parser.add_argument("--architecture", default="batchtopk")
    parser.add_argument("--samples", type=int, default=None)
    parser.add_argument("--sae-lens-samples", type=int, default=None)
    parser.add_argument("--eval-samples", type=int, default=None)
    args = parser.parse_args()
    device = torch.device("cuda" if args.gpu else "cpu")
    torch.set_num_threads(1)
    spec = args.model or ("synth-sae-bench-16k" if args.gpu else "synth-sae-bench-1k")
    samples = args.samples or (200_000_000 if args.gpu else 2_000_000)
    lens_samples = (
        args.sae_lens_samples if args.sae_lens_samples is not None else (0 if args.gpu else samples)
    )
    eval_samples = args.eval_samples or (500_000 if args.gpu else 100_000)
    config = SyntheticTrainConfig(
        model=spec,
        architecture=args.architecture,
        samples=samples,
        device=device.type,
    )
    started = time.perf_counter()
    model = load_synthetic_model(spec, str(device))
    print(f"built {spec} on {device} in {time.perf_counter() - started:.1f} s")
    source = SyntheticSource(model, device)
    width = (
        default_width(spec, source.num_features) if spec in PRESETS else source.num_features // 4
    )
    l0 = (
        25.0
        if spec == "synth-sae-bench-16k"
        else round(frequent_l0(source, width, torch.Generator(device).manual_seed(0)), 1)
    )
    print(f"{args.architecture}, width {width}, k {l0}, batch 1024, lr 3e-4, {samples:,} samples")
    rows = [ours(config, source, width, l0, eval_samples)]
    if lens_samples:
        rows.append(sae_lens(config, model, width, l0, lens_samples, eval_samples))
    header = "| trainer | samples | seconds | samples/s | MCC | F1 | L0 | explained variance |"
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        s = row.scores
        print(
            f"| {row.trainer} | {row.samples:,} | {row.seconds:.1f} | {row.rate:,.0f} | "
            f"{s['mcc']:.3f} | {s['f1_score']:.3f} | {s['sae_l0']:.1f} | "
            f"{s['explained_variance']:.3f} |"
        )
    if len(rows) == 2:
        print(f"speed-up: {rows[0].rate / rows[1].rate:.1f}x")


if __name__ == "__main__":
    main()

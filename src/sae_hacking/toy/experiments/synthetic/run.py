"""One SynthSAEBench run: model, SAE, training on the toy trainer, every score, the export."""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from sae_hacking.config import flag_of
from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.devices import command_line, free_memory_bytes, resolve_device
from sae_hacking.io.atomic import append_jsonl, atomic_write_json
from sae_hacking.io.rundir import (
    default_output_dir,
    make_run_dir,
    removed_unless_used,
    write_config,
)
from sae_hacking.memory import check_fits
from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.synthetic_fixed import FixedShapeSource
from sae_hacking.toy.data.synthetic_models import default_width, load_synthetic_model
from sae_hacking.toy.experiments.synthetic.config import SyntheticTrainConfig
from sae_hacking.toy.experiments.synthetic.plots import plot_absorption, plot_training_curves
from sae_hacking.toy.metrics.activity import (
    dead_latent_count,
    fraction_variance_unexplained,
    mean_l0,
)
from sae_hacking.toy.metrics.evaluation import Evaluation
from sae_hacking.toy.metrics.hedging import hedging_scores
from sae_hacking.toy.metrics.hierarchy_absorption import HierarchyAbsorption
from sae_hacking.toy.metrics.recovery import Recovery
from sae_hacking.toy.metrics.synth_bench import (
    Matching,
    SynthBenchAccumulator,
    SynthBenchResult,
    hungarian_matching,
)
from sae_hacking.toy.protocol import FeatureSource, ToySAE
from sae_hacking.toy.saes.batchtopk import BatchTopKSAE, BatchTopKShape
from sae_hacking.toy.saes.export import ExportableSAE, export_sae
from sae_hacking.toy.saes.jumprelu import JumpReLUSAE, JumpReLUShape
from sae_hacking.toy.saes.matryoshka import MatryoshkaSAE, MatryoshkaShape
from sae_hacking.toy.training.loop import LogPoint, TrainResult, TrainSettings, train

RUN_PREFIX = "train_synthetic_sae"
# Independent streams from one --seed: SAE init, held-out batch, training batches, final scores.
SEED_OFFSETS = {"init": 1, "eval": 2, "train": 3, "score": 4}
SAE_DIR = "sae"


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    summary: dict[str, Any]


def seeded(seed: int, stream: str, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed + SEED_OFFSETS[stream])


def make_source(model: Any, device: torch.device, sampler: str) -> SyntheticSource:
    """The training data sampler: ``auto`` is the fixed-shape one on CUDA (no host sync per
    step), the exact one elsewhere (on a CPU it is the faster: it draws only under fired parents)."""
    if sampler == "fixed-shape" or (sampler == "auto" and device.type == "cuda"):
        return FixedShapeSource(model, device)
    return SyntheticSource(model, device)


@torch.no_grad()
def frequent_l0(
    source: SyntheticSource, width: int, generator: torch.Generator, samples: int = 32_768
) -> float:
    """The true L0 counting only the ``width`` most frequent features (25 at SynthSAEBench-16k)."""
    batch = source.sample_sparse(samples, generator)
    counts_N = torch.bincount(batch.features_J, minlength=source.num_features)
    return counts_N.sort(descending=True).values[:width].sum().item() / samples


def default_matryoshka_widths(width: int) -> tuple[int, ...]:
    inner = sorted({w for w in (width // 32, width // 8, width // 2) if 0 < w < width})
    return (*inner, width)


def build_sae(
    config: SyntheticTrainConfig,
    model_dim: int,
    width: int,
    l0: float,
    generator: torch.Generator,
) -> ExportableSAE:
    if config.architecture == "l1":
        # A Matryoshka SAE of one full-width level is the standard ReLU SAE with an L1 penalty.
        shape = MatryoshkaShape(
            model_dim,
            width,
            prefix_widths=(width,),
            level_multipliers=(1.0,),
            sparsity="l1",
            l1_coefficient=config.l1_coefficient,
        )
        return MatryoshkaSAE(shape, generator)
    if config.architecture == "jumprelu":
        return JumpReLUSAE(JumpReLUShape(model_dim, width, target_l0=l0), generator)
    if config.architecture == "topk":
        return BatchTopKSAE(
            BatchTopKShape(model_dim, width, float(round(l0)), selection="sample"), generator
        )
    widths: tuple[int, ...] = ()
    if config.architecture == "matryoshka-batchtopk":
        widths = config.matryoshka_widths or default_matryoshka_widths(width)
    return BatchTopKSAE(BatchTopKShape(model_dim, width, l0, matryoshka_widths=widths), generator)


@torch.no_grad()
def training_evaluation(
    sae: ToySAE, source: FeatureSource, x_BM: Float[Tensor, "B M"]
) -> Evaluation:
    """The cheap numbers logged while training; MCC (a Hungarian matching) only at the end.

    The recovery holds each feature's best latent; its matching is left empty (-1, MCC NaN) and
    its cosine matrix zero-wide, so thousands of features cost no memory per log point.
    """
    was_training = getattr(sae, "training", False)
    sae.eval()  # pyright: ignore[reportAttributeAccessIssue]
    try:
        dense_BE = sae.encode_dense(x_BM)
        recon_BM = sae.reconstruct(x_BM)
    finally:
        sae.train(was_training)  # pyright: ignore[reportAttributeAccessIssue]
    features_NM = source.features_NM
    cos_NE = cosine_matrix(features_NM, sae.decoder_directions().detach())
    best_cosine_N, best_latent_N = cos_NE.max(dim=1)
    num_features = features_NM.shape[0]
    dead = dead_latent_count(dense_BE)
    found = Recovery(
        mmcs=best_cosine_N.mean().item(),
        mcc=float("nan"),
        cos_ND=torch.zeros(num_features, 0),
        best_latent_N=best_latent_N.cpu(),
        best_cosine_N=best_cosine_N.cpu(),
        matched_latent_N=torch.full((num_features,), -1, dtype=torch.long),
        matched_cosine_N=torch.zeros(num_features),
    )
    scalars = {
        "mse": (recon_BM - x_BM).square().sum(-1).mean().item(),
        "fvu": fraction_variance_unexplained(x_BM, recon_BM),
        "l0": mean_l0(dense_BE),
        "dead_latents": float(dead),
        "dead_fraction": dead / dense_BE.shape[1],
        "mmcs": found.mmcs,
    }
    return Evaluation(scalars, found)


class ProgressLog:
    """metrics.jsonl and a rich progress bar, one line per training evaluation."""

    def __init__(self, run_dir: Path, total_steps: int) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.records: list[dict[str, float]] = []
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4g}  L0 {task.fields[l0]:.1f}"),
            TextColumn("FVU {task.fields[fvu]:.3f}  MMCS {task.fields[mmcs]:.3f}"),
            TimeElapsedColumn(),
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, loss=float("nan"), l0=0.0, fvu=1.0, mmcs=0.0
        )

    def on_log(self, point: LogPoint, sae: ToySAE) -> None:
        record = point.record()
        self.records.append(record)
        append_jsonl(self.path, record)
        scalars = point.evaluation.scalars
        self.progress.update(
            self.task,
            completed=point.step,
            loss=point.train_loss,
            l0=scalars["l0"],
            fvu=scalars["fvu"],
            mmcs=scalars["mmcs"],
        )


def sampler_overflow(source: SyntheticSource) -> dict[str, Any]:
    """The fixed-shape sampler's dropped loose features (none expected at its calibrated cap)."""
    if not isinstance(source, FixedShapeSource):
        return {}
    counts = source.overflow()
    return {
        "sampler_free_cap": source.free_cap,
        "sampler_dropped": counts["dropped"],
        "sampler_fired": counts["fired"],
    }


@torch.no_grad()
def synth_bench_scores(
    sae: ToySAE,
    source: SyntheticSource,
    samples: int,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[SynthBenchResult, Matching, dict[str, Tensor]]:
    """SynthSAEBench's metrics on fresh samples, the MCC matching, and per-latent classification."""
    sae.eval()  # pyright: ignore[reportAttributeAccessIssue]
    decoder_EM = sae.decoder_directions().detach()
    scores = SynthBenchAccumulator(decoder_EM, source.features_NM)
    done = 0
    while done < samples:
        batch = source.sample_sparse(min(batch_size, samples - done), generator)
        acts_BE = sae.encode_dense(batch.x_BM)
        recon_BM = sae.reconstruct(batch.x_BM)
        scores.add(batch.x_BM, recon_BM, acts_BE, batch.dense(source.num_features))
        done += batch.x_BM.shape[0]
    matching = hungarian_matching(decoder_EM, source.features_NM)
    return scores.result(matching), matching, scores.classification()


@torch.no_grad()
def hierarchy_scores(
    sae: ToySAE,
    source: SyntheticSource,
    matching: Matching,
    samples: int,
    batch_size: int,
    generator: torch.Generator,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Absorption, the absorption gap, child absorbers and hedging against the true hierarchy.

    Each feature's main latent is its partner in the MCC matching where their cosine is positive.
    """
    features_NM = source.features_NM
    device = features_NM.device
    latent_N = matching.latent_of(source.num_features)
    matched_positive = torch.zeros(source.num_features, dtype=torch.bool)
    matched_positive[matching.feature_D] = matching.cos_D > 0
    latent_N = torch.where(matched_positive, latent_N, -1).to(device)
    decoder_EM = sae.decoder_directions().detach()
    parent_N = source.hierarchy.parent_of_N
    scorer = HierarchyAbsorption(decoder_EM, features_NM, parent_N, latent_N)
    done = 0
    while done < samples:
        batch = source.sample_sparse(min(batch_size, samples - done), generator)
        acts_BE = sae.encode_dense(batch.x_BM)
        scorer.add(batch.x_BM, acts_BE, batch.dense(source.num_features))
        done += batch.x_BM.shape[0]
    hedging = hedging_scores(
        sae.encoder_directions().detach(), decoder_EM, features_NM, parent_N, latent_N
    )
    summary = {**scorer.summary(), **hedging.means()}
    table = scorer.per_parent()
    detail = {
        "main_latent_of_feature": latent_N.tolist(),
        "parents": [
            {
                "parent": int(p),
                "latent": int(latent_N[p]),
                "samples_with_child": int(table["samples"][a]),
                "absorption_fraction": round(float(table["fraction"][a]), 5),
                "full_absorption_rate": round(float(table["full_rate"][a]), 5),
                "fires_alone": round(float(table["fires_alone"][a]), 5),
                "fires_with_child": round(float(table["fires_with_child"][a]), 5),
                "absorption_gap": round(float(table["gap"][a]), 5),
                "decoder_hedging": round(float(hedging.decoder_hedging_A[a]), 5),
                "encoder_absorption": round(float(hedging.encoder_absorption_A[a]), 5),
            }
            for a, p in enumerate(table["parents"].tolist())
        ],
        "absorbers": [asdict(a) for a in scorer.absorbers()],
    }
    return summary, detail


def run(config: SyntheticTrainConfig, argv: list[str] | None = None) -> RunOutcome:
    """Make the run directory (config.json first), train, score, export; return the summary."""
    started = time.perf_counter()
    device = resolve_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(config.threads)
    output_dir = config.output_dir or default_output_dir()
    run_dir = make_run_dir(output_dir, RUN_PREFIX)
    write_config(run_dir, config, argv if argv is not None else command_line())
    # A --model or size refused here leaves no run directory behind.
    with removed_unless_used(run_dir):
        model = load_synthetic_model(config.model, str(device))
        source = make_source(model, device, config.sampler)
        width = config.width or default_width(config.model, source.num_features)
        model_dim, features = source.W_NM.shape[1], source.num_features
        needed, costliest = config.memory_estimate(model_dim, features, width)
        check_fits(needed, flag_of(costliest), "training of these sizes", free_memory_bytes(device))
    if config.save_model:
        model.save(run_dir / "synthetic_model")
    l0 = config.l0 or round(frequent_l0(source, width, seeded(config.seed, "eval", device)), 1)
    sae = build_sae(config, source.W_NM.shape[1], width, l0, seeded(config.seed, "init", device))
    eval_x_BM = source.sample_sparse(8192, seeded(config.seed, "eval", device)).x_BM
    steps = config.steps
    settings = TrainSettings(
        steps=steps,
        batch_size=config.batch_size,
        lr=config.lr,
        log_every=config.log_every or max(steps // 20, 1),
        cuda_graphs=config.cuda_graphs,
    )
    log = ProgressLog(run_dir, steps)
    with log.progress:
        result = train(
            sae,
            source,
            settings,
            seeded(config.seed, "train", device),
            eval_x_BM,
            log,
            evaluator=training_evaluation,
        )
    summary = score_and_write(run_dir, config, sae, source, result, log, l0, width)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    summary["device"] = str(device)
    atomic_write_json(run_dir / "summary.json", summary)
    return RunOutcome(run_dir, summary)


def score_and_write(
    run_dir: Path,
    config: SyntheticTrainConfig,
    sae: ExportableSAE,
    source: SyntheticSource,
    result: TrainResult,
    log: ProgressLog,
    l0: float,
    width: int,
) -> dict[str, Any]:
    device = source.device
    bench, matching, per_latent = synth_bench_scores(
        sae, source, config.eval_samples, 8192, seeded(config.seed, "score", device)
    )
    hierarchy, detail = hierarchy_scores(
        sae, source, matching, config.absorption_samples, 8192, seeded(config.seed, "score", device)
    )
    atomic_write_json(run_dir / "absorption.json", detail)
    export_sae(sae, run_dir / SAE_DIR)
    plot_training_curves(log.records, run_dir / "training_curves.png")
    plot_absorption(detail, per_latent["f1_score"], run_dir / "absorption.png")
    return {
        "model": config.model,
        "num_features": source.num_features,
        "hidden_dim": int(source.W_NM.shape[1]),
        "architecture": config.architecture,
        "sae": sae.hyperparameters(),
        "width": width,
        "l0_target": l0,
        "synth_bench": bench.record(),
        "hierarchy": hierarchy,
        "training": result.final.record(),
        "steps": result.final.step,
        "samples": result.final.samples,
        "train_seconds": round(result.train_seconds, 3),
        "samples_per_second": round(result.samples_per_second),
        "sampler": type(source).__name__,
        **sampler_overflow(source),
        "sae_dir": SAE_DIR,
        "absorption_file": "absorption.json",
    }

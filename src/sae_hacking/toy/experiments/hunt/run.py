"""The absorption hunt on planted ground truth: train an absorbing ablator, hunt, score, report."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from sae_hacking.devices import command_line
from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.rundir import make_run_dir, write_config
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.data.tree_spec import load_forest
from sae_hacking.toy.experiments.hunt.model import (
    DOWNSTREAM_KINDS,
    FiringThreshold,
    Reader,
    ReaderSpaceSource,
    build_downstream,
)
from sae_hacking.toy.experiments.hunt.report import print_table, save_precision_recall
from sae_hacking.toy.experiments.hunt.scoring import (
    GroundTruth,
    Score,
    ground_truth,
    pairs_passing,
    score,
    sweep,
)
from sae_hacking.toy.experiments.hunt.steps import (
    EffectRows,
    ablation_effects,
    count_cooccurrences,
    sampler,
    search_pairs,
)
from sae_hacking.toy.metrics.absorption import AbsorptionThresholds
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainSettings, train

SCRIPT = "toy_absorption_hunt"
READERS = ("readout", "sae")
console = Console(stderr=True)


@dataclass(frozen=True)
class HuntConfig:
    """One hunt: data, ablator SAE, downstream map and reader, the hunt's samples and thresholds."""

    output_dir: Path
    device: torch.device
    hierarchy: str = "25x3"
    model_dim: int = 128
    ablator_width: int | None = None
    ablator_k: int = 8
    steps: int = 3000
    batch_size: int = 1024
    lr: float = 3e-3
    firing_threshold: float = 0.5
    downstream: str = "readout"
    downstream_width: int = 256
    downstream_offset: float = 0.0
    reader: str = "readout"
    reader_width: int = 256
    reader_k: int = 16
    samples: int = 50_000
    hunt_batch_size: int = 4096
    abridge_ablations_to: int | None = None
    cosine_sim_threshold: float = 0.45
    cooccurrence_threshold: int = 0
    sweep_cosines: tuple[float, ...] = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9)
    sweep_cooccurrences: tuple[int, ...] = (0, 2, 10, 100)
    min_absorber_rate: float = 0.2
    eval_samples: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.model_dim > 0, "--model-dim", "must be positive"),
            (self.ablator_k > 0, "--ablator-k", "must be positive"),
            (self.steps > 0 and self.batch_size > 0, "--steps", "steps and batch size > 0"),
            (self.lr > 0, "--lr", "must be positive"),
            (self.firing_threshold >= 0, "--firing-threshold", "must not be negative"),
            (self.downstream in DOWNSTREAM_KINDS, "--downstream", f"use {DOWNSTREAM_KINDS}"),
            (self.downstream_width > 0, "--downstream-width", "must be positive"),
            (self.reader in READERS, "--reader", f"use one of {READERS}"),
            (self.reader_width > 0 and self.reader_k > 0, "--reader-k", "width and k > 0"),
            (self.samples > 0 and self.eval_samples > 0, "--samples", "must be positive"),
            (self.hunt_batch_size > 0, "--hunt-batch-size", "must be positive"),
            (-1 <= self.cosine_sim_threshold <= 1, "--cosine-sim-threshold", "not in [-1, 1]"),
            (self.cooccurrence_threshold >= 0, "--cooccurrence-threshold", "counts are >= 0"),
            (0 < self.min_absorber_rate <= 1, "--min-absorber-rate", "must lie in (0, 1]"),
        ]
        for ok, flag, problem in checks:
            if not ok:
                raise UserInputError(flag, problem)
        if self.ablator_width is not None and self.ablator_width < self.ablator_k:
            raise UserInputError("--ablator-width", "must be at least --ablator-k")
        if self.abridge_ablations_to is not None and self.abridge_ablations_to < 1:
            raise UserInputError("--abridge-ablations-to", "must be at least 1")
        if self.reader == "sae" and self.reader_k > self.reader_width:
            raise UserInputError("--reader-k", "must be at most --reader-width")
        if not self.sweep_cosines or not self.sweep_cooccurrences:
            raise UserInputError("--sweep-cosines", "give at least one threshold of each kind")
        try:
            load_forest(self.hierarchy)
        except ValueError as error:
            raise UserInputError("--hierarchy", str(error)) from error


@dataclass(frozen=True)
class HuntResult:
    """What the hunt found, scored, for the ablation pipeline and the decoder-cosine baseline."""

    run_dir: Path
    truth: GroundTruth
    found: set[tuple[int, int]]
    at_default: Score
    baseline_at_default: Score
    ablation_sweep: list[Score]
    baseline_sweep: list[Score]


def _train_sae(
    sae: TopKSAE, source: Any, config: HuntConfig, generator: torch.Generator
) -> dict[str, float]:
    eval_x_BM, _ = source.sample(4096, generator)
    settings = TrainSettings(config.steps, config.batch_size, config.lr, log_every=config.steps)
    result = train(sae, source, settings, generator, eval_x_BM)
    sae.eval()
    return {k: result.final.evaluation.scalars[k] for k in ("fvu", "l0", "mmcs", "mcc")}


def run(config: HuntConfig) -> HuntResult:
    """Make the run directory, then train, hunt, score and write hunt.json and precision_recall.png."""
    run_dir = make_run_dir(config.output_dir, SCRIPT)
    write_config(run_dir, config, command_line())
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    source = TreeSource.build(load_forest(config.hierarchy), config.model_dim, generator)
    n_features = source.features_NM.shape[0]
    width = config.ablator_width or n_features
    console.print(f"training the ablator: top-{config.ablator_k} SAE, {width} latents")
    raw_ablator = TopKSAE(TopKShape(config.model_dim, width, config.ablator_k), generator)
    ablator_metrics = _train_sae(raw_ablator, source, config, generator)
    ablator = FiringThreshold(raw_ablator, config.firing_threshold)

    downstream = build_downstream(
        config.downstream,
        source.features_NM,
        config.downstream_width,
        config.downstream_offset,
        generator,
    )
    reader = Reader(None)
    reader_metrics: dict[str, float] = {}
    if config.reader == "sae":
        console.print(f"training the reader: top-{config.reader_k} SAE on the reader space")
        reader_sae = TopKSAE(
            TopKShape(downstream.width, config.reader_width, config.reader_k), generator
        )
        reader_metrics = _train_sae(
            reader_sae, ReaderSpaceSource(source, downstream), config, generator
        )
        reader = Reader(reader_sae)

    x_BM, feature_acts_BN = source.sample(config.eval_samples, generator)
    truth = ground_truth(
        ablator,
        source.features_NM,
        source.parent_N,
        x_BM,
        feature_acts_BN,
        AbsorptionThresholds(),
        config.min_absorber_rate,
    )
    draw = sampler(source, generator)
    console.print(f"hunting over {config.samples} samples")
    cooccurrences = count_cooccurrences(ablator, draw, config.samples, config.hunt_batch_size)
    effects = ablation_effects(
        ablator,
        downstream,
        reader,
        draw,
        config.samples,
        config.hunt_batch_size,
        config.abridge_ablations_to or config.ablator_k,
    )
    loosest_cosine = min(*config.sweep_cosines, config.cosine_sim_threshold)
    loosest_count = max(*config.sweep_cooccurrences, config.cooccurrence_threshold)
    decoder_rows = EffectRows(
        effects.latents_R,
        raw_ablator.decoder_directions().detach()[effects.latents_R.to(config.device)],
        effects.counts_R,
    )
    searches = {
        name: search_pairs(
            rows.latents_R.to(config.device),
            rows.rows_RD,
            cooccurrences,
            loosest_cosine,
            loosest_count,
        ).pairs
        for name, rows in (("ablation", effects), ("decoder", decoder_rows))
    }
    at = (config.cosine_sim_threshold, config.cooccurrence_threshold)
    found = pairs_passing(searches["ablation"], *at)
    result = HuntResult(
        run_dir=run_dir,
        truth=truth,
        found=found,
        at_default=score(found, truth.pairs, *at),
        baseline_at_default=score(pairs_passing(searches["decoder"], *at), truth.pairs, *at),
        ablation_sweep=sweep(
            searches["ablation"], truth.pairs, config.sweep_cosines, config.sweep_cooccurrences
        ),
        baseline_sweep=sweep(
            searches["decoder"], truth.pairs, config.sweep_cosines, config.sweep_cooccurrences
        ),
    )
    _write(result, config, ablator_metrics, reader_metrics, effects)
    return result


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _write(
    result: HuntResult,
    config: HuntConfig,
    ablator_metrics: dict[str, float],
    reader_metrics: dict[str, float],
    effects: EffectRows,
) -> None:
    truth = result.truth
    atomic_write_json(
        result.run_dir / "hunt.json",
        {
            "ablator": {**ablator_metrics, "absorption_fraction": _finite(truth.mean_fraction)},
            "reader": reader_metrics or "the reader space itself (true-feature readout)",
            "ablated_latents": int(effects.latents_R.shape[0]),
            "ground_truth": [
                {
                    "parent_feature": p.parent_feature,
                    "parent_latent": p.parent_latent,
                    "absorbing_latent": p.absorbing_latent,
                    "absorber_rate": p.rate,
                }
                for p in truth.absorbed
            ],
            "found": sorted(result.found),
            "at_default": result.at_default.record(),
            "baseline_at_default": result.baseline_at_default.record(),
            "sweep": {
                "ablation": [s.record() for s in result.ablation_sweep],
                "decoder_cosine_baseline": [s.record() for s in result.baseline_sweep],
            },
        },
    )
    save_precision_recall(
        result.run_dir / "precision_recall.png",
        result.ablation_sweep,
        result.baseline_sweep,
        result.at_default,
    )
    print_table(result.ablation_sweep, result.baseline_sweep, config.cooccurrence_threshold)

"""The absorption hunt on planted ground truth: train an absorbing ablator, hunt, score, report."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from sae_hacking.config import flag_of
from sae_hacking.core.thresholds import otsu_thresholds
from sae_hacking.devices import command_line, free_memory_bytes, resolve_device
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config
from sae_hacking.memory import check_fits
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.experiments.hunt.cases import hunt_source
from sae_hacking.toy.experiments.hunt.config import HuntConfig
from sae_hacking.toy.experiments.hunt.model import (
    FiringThreshold,
    Reader,
    ReaderSpaceSource,
    build_downstream,
)
from sae_hacking.toy.experiments.hunt.report import print_table, save_precision_recall
from sae_hacking.toy.experiments.hunt.scoring import (
    METHODS,
    GroundTruth,
    PairTable,
    Score,
    ground_truth,
    method_scores,
)
from sae_hacking.toy.experiments.hunt.steps import (
    ablation_effects,
    count_cooccurrences,
    pair_table,
    sampler,
)
from sae_hacking.toy.metrics.absorption import AbsorptionThresholds
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainSettings, train

SCRIPT = "toy_absorption_hunt"
# The original toolkit's bar on the cosine of sign patterns.
ORIGINAL_COSINE = 0.5
console = Console(stderr=True)


@dataclass(frozen=True)
class HuntResult:
    """What the hunt found, and every method's scores against the truth."""

    run_dir: Path
    truth: GroundTruth
    found: set[tuple[int, int]]
    table: PairTable
    at_default: dict[str, Score]
    sweeps: dict[str, list[Score]]


def default_bars(config: HuntConfig) -> dict[str, float]:
    """Each method's threshold at its default (the original's cosine 0.5 is its own)."""
    return {
        "original": ORIGINAL_COSINE,
        "decoder": config.cosine_sim_threshold,
        "decoder+never": config.cosine_sim_threshold,
        "never": float("nan"),
        "effect+never": config.cosine_sim_threshold,
        "ranked": config.score_threshold,
    }


def _train_sae(
    sae: TopKSAE, source: Any, config: HuntConfig, generator: torch.Generator
) -> dict[str, float]:
    eval_x_BM, _ = source.sample(4096, generator)
    settings = TrainSettings(config.steps, config.batch_size, config.lr, log_every=config.steps)
    result = train(sae, source, settings, generator, eval_x_BM)
    sae.eval()
    return {k: result.final.evaluation.scalars[k] for k in ("fvu", "l0", "mmcs", "mcc")}


@dataclass(frozen=True)
class TrainedAblator:
    """The data source and trained ablator of one seed, and the random state right after training.

    Settings that differ only downstream of the ablator (downstream map, reader, effect space,
    thresholds) share it: ``run(config, trained)`` continues from the saved random state, so the
    result is the same as a run that trained it afresh.
    """

    source: TreeSource
    sae: TopKSAE
    metrics: dict[str, float]
    random_state: torch.Tensor


def train_ablator(config: HuntConfig, device: torch.device) -> TrainedAblator:
    """Build the tree source and train the ablator SAE on it, from the config's seed."""
    generator = torch.Generator(device=device).manual_seed(config.seed)
    source = hunt_source(config.hierarchy, config.model_dim, generator)
    width = config.ablator_width or source.features_NM.shape[0]
    console.print(f"training the ablator: top-{config.ablator_k} SAE, {width} latents")
    sae = TopKSAE(TopKShape(config.model_dim, width, config.ablator_k), generator)
    metrics = _train_sae(sae, source, config, generator)
    return TrainedAblator(source, sae, metrics, generator.get_state())


def run(config: HuntConfig, trained: TrainedAblator | None = None) -> HuntResult:
    """Make the run directory, then train, hunt, score and write hunt.json and precision_recall.png.

    ``trained`` (from ``train_ablator`` with the same data and ablator options) skips training
    the ablator.
    """
    device = resolve_device(config.device)
    torch.set_num_threads(config.threads)
    needed, costliest = config.memory_estimate()
    check_fits(needed, flag_of(costliest), "a hunt of these sizes", free_memory_bytes(device))
    run_dir = make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    write_config(run_dir, config, command_line())
    trained = trained or train_ablator(config, device)
    generator = torch.Generator(device=device)
    generator.set_state(trained.random_state)
    source, raw_ablator, ablator_metrics = trained.source, trained.sae, trained.metrics
    ablator = FiringThreshold(raw_ablator, config.firing_threshold)
    if config.fit_thresholds == "otsu":
        with torch.no_grad():
            fit_BE = raw_ablator.encode_dense(source.sample(config.eval_samples, generator)[0])
        ablator = FiringThreshold(
            raw_ablator, otsu_thresholds(fit_BE).clamp_min(config.firing_threshold)
        )

    downstream = build_downstream(
        config.downstream,
        source.features_NM,
        source.parent_N,
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
    spaces = tuple(dict.fromkeys(("latents", config.effect_space)))
    effects = ablation_effects(
        ablator,
        downstream,
        reader,
        draw,
        config.samples,
        config.hunt_batch_size,
        config.abridge_ablations_to or config.ablator_k,
        spaces,
    )
    ablated = effects[config.effect_space]
    latents_R = ablated.latents_R.to(device)
    table = pair_table(
        latents_R,
        {
            "effect": ablated.rows_RD.to(device),
            "sign": torch.sign(effects["latents"].rows_RD.to(device)),
            "decoder": raw_ablator.decoder_directions().detach()[latents_R],
        },
        cooccurrences,
    )
    bars = default_bars(config)
    at_default = {m.name: method_scores(table, truth.pairs, m, (bars[m.name],))[0] for m in METHODS}
    sweeps = {
        m.name: method_scores(table, truth.pairs, m, config.sweep_thresholds) for m in METHODS
    }
    found = table.pairs(_ranked_keep(table, config.score_threshold))
    result = HuntResult(run_dir, truth, found, table, at_default, sweeps)
    _write(result, config, ablator_metrics, reader_metrics, int(latents_R.shape[0]))
    return result


def _ranked_keep(table: PairTable, bar: float) -> torch.Tensor:
    (ranked,) = [m for m in METHODS if m.name == "ranked"]
    return ranked.keep(table, bar)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _write(
    result: HuntResult,
    config: HuntConfig,
    ablator_metrics: dict[str, float],
    reader_metrics: dict[str, float],
    ablated_latents: int,
) -> None:
    truth = result.truth
    atomic_write_json(
        result.run_dir / "hunt.json",
        {
            "ablator": {**ablator_metrics, "absorption_fraction": _finite(truth.mean_fraction)},
            "reader": reader_metrics or "the reader space itself (true-feature readout)",
            "effect_space": config.effect_space,
            "ablated_latents": ablated_latents,
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
            "methods": {m.name: m.description for m in METHODS},
            "at_default": {name: s.record() for name, s in result.at_default.items()},
            "sweep": {name: [s.record() for s in scores] for name, scores in result.sweeps.items()},
        },
    )
    save_precision_recall(result.run_dir / "precision_recall.png", result.sweeps, result.at_default)
    print_table(result.at_default, {m.name: m.description for m in METHODS})

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
from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.synthetic_models import default_width as synthetic_width
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.experiments.hunt.cases import hunt_source
from sae_hacking.toy.experiments.hunt.config import (
    TOY_FIRING_THRESHOLD,
    TRUTH_BATCH,
    HuntConfig,
)
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
    hierarchy_truth,
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

    source: TreeSource | SyntheticSource
    sae: TopKSAE
    metrics: dict[str, float]
    random_state: torch.Tensor


def seeded_source(
    config: HuntConfig, device: torch.device
) -> tuple[TreeSource | SyntheticSource, torch.Generator]:
    """The data source, and the config's seeded generator after building it."""
    generator = torch.Generator(device=device).manual_seed(config.seed)
    return hunt_source(config, generator), generator


def train_ablator(
    config: HuntConfig,
    device: torch.device,
    seeded: tuple[TreeSource | SyntheticSource, torch.Generator] | None = None,
) -> TrainedAblator:
    """Build the source (or take ``seeded_source``'s) and train the ablator SAE on it."""
    source, generator = seeded or seeded_source(config, device)
    num_features, model_dim = source.features_NM.shape
    width = config.ablator_width or default_width(config, num_features)
    console.print(f"training the ablator: top-{config.ablator_k} SAE, {width} latents")
    sae = TopKSAE(TopKShape(model_dim, width, config.ablator_k), generator)
    metrics = _train_sae(sae, source, config, generator)
    return TrainedAblator(source, sae, metrics, generator.get_state())


def default_width(config: HuntConfig, num_features: int) -> int:
    """As wide as the tree has features; on a synthetic model, its SAE width."""
    if config.synthetic_model is None:
        return num_features
    return synthetic_width(config.synthetic_model, num_features)


def run(config: HuntConfig, trained: TrainedAblator | None = None) -> HuntResult:
    """Make the run directory, then train, hunt, score and write hunt.json and precision_recall.png.

    ``trained`` (from ``train_ablator`` with the same data and ablator options) skips training
    the ablator.
    """
    device = resolve_device(config.device)
    torch.set_num_threads(config.threads)
    needed, costliest = config.memory_estimate()
    check_fits(needed, flag_of(costliest), "a hunt of these sizes", free_memory_bytes(device))
    # A synthetic model loads (and is refused) before the run directory is made.
    seeded = None if trained is not None else seeded_source(config, device)
    run_dir = make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    write_config(run_dir, config, command_line())
    trained = trained or train_ablator(config, device, seeded)
    generator = torch.Generator(device=device)
    generator.set_state(trained.random_state)
    source, raw_ablator, ablator_metrics = trained.source, trained.sae, trained.metrics
    bar = firing_bar(config, source)
    ablator = FiringThreshold(raw_ablator, bar)
    if config.fit_thresholds == "otsu":
        with torch.no_grad():
            fit_BE = raw_ablator.encode_dense(source.sample(config.eval_samples, generator)[0])
        ablator = FiringThreshold(raw_ablator, otsu_thresholds(fit_BE).clamp_min(bar))

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

    truth = measured_truth(ablator, source, config, generator)
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
    ablator_metrics = {**ablator_metrics, "firing_threshold": bar}
    _write(result, config, ablator_metrics, reader_metrics, int(latents_R.shape[0]))
    return result


def firing_bar(config: HuntConfig, source: TreeSource | SyntheticSource) -> float:
    """``--firing-threshold``, or by default half a feature's magnitude: 0.5 on a toy tree (unit
    features), half the mean firing magnitude on a synthetic model (2.25 on SynthSAEBench, whose
    magnitudes run from 5 to 4). Measured on synth-sae-bench-1k (``benchmarks/hunt_synthetic.py``):
    at 0.5 its absorbed pairs co-occur at 6.4 times chance (median), the parent latent still firing
    weakly beside the absorber; at 2.25 at 0.27 times chance."""
    if config.firing_threshold is not None:
        return config.firing_threshold
    if isinstance(source, SyntheticSource):
        return 0.5 * source.mean_N.mean().item()
    return TOY_FIRING_THRESHOLD


def measured_truth(
    ablator: FiringThreshold,
    source: TreeSource | SyntheticSource,
    config: HuntConfig,
    generator: torch.Generator,
) -> GroundTruth:
    """The absorbed pairs of the gated ablator: on a synthetic model as ``train_synthetic_sae.py``
    measures its child absorbers, on a toy tree by the toy absorption metric."""
    if isinstance(source, SyntheticSource):
        return hierarchy_truth(
            ablator, source, config.eval_samples, TRUTH_BATCH, generator, config.min_absorber_rate
        )
    x_BM, feature_acts_BN = source.sample(config.eval_samples, generator)
    return ground_truth(
        ablator,
        source.features_NM,
        source.parent_N,
        x_BM,
        feature_acts_BN,
        AbsorptionThresholds(),
        config.min_absorber_rate,
    )


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
            **truth.detail,
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

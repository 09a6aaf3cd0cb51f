"""Running the hedging-versus-absorption experiment: training every variant, result files.

``run(HedgingAbsorptionConfig(...))`` is the whole tool.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from sae_hacking.config import flag_of
from sae_hacking.devices import command_line, free_memory_bytes, resolve_device
from sae_hacking.errors import RunStopped
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import save_bundle
from sae_hacking.io.rundir import (
    default_output_dir,
    make_run_dir,
    removed_unless_used,
    write_config,
)
from sae_hacking.memory import check_fits
from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.data.tree_spec import load_forest
from sae_hacking.toy.experiments.hedging.config import HedgingAbsorptionConfig
from sae_hacking.toy.experiments.hedging.experiment import (
    SAESettings,
    Variant,
    build_sae,
    notebook_settings,
    score_sae,
    variants,
)
from sae_hacking.toy.experiments.hedging.plots import feature_names, save_heatmaps
from sae_hacking.toy.metrics.absorption import AbsorptionThresholds
from sae_hacking.toy.training.loop import train

RUN_PREFIX = "toy-hedging-absorption"

TABLE_COLUMNS = (
    ("absorption_fraction", "absorption"),
    ("full_absorption_rate", "full abs."),
    ("decoder_hedging", "dec. hedging"),
    ("encoder_hedging", "enc. hedging"),
    ("encoder_absorption", "enc. absorption"),
    ("child_decoder_parent", "child dec.→parent"),
    ("worst_child_cos", "worst child |cos|"),
    ("fvu", "FVU"),
)


@dataclass(frozen=True)
class Row:
    """One trained SAE's scores, for the table and the JSON file."""

    hierarchy: str
    variant: Variant
    scores: dict[str, Any]

    def record(self) -> dict[str, Any]:
        beta = self.variant.inner_multiplier
        return {
            "hierarchy": self.hierarchy,
            "variant": self.variant.name,
            "inner_multiplier": None if beta is None else (str(beta) if math.isinf(beta) else beta),
            **self.scores,
        }


@dataclass(frozen=True)
class HedgingOutcome:
    """Where the results are, and every SAE's scores (the rows of metrics.json)."""

    run_dir: Path
    rows: list[dict[str, Any]]


def thresholds_of(config: HedgingAbsorptionConfig) -> AbsorptionThresholds:
    return AbsorptionThresholds(
        config.fraction_cos_threshold,
        config.full_cos_threshold,
        config.projection_threshold,
        config.max_absorbers,
        config.active_threshold,
    )


def build_source(
    config: HedgingAbsorptionConfig, name: str, device: torch.device
) -> TreeSource | SyntheticSource:
    """A toy tree with random directions, or the synthetic model's own data."""
    if config.synthetic_model is not None:
        from sae_hacking.toy.data.synthetic_models import load_synthetic_model

        model = load_synthetic_model(name, str(device), flag="--synthetic-model")
        return SyntheticSource(model, device)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    return TreeSource.build(load_forest(name), config.model_dim, generator)


def run_hierarchy(
    config: HedgingAbsorptionConfig, hierarchy: str, run_dir: Path, device: torch.device
) -> tuple[list[Row], list[tuple[str, torch.nn.Module]], TreeSource | SyntheticSource]:
    """Train and score every variant on one hierarchy (same data draws for each)."""
    source = build_source(config, hierarchy, device)
    num_features = source.features_NM.shape[0]
    top_N = source.parent_N < 0
    inner_width = config.inner_width or int(top_N.sum())
    ordering = None
    if config.init_to_truth:
        # Top parents first, so that they start as the inner Matryoshka latents.
        default = torch.cat([top_N.nonzero(), (~top_N).nonzero()]).flatten()
        chosen = config.feature_ordering
        ordering = default if chosen is None else torch.tensor(chosen, dtype=torch.long)
    settings = SAESettings(
        width=num_features,
        inner_width=inner_width,
        sparsity=config.sparsity,
        k=config.k,
        l1_coefficient=config.l1_coefficient,
    )
    training = notebook_settings(config.steps, config.batch_size, config.lr)
    eval_gen = torch.Generator(device=device).manual_seed(config.seed + 1)
    x_BM, acts_BN = source.sample(config.eval_samples, eval_gen)
    acts_BN = acts_BN.to_dense() if acts_BN.is_sparse else acts_BN
    rows, saes = [], []
    for variant in variants(config.inner_multipliers):
        sae_gen = torch.Generator(device=device).manual_seed(config.seed + 2)
        sae = build_sae(variant, source, settings, ordering, config.init_noise, sae_gen)
        data_gen = torch.Generator(device=device).manual_seed(config.seed + 3)
        train(sae, source, training, data_gen, x_BM[: config.batch_size])
        scores = score_sae(sae, source, x_BM, acts_BN, thresholds_of(config), config.probe_k_max)
        rows.append(Row(hierarchy, variant, scores))
        saes.append((variant.name, sae))
        tensors: dict[str, torch.Tensor] = dict(sae.state_dict())
        name = f"sae-{_slug(Path(hierarchy).stem)}-{_slug(variant.name)}"
        save_bundle(run_dir, name, tensors, {"shape": sae.hyperparameters()})
    save_bundle(
        run_dir,
        f"features-{_slug(Path(hierarchy).stem)}",
        {"features_NM": source.features_NM, "parent_N": source.parent_N},
        {"names": feature_names(source)},
    )
    return rows, saes, source


def _slug(text: str) -> str:
    """A file-name-safe spelling; keeps digits and dots so "balanced 0.25" and "balanced 0.5" differ."""
    return "".join(ch if ch.isalnum() or ch == "." else "-" for ch in text)


def results_table(rows: list[Row]) -> Table:
    table = Table(title="Hedging vs absorption against the true features (means over parents)")
    table.add_column("hierarchy")
    table.add_column("SAE")
    table.add_column("β", justify="right")
    for _, label in TABLE_COLUMNS:
        table.add_column(label, justify="right")
    for row in rows:
        cells = [f"{row.scores[key]:.3f}" for key, _ in TABLE_COLUMNS]
        table.add_row(row.hierarchy, row.variant.name, row.variant.beta_label, *cells)
    return table


def run(config: HedgingAbsorptionConfig, console: Console | None = None) -> HedgingOutcome:
    """Train every variant on every hierarchy; write metrics.json, SAE bundles and heatmaps.png.

    Every check that can refuse the config runs before the run directory is made.
    """
    console = console or Console()
    device = resolve_device(config.device)
    torch.set_num_threads(config.threads)
    needed, costliest = config.memory_estimate()
    check_fits(needed, flag_of(costliest), "a run of these sizes", free_memory_bytes(device))
    run_dir = make_run_dir(config.output_dir or default_output_dir(), RUN_PREFIX)
    write_config(run_dir, config, command_line())
    try:
        with removed_unless_used(run_dir):
            records = train_and_score(config, run_dir, device, console)
    except KeyboardInterrupt:
        where = (
            f"the SAEs trained so far are in {run_dir}" if run_dir.exists() else "nothing was saved"
        )
        raise RunStopped(
            f"stopped: {where}; this experiment does not resume, run it again"
        ) from None
    console.print(f"results in {run_dir}")
    return HedgingOutcome(run_dir, records)


def train_and_score(
    config: HedgingAbsorptionConfig, run_dir: Path, device: torch.device, console: Console
) -> list[dict[str, Any]]:
    rows: list[Row] = []
    panels = []
    for hierarchy in config.sources:
        hierarchy_rows, saes, source = run_hierarchy(config, hierarchy, run_dir, device)
        rows.extend(hierarchy_rows)
        panels.append((hierarchy, saes, source))
    records = [row.record() for row in rows]
    atomic_write_json(run_dir / "metrics.json", {"rows": records})
    save_heatmaps(run_dir / "heatmaps.png", panels)
    console.print(results_table(rows))
    return records

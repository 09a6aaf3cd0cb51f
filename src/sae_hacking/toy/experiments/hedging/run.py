"""Running the hedging-versus-absorption experiment: config, training every variant, result files."""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from sae_hacking.devices import command_line
from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import save_bundle
from sae_hacking.io.rundir import make_run_dir, write_config
from sae_hacking.toy.data.tree import TreeSource, compile_forest
from sae_hacking.toy.data.tree_spec import load_forest
from sae_hacking.toy.experiments.hedging.experiment import (
    SAESettings,
    Variant,
    build_sae,
    notebook_settings,
    score_sae,
    variants,
)
from sae_hacking.toy.experiments.hedging.plots import save_heatmaps
from sae_hacking.toy.metrics.absorption import AbsorptionThresholds
from sae_hacking.toy.saes.matryoshka import parse_ordering
from sae_hacking.toy.training.loop import train

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
class HedgingAbsorptionConfig:
    """Everything one run of the experiment needs (built by the script from its flags)."""

    output_dir: Path
    device: torch.device
    hierarchies: tuple[str, ...] = ("notebook", "notebook-unbalanced")
    inner_multipliers: tuple[float, ...] = (0.1, 0.17, 0.25, 0.5)
    model_dim: int = 50
    sparsity: str = "l1"
    k: int = 1
    l1_coefficient: float = 3e-2
    init_to_truth: bool = True
    feature_ordering: str | None = None
    # None: as many inner latents as the tree has parentless features (its top parents).
    inner_width: int | None = None
    init_noise: float = 0.0
    steps: int = 1500
    batch_size: int = 4096
    lr: float = 3e-3
    eval_samples: int = 20_000
    probe_k_max: int = 3
    seed: int = 0
    thresholds: AbsorptionThresholds = field(default_factory=AbsorptionThresholds)

    def __post_init__(self) -> None:
        for spec in self.hierarchies:
            try:
                forest = load_forest(spec)
            except ValueError as error:
                raise UserInputError("--hierarchy", str(error)) from error
            tree = compile_forest(forest)
            features = tree.num_features
            inner = self.inner_width or int((tree.parent_N < 0).sum())
            if inner >= features:
                raise UserInputError(
                    "--inner-width",
                    f"{spec}: {inner} inner latents of {features} leave no outer one",
                )
            if self.feature_ordering is not None:
                try:
                    parse_ordering(self.feature_ordering, features)
                except ValueError as error:
                    raise UserInputError("--feature-ordering", f"{spec}: {error}") from error
        if any(m <= 0 or math.isinf(m) for m in self.inner_multipliers):
            raise UserInputError(
                "--inner-multipliers", "each must be positive and finite (0 and inf always run)"
            )
        if self.sparsity not in ("l1", "topk"):
            raise UserInputError("--sparsity", f"'{self.sparsity}' is not l1 or topk")
        for flag, value in (
            ("--k", self.k),
            ("--steps", self.steps),
            ("--batch-size", self.batch_size),
            ("--model-dim", self.model_dim),
            ("--eval-samples", self.eval_samples),
            ("--probe-k-max", self.probe_k_max),
        ):
            if value < 1:
                raise UserInputError(flag, f"{value} must be at least 1")
        if self.inner_width is not None and self.inner_width < 1:
            raise UserInputError("--inner-width", f"{self.inner_width} must be at least 1")
        if self.lr <= 0:
            raise UserInputError("--lr", f"{self.lr} must be positive")
        if self.l1_coefficient < 0:
            raise UserInputError("--l1-coefficient", f"{self.l1_coefficient} must be >= 0")


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


def run_hierarchy(
    config: HedgingAbsorptionConfig, hierarchy: str, run_dir: Path
) -> tuple[list[Row], list[tuple[str, torch.nn.Module]], TreeSource]:
    """Train and score every variant on one hierarchy (same data draws for each)."""
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    source = TreeSource.build(load_forest(hierarchy), config.model_dim, generator)
    num_features = source.features_NM.shape[0]
    top_N = source.parent_N < 0
    inner_width = config.inner_width or int(top_N.sum())
    ordering = None
    if config.init_to_truth:
        # Top parents first, so that they start as the inner Matryoshka latents.
        default = torch.cat([top_N.nonzero(), (~top_N).nonzero()]).flatten().tolist()
        text = config.feature_ordering or ",".join(str(n) for n in default)
        ordering = parse_ordering(text, num_features)
    settings = SAESettings(
        width=num_features,
        inner_width=inner_width,
        sparsity=config.sparsity,
        k=config.k,
        l1_coefficient=config.l1_coefficient,
    )
    training = notebook_settings(config.steps, config.batch_size, config.lr)
    eval_gen = torch.Generator(device=config.device).manual_seed(config.seed + 1)
    x_BM, acts_BN = source.sample(config.eval_samples, eval_gen)
    rows, saes = [], []
    for variant in variants(config.inner_multipliers):
        sae_gen = torch.Generator(device=config.device).manual_seed(config.seed + 2)
        sae = build_sae(variant, source, settings, ordering, config.init_noise, sae_gen)
        data_gen = torch.Generator(device=config.device).manual_seed(config.seed + 3)
        train(sae, source, training, data_gen, x_BM[: config.batch_size])
        scores = score_sae(sae, source, x_BM, acts_BN, config.thresholds, config.probe_k_max)
        rows.append(Row(hierarchy, variant, scores))
        saes.append((variant.name, sae))
        tensors: dict[str, torch.Tensor] = dict(sae.state_dict())
        name = f"sae-{_slug(Path(hierarchy).stem)}-{_slug(variant.name)}"
        save_bundle(run_dir, name, tensors, {"shape": sae.hyperparameters()})
    save_bundle(
        run_dir,
        f"features-{_slug(Path(hierarchy).stem)}",
        {"features_NM": source.features_NM, "parent_N": source.parent_N},
        {"names": list(source.tree.names)},
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


def run(config: HedgingAbsorptionConfig, console: Console | None = None) -> Path:
    """Train every variant on every hierarchy; write metrics.json, SAE bundles and heatmaps.png."""
    console = console or Console()
    run_dir = make_run_dir(config.output_dir, "toy-hedging-absorption")
    write_config(run_dir, config, command_line())
    rows: list[Row] = []
    panels = []
    for hierarchy in config.hierarchies:
        hierarchy_rows, saes, source = run_hierarchy(config, hierarchy, run_dir)
        rows.extend(hierarchy_rows)
        panels.append((hierarchy, saes, source))
    atomic_write_json(run_dir / "metrics.json", {"rows": [row.record() for row in rows]})
    save_heatmaps(run_dir / "heatmaps.png", panels)
    console.print(results_table(rows))
    console.print(f"results in {run_dir}")
    return run_dir

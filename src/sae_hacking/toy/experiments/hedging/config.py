"""The options of the hedging-versus-absorption experiment (toy_hedging_absorption.py), declared once.

Imports nothing heavy (the hierarchies are read as JSON specs, not compiled), so ``--help`` and
every option error answer at once.
"""

import math
from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    check_options,
    device_option,
    each,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    threads_option,
)
from sae_hacking.errors import UserInputError
from sae_hacking.toy.data.synthetic_models import (
    check_model_source,
    describe_sources,
    feature_count,
)
from sae_hacking.toy.data.tree_spec import PRESETS, feature_counts, load_forest

BYTES_PER_FLOAT = 4


def positive_and_finite(value: float) -> str | None:
    if value <= 0 or math.isinf(value) or math.isnan(value):
        return f"{value} must be positive and finite (0 and inf always run)"
    return None


def at_least_one(values: tuple[object, ...]) -> str | None:
    return None if values else "give at least one"


@dataclass(frozen=True)
class HedgingAbsorptionConfig:
    """Run the notebook's experiment and write metrics.json, heatmaps.png and the SAEs."""

    hierarchy: tuple[str, ...] = option(
        ("notebook", "notebook-unbalanced"),
        f"preset ({', '.join(PRESETS)}) or JSON spec file; repeatable or comma-separated",
        check=at_least_one,
    )
    synthetic_model: str | None = option(
        None,
        "run on a sae-lens synthetic model (SynthSAEBench) instead of --hierarchy: "
        f"{describe_sources()}; --model-dim is then the model's",
    )
    inner_multipliers: tuple[float, ...] = option(
        (0.1, 0.17, 0.25, 0.5),
        "balanced Matryoshka inner-loss multipliers (beta), comma-separated",
        check=each(positive_and_finite),
    )
    model_dim: int = option(50, "dimension of the activation space", check=positive)
    sparsity: str = option("l1", "l1 (ReLU + L1) or topk", check=one_of("l1", "topk"))
    k: int = option(1, "k for --sparsity topk", check=positive)
    l1_coefficient: float = option(3e-2, "L1 coefficient", check=non_negative)
    init_to_truth: bool = option(True, "start each SAE at the true features")
    feature_ordering: tuple[int, ...] | None = option(
        None,
        "feature index for each latent at init, e.g. 0,1,2,3",
        default_text="top parents first",
        check=lambda order: (
            None
            if order is None or len(set(order)) == len(order) > 0
            else f"'{','.join(map(str, order))}' must list distinct feature indices"
        ),
    )
    inner_width: int | None = option(
        None,
        "latents in the inner Matryoshka level",
        default_text="the tree's top parents",
        check=positive,
    )
    init_noise: float = option(0.0, "noise added to the true features at init", check=non_negative)
    steps: int = option(1500, "training steps per SAE", check=positive)
    batch_size: int = option(4096, "samples per step", check=positive)
    lr: float = option(3e-3, "Adam learning rate", check=positive)
    eval_samples: int = option(20_000, "held-out samples for the metrics", check=positive)
    probe_k_max: int = option(3, "largest k of the k-sparse probes", check=positive)
    fraction_cos_threshold: float = option(0.1, "absorber cosine, fraction")
    full_cos_threshold: float = option(0.025, "absorber cosine, full")
    projection_threshold: float = option(0.4, "absorbed share of t")
    max_absorbers: int = option(3, "latents that may share a parent", check=positive)
    active_threshold: float = option(
        0.0, "main latent counts as off at or below", check=non_negative
    )
    seed: int = option(0, "seed of data, directions and SAEs")
    # Measured on 2 cores: a second intra-op thread makes these tiny matmuls far slower.
    threads: int = threads_option()
    device: str = device_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        if self.synthetic_model is not None:
            self.check_synthetic_model(self.synthetic_model)
            return
        for spec in self.hierarchy:
            try:
                forest = load_forest(spec)
            except ValueError as error:
                raise ConfigError("hierarchy", str(error)) from error
            features, top = feature_counts(forest)
            if features == 0:
                raise ConfigError("hierarchy", f"{spec}: no read-out node, so no features")
            self.check_widths(spec, features, self.inner_width or top)

    @property
    def sources(self) -> tuple[str, ...]:
        """What the run trains on: the synthetic model, or else every hierarchy."""
        return (self.synthetic_model,) if self.synthetic_model else self.hierarchy

    def check_synthetic_model(self, spec: str) -> None:
        try:
            check_model_source(spec, "synthetic_model")
        except UserInputError as error:
            raise ConfigError("synthetic_model", str(error).split(": ", 1)[-1]) from error
        features = feature_count(spec)
        if features is not None:
            self.check_widths(spec, features, self.inner_width or 0)

    def check_widths(self, spec: str, features: int, inner: int) -> None:
        if inner >= features:
            raise ConfigError(
                "inner_width", f"{spec}: {inner} inner latents of {features} leave no outer one"
            )
        order = self.feature_ordering
        if order is not None and (min(order) < 0 or max(order) >= features):
            raise ConfigError(
                "feature_ordering",
                f"{spec}: '{','.join(map(str, order))}' has indices outside [0, {features})",
            )

    def memory_estimate(self) -> tuple[int, str]:
        """Peak bytes of the run (float32, an estimate) and the size option to lower first.

        Every SAE is kept for the heat-maps; each is as wide as its tree has features (N). A
        training batch holds inputs, every node's draws, pre-activations and their gradients;
        the held-out set its inputs, feature magnitudes and codes (for the probes).
        """
        if self.synthetic_model is not None:
            # A hub id's size is unknown until loaded: counted as SynthSAEBench-16k's.
            features = feature_count(self.synthetic_model) or 16_384
        else:
            features = max(feature_counts(load_forest(spec))[0] for spec in self.hierarchy)
        saes = len(self.sources) * (2 + len(self.inner_multipliers))
        weights = saes * 4 * (2 * features * self.model_dim + features + self.model_dim)
        floats = (
            weights
            + self.batch_size * (2 * self.model_dim + 6 * features)
            + self.eval_samples * (2 * self.model_dim + 4 * features)
        )
        # Blamed: the size option the most times above its default (the notebook tree has 4).
        sizes = {
            "synthetic_model" if self.synthetic_model else "hierarchy": features / 4,
            "model_dim": self.model_dim / 50,
            "batch_size": self.batch_size / 4096,
            "eval_samples": self.eval_samples / 20_000,
        }
        return BYTES_PER_FLOAT * floats, max(sizes, key=sizes.__getitem__)

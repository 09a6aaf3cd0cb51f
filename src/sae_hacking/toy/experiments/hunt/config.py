"""The toy hunt's options: one frozen config, the single source of its flags, help and checks.

Imports nothing heavy, so ``--help`` and flag errors answer at once.
"""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    between,
    check_options,
    count_up_to,
    device_option,
    each,
    given_options,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    threads_option,
)
from sae_hacking.errors import UserInputError
from sae_hacking.toy.data.synthetic_models import (
    PRESETS as SYNTHETIC_PRESETS,
)
from sae_hacking.toy.data.synthetic_models import (
    check_model_source,
    default_width,
    describe_sources,
    feature_count,
    hidden_size,
)
from sae_hacking.toy.data.tree_spec import PRESETS, feature_counts, load_forest

# Beyond any sense for a toy hunt (its presets take seconds at 50,000 samples): a larger count
# is a typo, refused before anything runs.
MAX_SAMPLES = 10**12
MAX_STEPS = 10**9
BYTES_PER_FLOAT = 4
# Per pair of ablated latents, the pair table and its scoring hold about this many 4-byte words:
# two index pairs and a lookup (int64), the count, its expectation and confidence (float64 on the
# way), three similarities, the ranked score and masks.
FLOATS_PER_PAIR = 24
# The ground truth on a synthetic model is streamed in batches of this many samples.
TRUTH_BATCH = 8192
# A hub id's sizes are unknown until it loads: counted as SynthSAEBench-16k's.
UNKNOWN_MODEL = SYNTHETIC_PRESETS["synth-sae-bench-16k"]

# Half a toy feature's magnitude (1); a synthetic model's bar is half of its own mean magnitude.
TOY_FIRING_THRESHOLD = 0.5
DOWNSTREAM_KINDS = ("readout", "parents", "random")
# The case built so that decoder cosines mislead (cases.py), beside the tree presets.
MISLEADING = "misleading"
READERS = ("readout", "sae")
# Where an ablation's effect is compared (see model.Reader): reader SAE latents (the original),
# its pre-activations, the reader hook's activations, or the reader SAE's reconstruction.
EFFECT_SPACES = ("latents", "preactivations", "activations", "reconstruction")


def share(value: float) -> str | None:
    return None if 0 < value <= 1 else f"{value} must lie in (0, 1]"


@dataclass(frozen=True)
class HuntConfig:
    """Hunt planted absorption: train an absorbing ablator SAE on a toy tree or a sae-lens
    synthetic model, run co-occurrence, selective ablation and pair search on its samples, and
    score the pairs found against the ablator's truly absorbed pairs. Writes hunt.json and
    precision_recall.png, prints the table."""

    hierarchy: str = option(
        "25x3",
        f"preset ({', '.join(PRESETS)}), {MISLEADING} (decoder cosines mislead) or JSON spec file",
    )
    synthetic_model: str | None = option(
        None,
        "hunt on a sae-lens synthetic model (SynthSAEBench) instead of --hierarchy: "
        f"{describe_sources()}; --model-dim is then its hidden size",
    )
    model_dim: int = option(128, "dimension of the activation space", check=positive)
    ablator_width: int | None = option(
        None,
        "ablator SAE latents",
        check=positive,
        default_text="number of true features; a synthetic model's SAE width",
    )
    ablator_k: int = option(8, "k of the ablator's top-k", check=positive)
    steps: int = option(
        3000, "training steps per SAE", check=count_up_to(MAX_STEPS, "more than a day")
    )
    batch_size: int = option(
        1024, "training samples per step", check=count_up_to(MAX_SAMPLES, "beyond any toy")
    )
    lr: float = option(3e-3, "Adam learning rate", check=positive)
    firing_threshold: float | None = option(
        None,
        "ablator latents fire only above this (0: raw top-k SAE)",
        check=non_negative,
        default_text=f"{TOY_FIRING_THRESHOLD}; on a synthetic model half its mean firing magnitude",
    )
    fit_thresholds: str = option(
        "none",
        "otsu: also fit each ablator latent a bar splitting its weak and strong activations "
        "(Otsu), the larger of it and --firing-threshold counting",
        check=one_of("none", "otsu"),
    )
    downstream: str = option(
        "readout",
        "readout (true features, then ReLU), parents (parent features only, then ReLU) or "
        "random (random layer, ReLU)",
        check=one_of(*DOWNSTREAM_KINDS),
    )
    downstream_width: int = option(256, "width of a random downstream layer", check=positive)
    downstream_offset: float = option(0.0, "subtracted before the downstream ReLU")
    reader: str = option(
        "readout",
        "readout (the reader space itself) or sae (a top-k SAE trained on it)",
        check=one_of(*READERS),
    )
    reader_width: int = option(256, "reader SAE latents", check=positive)
    reader_k: int = option(16, "reader SAE k", check=positive)
    samples: int = option(
        50_000,
        "toy samples (one-token prompts) counted and ablated",
        check=count_up_to(MAX_SAMPLES, "beyond any toy"),
    )
    hunt_batch_size: int = option(
        4096, "samples per hunt batch", check=count_up_to(MAX_SAMPLES, "beyond any toy")
    )
    abridge_ablations_to: int | None = option(
        None, "latents ablated per sample", check=positive, default_text="ablator k"
    )
    effect_space: str = option(
        "activations",
        "where effects are compared: latents (the reader SAE's codes, the original), "
        "preactivations, activations (the reader hook's) or reconstruction",
        check=one_of(*EFFECT_SPACES),
    )
    score_threshold: float = option(
        0.3,
        "the ranked method: effect cosine x exclusion confidence at least this",
        check=between(0.0, 1.0),
    )
    cosine_sim_threshold: float = option(
        0.45, "the thresholded methods: cosine at least this", check=between(-1.0, 1.0)
    )
    sweep_thresholds: tuple[float, ...] = option(
        (0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9),
        "thresholds scored for every method, comma-separated",
        check=each(between(-1.0, 1.0)),
    )
    min_absorber_rate: float = option(
        0.2, "truth: a latent absorbs a parent on at least this share", check=share
    )
    eval_samples: int = option(
        20_000, "samples for the ground truth", check=count_up_to(MAX_SAMPLES, "beyond any toy")
    )
    seed: int = option(0, "seed of data, SAEs and samples")
    threads: int = threads_option()
    device: str = device_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        if self.ablator_width is not None and self.ablator_width < self.ablator_k:
            raise ConfigError("ablator_width", "must be at least --ablator-k")
        if self.reader == "sae" and self.reader_k > self.reader_width:
            raise ConfigError("reader_k", "must be at most --reader-width")
        if not self.sweep_thresholds:
            raise ConfigError("sweep_thresholds", "give at least one threshold")
        if self.synthetic_model is not None:
            self.check_synthetic_model(self.synthetic_model)
            return
        if self.hierarchy == MISLEADING:
            return
        try:
            load_forest(self.hierarchy)
        except ValueError as error:
            raise ConfigError("hierarchy", str(error)) from error

    def check_synthetic_model(self, spec: str) -> None:
        try:
            check_model_source(spec, "synthetic_model")
        except UserInputError as error:
            raise ConfigError("synthetic_model", error.problem) from error
        self.check_given_beside_model(hidden_size(spec))

    def check_given_beside_model(self, hidden: int | None) -> None:
        """Refuse --hierarchy beside a synthetic model, and a --model-dim other than its hidden
        size (checked again once the model is loaded: a flag given at its default shows only
        then, and a hub model's size)."""
        given = given_options(self)
        if "hierarchy" in given:
            raise ConfigError("hierarchy", "give --hierarchy or --synthetic-model, not both")
        if hidden is not None and "model_dim" in given and self.model_dim != hidden:
            raise ConfigError(
                "model_dim",
                f"{self.model_dim} contradicts the synthetic model's hidden size {hidden}; "
                "leave it out",
            )

    def sizes(self) -> tuple[int, int, int]:
        """True features, activation dimension and ablator width, read without building data."""
        spec = self.synthetic_model
        if spec is not None:
            features = feature_count(spec) or UNKNOWN_MODEL.num_features
            model_dim = hidden_size(spec) or UNKNOWN_MODEL.hidden_dim
            return features, model_dim, self.ablator_width or default_width(spec, features)
        if self.hierarchy == MISLEADING:
            features = self.model_dim  # at most: the misleading case needs a dimension a feature
        else:
            features = feature_counts(load_forest(self.hierarchy))[0]
        return features, self.model_dim, self.ablator_width or features

    def memory_estimate(self) -> tuple[int, str]:
        """Peak bytes of the run (float32, an estimate) and the size option to lower first.

        The ablator SAE counts four times (weights, gradients, Adam's two moments); a training
        batch holds inputs, every feature's draw and the latents' pre-activations and gradients;
        the co-occurrence triangle is int64; the effect rows are ablator width x reader space
        (two spaces at most), and a hunt batch holds one reader-space row per ablated latent and
        sample; every pair of ablated latents has a row of the pair table, beside the width x
        width matrix of their cosines. The ground truth holds its samples, or on a synthetic
        model one batch of them beside feature x latent projections and a feature x feature mask.
        """
        features, model_dim, width = self.sizes()
        downstream = self.downstream_width if self.downstream == "random" else features
        reader = self.reader_width if self.reader == "sae" else downstream
        ablated = self.abridge_ablations_to or self.ablator_k
        weights = 4 * (2 * width * model_dim + width + model_dim)
        if self.synthetic_model is None:
            truth = self.eval_samples * (model_dim + features + width)
        else:
            batch = min(self.eval_samples, TRUTH_BATCH)
            truth = batch * (model_dim + features + 2 * width) + features * (3 * width + features)
        floats = (
            weights
            + self.batch_size * (2 * model_dim + features + 3 * width)
            + 2 * width * width  # int64 pair counts: half a square of 8 bytes
            + 2 * width * reader
            + self.hunt_batch_size * (model_dim + width + ablated * reader)
            + FLOATS_PER_PAIR * width * (width - 1) // 2
            + width * width
            + truth
        )
        # Blamed: the size option the most times above its default (25x3 has 100 features, the
        # 1k synthetic preset 1,024).
        sizes = {
            "hierarchy": features / 100 if self.synthetic_model is None else 0,
            "synthetic_model": features / 1024 if self.synthetic_model is not None else 0,
            "ablator_width": (self.ablator_width or 0) / 100,
            "model_dim": self.model_dim / 128 if self.synthetic_model is None else 0,
            "batch_size": self.batch_size / 1024,
            "hunt_batch_size": self.hunt_batch_size / 4096,
            "eval_samples": self.eval_samples / 20_000,
            "reader_width": (reader if self.reader == "sae" else 0) / 256,
            "downstream_width": (downstream if self.downstream == "random" else 0) / 256,
        }
        return BYTES_PER_FLOAT * floats, max(sizes, key=sizes.__getitem__)

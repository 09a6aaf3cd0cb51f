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
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    threads_option,
)
from sae_hacking.toy.data.tree_spec import PRESETS, feature_counts, load_forest

# Beyond any sense for a toy hunt (its presets take seconds at 50,000 samples): a larger count
# is a typo, refused before anything runs.
MAX_SAMPLES = 10**12
MAX_STEPS = 10**9
BYTES_PER_FLOAT = 4

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
    """Hunt planted absorption: train an absorbing ablator SAE on a toy tree, run co-occurrence,
    selective ablation and pair search on toy samples, and score the pairs found against the
    ablator's truly absorbed pairs. Writes hunt.json and precision_recall.png, prints the table."""

    hierarchy: str = option(
        "25x3",
        f"preset ({', '.join(PRESETS)}), {MISLEADING} (decoder cosines mislead) or JSON spec file",
    )
    model_dim: int = option(128, "dimension of the activation space", check=positive)
    ablator_width: int | None = option(
        None, "ablator SAE latents", check=positive, default_text="number of true features"
    )
    ablator_k: int = option(8, "k of the ablator's top-k", check=positive)
    steps: int = option(
        3000, "training steps per SAE", check=count_up_to(MAX_STEPS, "more than a day")
    )
    batch_size: int = option(
        1024, "training samples per step", check=count_up_to(MAX_SAMPLES, "beyond any toy")
    )
    lr: float = option(3e-3, "Adam learning rate", check=positive)
    firing_threshold: float = option(
        0.5, "ablator latents fire only above this (0: raw top-k SAE)", check=non_negative
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
        if self.hierarchy == MISLEADING:
            return
        try:
            load_forest(self.hierarchy)
        except ValueError as error:
            raise ConfigError("hierarchy", str(error)) from error

    def memory_estimate(self) -> tuple[int, str]:
        """Peak bytes of the run (float32, an estimate) and the size option to lower first.

        The ablator SAE counts four times (weights, gradients, Adam's two moments); a training
        batch holds inputs, every feature's draw and the latents' pre-activations and gradients;
        the co-occurrence triangle is int64; the effect rows are ablator width x reader space, and
        a hunt batch holds one reader-space row per ablated latent and sample.
        """
        if self.hierarchy == MISLEADING:
            features = self.model_dim  # at most: the misleading case needs a dimension a feature
        else:
            features = feature_counts(load_forest(self.hierarchy))[0]
        width = self.ablator_width or features
        downstream = self.downstream_width if self.downstream == "random" else features
        reader = self.reader_width if self.reader == "sae" else downstream
        ablated = self.abridge_ablations_to or self.ablator_k
        weights = 4 * (2 * width * self.model_dim + width + self.model_dim)
        floats = (
            weights
            + self.batch_size * (2 * self.model_dim + features + 3 * width)
            + 2 * width * width  # int64 pair counts: half a square of 8 bytes
            + width * reader
            + self.hunt_batch_size * (self.model_dim + width + ablated * reader)
            + self.eval_samples * (self.model_dim + features + width)
        )
        # Blamed: the size option the most times above its default (25x3 has 100 features).
        sizes = {
            "hierarchy": features / 100,
            "ablator_width": (self.ablator_width or 0) / 100,
            "model_dim": self.model_dim / 128,
            "batch_size": self.batch_size / 1024,
            "hunt_batch_size": self.hunt_batch_size / 4096,
            "eval_samples": self.eval_samples / 20_000,
            "reader_width": (reader if self.reader == "sae" else 0) / 256,
            "downstream_width": (downstream if self.downstream == "random" else 0) / 256,
        }
        return BYTES_PER_FLOAT * floats, max(sizes, key=sizes.__getitem__)

"""The options of a toy top-k training run (train_topk_sae_toy.py), declared once, checked by field.

Values left as ``None`` are resolved in ``__post_init__`` into the fields below the options, so
``config.json`` records what actually ran. Imports nothing heavy: ``--help`` answers at once.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sae_hacking.config import (
    ConfigError,
    check_options,
    count_up_to,
    device_option,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    resume_option,
    threads_option,
)
from sae_hacking.toy.training.schedule import DECAYS, Decay, Schedule

# About a minute on a 2-core laptop CPU, one thread, with evaluations and plots.
DEFAULT_NUM_SAMPLES = 8_192_000
DEFAULT_EVALUATIONS = 40
# Beyond any sense for a toy: 1e12 samples take about 6 hours at the fastest rate measured
# (49M samples/s, compiled, batch 65536, H100) and months on a CPU; a step costs at least
# ~0.1 ms of host time, so 1e9 steps is more than a day.
MAX_SAMPLES = 10**12
MAX_STEPS = 10**9
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class ToyTrainConfig:
    """Train a (hierarchical) top-k SAE on the perturbed-children data and score it."""

    lr: float = option(1e-3, "peak Adam learning rate", check=positive)
    sae_hidden_dim: int | None = option(
        None,
        "latents (parent latents if --hierarchical)",
        default_text="2A, or A with --hierarchical",
        check=positive,
    )
    dataset_num_features: int = option(30, "true parents A (each has two children)", check=positive)
    # The original toolkit's default: its command leaves --dataset-k at 3.
    dataset_k: int = option(3, "parents active in every sample", check=positive)
    k: int | None = option(
        None, "latents kept by top-k", default_text="--dataset-k", check=positive
    )
    aux_k: int = option(0, "dead latents used by the AuxK loss (0: off)", check=non_negative)
    batch_size: int = option(4096, "samples per step", check=positive)
    steps: int | None = option(
        None,
        f"training steps (at most {MAX_STEPS:,})",
        aliases=("--max-step",),
        default_text="from --num-samples",
        check=count_up_to(MAX_STEPS, "more than a day of host time alone"),
    )
    num_samples: int | None = option(
        None,
        f"training samples (at most {MAX_SAMPLES:,})",
        default_text=f"{DEFAULT_NUM_SAMPLES:,}",
        check=count_up_to(MAX_SAMPLES, "about 6 hours at the fastest rate measured on an H100"),
    )
    hierarchical: bool = option(False, "train the parent-with-two-children SAE")
    child_warmup_samples: int | None = option(
        None,
        "with --hierarchical: samples that train the parents alone",
        default_text="a quarter of the run",
        check=non_negative,
    )
    perturbation_size: float = option(
        0.4, "norm of each child's offset from its parent", check=non_negative
    )
    model_dim: int = option(50, "dimension M of the activations", check=positive)
    device: str = device_option()
    cuda: bool = option(False, "the original's spelling of --device cuda", resumable=True)
    seed: int = option(0, "seed of the data, the SAE and the batches")
    init_to_truth: bool = option(False, "start the SAE at the true features")
    init_noise: float = option(
        0.0, "with --init-to-truth: noise relative to each row's norm", check=non_negative
    )
    warmup_steps: int | None = option(
        None, "linear warm-up steps", default_text="min(100, steps/10)", check=non_negative
    )
    decay: str = option("cosine", "constant, linear, cosine or plateau", check=one_of(*DECAYS))
    final_lr_fraction: float = option(
        0.1,
        "linear/cosine decay ends at this fraction of --lr",
        check=lambda v: None if 0 < v <= 1 else f"{v} must lie in (0, 1]",
    )
    plateau_patience: int = option(
        3, "evaluations without progress before halving the rate", check=positive
    )
    grad_clip: float = option(1.0, "gradient norm clip (0: off)", check=non_negative)
    log_every: int | None = option(
        None, "steps between evaluations", default_text="steps/40", check=positive
    )
    checkpoint_every: int | None = option(
        None,
        "steps between checkpoints (each an exact --resume point)",
        default_text="steps/4",
        check=positive,
    )
    eval_batch_size: int = option(8192, "held-out samples for each evaluation", check=positive)
    threads: int = threads_option()
    output_dir: Path | None = output_dir_option()
    resume: Path | None = resume_option()
    # Resolved from the options above (recorded in config.json).
    device_spec: str = field(init=False)
    latents: int = field(init=False)
    topk: int = field(init=False)
    sae_width: int = field(init=False)
    total_steps: int = field(init=False)
    warmup: int = field(init=False)
    evaluate_every: int = field(init=False)
    save_every: int = field(init=False)
    child_warmup: int = field(init=False)

    def __post_init__(self) -> None:
        check_options(self)
        if self.cuda and self.device not in ("auto", "cuda"):
            raise ConfigError("cuda", f"contradicts --device {self.device}; give one of them")
        if self.dataset_k > self.dataset_num_features:
            raise ConfigError(
                "dataset_k",
                f"{self.dataset_k} must lie in [1, --dataset-num-features="
                f"{self.dataset_num_features}]",
            )
        self._set(device_spec="cuda" if self.cuda else self.device)
        self._resolve_sizes()
        self._resolve_schedule()

    @property
    def device_field(self) -> str:
        """The option that chose the device, for errors about it."""
        return "cuda" if self.cuda else "device"

    def _resolve_sizes(self) -> None:
        hidden = self.sae_hidden_dim
        if hidden is None:
            # Enough parent latents for every true parent, or latents for every child.
            hidden = self.dataset_num_features * (1 if self.hierarchical else 2)
        k = self.dataset_k if self.k is None else self.k
        if k > hidden:
            raise ConfigError("k", f"{k} is larger than --sae-hidden-dim={hidden}; lower it")
        if self.aux_k > hidden:
            raise ConfigError("aux_k", f"{self.aux_k} is larger than {hidden} latents")
        width = hidden * (3 if self.hierarchical else 1)
        self._set(latents=hidden, topk=k, sae_width=width)

    def _resolve_schedule(self) -> None:
        if self.steps is not None and self.num_samples is not None:
            raise ConfigError("steps", "give --steps or --num-samples, not both")
        if self.batch_size > MAX_SAMPLES:
            raise ConfigError(
                "batch_size", f"{self.batch_size} exceeds the limit of {MAX_SAMPLES:.0e} samples"
            )
        if self.steps is not None:
            steps = self.steps
            if steps * self.batch_size > MAX_SAMPLES:
                raise ConfigError(
                    "steps",
                    f"{steps} steps of {self.batch_size} samples exceed the limit of "
                    f"{MAX_SAMPLES:.0e} samples (see --num-samples); lower it",
                )
        else:
            samples = DEFAULT_NUM_SAMPLES if self.num_samples is None else self.num_samples
            steps = max(1, -(-samples // self.batch_size))
            if steps > MAX_STEPS:
                raise ConfigError(
                    "num_samples",
                    f"{samples} samples at --batch-size {self.batch_size} take {steps} steps, "
                    f"beyond the limit of {MAX_STEPS:.0e}; raise --batch-size or lower it",
                )
        log_every = self.log_every or max(1, steps // DEFAULT_EVALUATIONS)
        checkpoint_every = self.checkpoint_every or max(1, steps // 4)
        if self.warmup_steps is None:
            warmup = min(100, steps // 10)
        else:
            warmup = self.warmup_steps
            if warmup >= steps and warmup != 0:
                raise ConfigError(
                    "warmup_steps", f"{warmup} is not shorter than the run ({steps} steps)"
                )
        if self.child_warmup_samples is None:
            # Parents alone for the first quarter: trained with children from the start, each parent
            # latent ends up gating two unrelated features (see toy/saes/hierarchical.py).
            child_warmup = steps * self.batch_size // 4
        else:
            child_warmup = self.child_warmup_samples
        self._set(
            total_steps=steps,
            warmup=warmup,
            evaluate_every=log_every,
            save_every=checkpoint_every,
            child_warmup=child_warmup,
        )

    def _set(self, **values: int | str) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def schedule(self) -> Schedule:
        return Schedule(
            warmup_steps=self.warmup,
            decay=cast(Decay, self.decay),
            final_fraction=self.final_lr_fraction,
            plateau_patience=self.plateau_patience,
        )

    def memory_estimate(self) -> tuple[int, str]:
        """Peak bytes of the run (float32, an estimate) and the size option to lower first.

        The SAE's weights count four times (weights, gradients, Adam's two moments); a batch
        holds its inputs, the latents' pre-activations and their gradients, and the true
        feature magnitudes the source draws; the held-out batch its inputs and codes.
        """
        features = 2 * self.dataset_num_features
        weights = 4 * (2 * self.sae_width * self.model_dim + self.sae_width + self.model_dim)
        per_sample = 4 * self.model_dim + 3 * self.sae_width + features
        evaluation = 2 * self.model_dim + 2 * self.sae_width + features
        floats = weights + self.batch_size * per_sample + self.eval_batch_size * evaluation
        default_latents = self.dataset_num_features * (1 if self.hierarchical else 2)
        # Blamed: the size option the most times above its default.
        sizes = {
            "sae_hidden_dim": self.latents / default_latents,
            "dataset_num_features": self.dataset_num_features / 30,
            "model_dim": self.model_dim / 50,
            "batch_size": self.batch_size / 4096,
            "eval_batch_size": self.eval_batch_size / 8192,
        }
        return BYTES_PER_FLOAT * floats, max(sizes, key=sizes.__getitem__)

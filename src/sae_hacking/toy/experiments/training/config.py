"""The one frozen config of a toy top-k training run, validated as the command line is read.

Every problem names the flag to fix (``UserInputError``). Values left as ``None`` on the command
line are resolved here, so ``config.json`` records what actually ran.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sae_hacking.config import DEVICE_CHOICES
from sae_hacking.errors import UserInputError
from sae_hacking.toy.training.schedule import DECAYS, Decay, Schedule

# About a minute on a 2-core laptop CPU, one thread, with evaluations and plots.
DEFAULT_NUM_SAMPLES = 8_192_000
DEFAULT_EVALUATIONS = 40


def require(ok: bool, flag: str, problem: str) -> None:
    if not ok:
        raise UserInputError(flag, problem)


def require_positive(value: int | float, flag: str) -> None:
    require(value > 0, flag, f"{value} must be positive")


def require_non_negative(value: int | float, flag: str) -> None:
    require(value >= 0, flag, f"{value} must not be negative")


@dataclass(frozen=True)
class ToyTrainConfig:
    """A toy run: the perturbed-children data, a (hierarchical) top-k SAE, and how to train it."""

    output_dir: Path
    lr: float = 1e-3
    sae_hidden_dim: int | None = None
    dataset_num_features: int = 30
    # The original toolkit's default: its command leaves --dataset-k at 3.
    dataset_k: int = 3
    k: int | None = None
    aux_k: int = 0
    batch_size: int = 4096
    steps: int | None = None
    num_samples: int | None = None
    hierarchical: bool = False
    child_warmup_samples: int | None = None
    perturbation_size: float = 0.4
    model_dim: int = 50
    device: str = "auto"
    device_flag: str = "--device"
    seed: int = 0
    init_to_truth: bool = False
    init_noise: float = 0.0
    warmup_steps: int | None = None
    decay: str = "cosine"
    final_lr_fraction: float = 0.1
    plateau_patience: int = 3
    grad_clip: float = 1.0
    log_every: int | None = None
    checkpoint_every: int | None = None
    eval_batch_size: int = 8192
    threads: int = 1
    # Resolved from the flags above in __post_init__ (recorded in config.json).
    latents: int = field(init=False)
    topk: int = field(init=False)
    sae_width: int = field(init=False)
    total_steps: int = field(init=False)
    warmup: int = field(init=False)
    evaluate_every: int = field(init=False)
    save_every: int = field(init=False)
    child_warmup: int = field(init=False)

    def __post_init__(self) -> None:
        require_positive(self.lr, "--lr")
        require_positive(self.dataset_num_features, "--dataset-num-features")
        require_positive(self.model_dim, "--model-dim")
        require_positive(self.batch_size, "--batch-size")
        require_positive(self.eval_batch_size, "--eval-batch-size")
        require_positive(self.threads, "--threads")
        require_non_negative(self.perturbation_size, "--perturbation-size")
        require_non_negative(self.aux_k, "--aux-k")
        require_non_negative(self.init_noise, "--init-noise")
        require_non_negative(self.grad_clip, "--grad-clip")
        require(0 < self.final_lr_fraction <= 1, "--final-lr-fraction", "must lie in (0, 1]")
        require(self.plateau_patience >= 1, "--plateau-patience", "must be at least 1")
        require(self.decay in DECAYS, "--decay", f"'{self.decay}'; use one of {', '.join(DECAYS)}")
        require(
            self.device in DEVICE_CHOICES or self.device.startswith("cuda:"),
            self.device_flag,
            f"unknown device '{self.device}'; use one of {', '.join(DEVICE_CHOICES)}",
        )
        require(
            not (self.output_dir.exists() and not self.output_dir.is_dir()),
            "--output-dir",
            f"'{self.output_dir}' is a file; give a directory",
        )
        require(
            1 <= self.dataset_k <= self.dataset_num_features,
            "--dataset-k",
            f"{self.dataset_k} must lie in [1, --dataset-num-features={self.dataset_num_features}]",
        )
        self._resolve_sizes()
        self._resolve_schedule()

    def _resolve_sizes(self) -> None:
        hidden = self.sae_hidden_dim
        if hidden is None:
            # Enough parent latents for every true parent, or latents for every child.
            hidden = self.dataset_num_features * (1 if self.hierarchical else 2)
        require_positive(hidden, "--sae-hidden-dim")
        k = self.dataset_k if self.k is None else self.k
        require_positive(k, "--k")
        require(k <= hidden, "--k", f"{k} is larger than --sae-hidden-dim={hidden}; lower it")
        width = hidden * (3 if self.hierarchical else 1)
        require(self.aux_k <= hidden, "--aux-k", f"{self.aux_k} is larger than {hidden} latents")
        self._set(latents=hidden, topk=k, sae_width=width)

    def _resolve_schedule(self) -> None:
        require(
            self.steps is None or self.num_samples is None,
            "--steps",
            "give --steps or --num-samples, not both",
        )
        if self.steps is not None:
            require_positive(self.steps, "--steps")
            steps = self.steps
        else:
            samples = DEFAULT_NUM_SAMPLES if self.num_samples is None else self.num_samples
            require_positive(samples, "--num-samples")
            steps = max(1, -(-samples // self.batch_size))
        log_every = self.log_every or max(1, steps // DEFAULT_EVALUATIONS)
        require_positive(log_every, "--log-every")
        checkpoint_every = self.checkpoint_every or max(1, steps // 4)
        require_positive(checkpoint_every, "--checkpoint-every")
        if self.warmup_steps is None:
            warmup = min(100, steps // 10)
        else:
            warmup = self.warmup_steps
            require_non_negative(warmup, "--warmup-steps")
            require(
                warmup < steps or warmup == 0,
                "--warmup-steps",
                f"{warmup} is not shorter than the run ({steps} steps)",
            )
        if self.child_warmup_samples is None:
            # Parents alone for the first quarter: trained with children from the start, each parent
            # latent ends up gating two unrelated features (see toy/saes/hierarchical.py).
            child_warmup = steps * self.batch_size // 4
        else:
            child_warmup = self.child_warmup_samples
            require_non_negative(child_warmup, "--child-warmup-samples")
        self._set(
            total_steps=steps,
            warmup=warmup,
            evaluate_every=log_every,
            save_every=checkpoint_every,
            child_warmup=child_warmup,
        )

    def _set(self, **values: int) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def schedule(self) -> Schedule:
        return Schedule(
            warmup_steps=self.warmup,
            decay=cast(Decay, self.decay),
            final_fraction=self.final_lr_fraction,
            plateau_patience=self.plateau_patience,
        )

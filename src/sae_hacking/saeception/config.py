"""The options of an SAE-ception run (``sae-ception``), checked as they are built.

Imports nothing heavy, so ``--help`` and flag errors answer at once.
"""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    between,
    check_options,
    device_option,
    each,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    resume_option,
    threads_option,
)

# Strategies in a fixed order: a strategy's random streams never depend on which others run.
STRATEGIES = ("per-class", "per-example", "random", "none")
DATASET_PRESETS = ("digits", "sst2", "ag_news")
LOCAL_SUFFIXES = (".csv", ".jsonl")
MLP = "mlp"
MLP_LAYERS = ("1", "2")


def dataset_name(value: str) -> str | None:
    if value in DATASET_PRESETS:
        return None
    path = Path(value)
    if path.suffix not in LOCAL_SUFFIXES:
        return (
            f"unknown dataset '{value}'; use {', '.join(DATASET_PRESETS)} or a local "
            f"{' or '.join(LOCAL_SUFFIXES)} file of text and label"
        )
    if not path.is_file():
        return f"'{value}' is not a file"
    return None


@dataclass(frozen=True)
class SaeCeptionConfig:
    """Train a classifier, then retrain it cycle by cycle towards SAE-sharpened hidden activations.

    Every cycle n >= 1 runs each strategy from that strategy's cycle n-1 classifier; per-class and
    per-example are the method, random (a random unit target) and none (no target, the same extra
    epochs) are its controls.
    """

    dataset: str = option(
        "digits",
        "digits (scikit-learn's bundled 8x8 images), sst2, ag_news, or a local .csv/.jsonl file",
        check=dataset_name,
    )
    model: str | None = option(
        None,
        "mlp (64-16-16-10, digits only), or a transformer-lens model name (tiny: offline stand-in)",
        default_text="mlp for digits, gpt2 for text",
    )
    layer: str | None = option(
        None,
        "the hidden activation the SAE reads: 1 or 2 for the MLP; a hook name such as "
        "blocks.11.hook_resid_post for a language model (its last real token)",
        default_text="2, or the last block's hook_resid_post",
    )
    text_field: str = option("text", "text column/key of a local file")
    label_field: str = option("label", "label column/key of a local file")
    max_train_examples: int | None = option(
        None, "use at most this many training examples", check=positive
    )
    max_test_examples: int | None = option(
        None, "use at most this many held-out examples", check=positive
    )
    test_share: float = option(
        0.2, "held-out share where the dataset has no test split", check=between(0.05, 0.95)
    )
    max_tokens: int = option(128, "truncate texts to this many tokens", check=positive)
    cycles: int = option(
        3,
        "run up to this cycle (0 trains the classifier alone)",
        check=non_negative,
        resumable=True,
    )
    strategies: tuple[str, ...] = option(
        STRATEGIES, "sharpening strategies to run side by side", check=each(one_of(*STRATEGIES))
    )
    aux_weight: float = option(
        1.0,
        "lambda: weight of 1 - cos(h, target) beside the cross-entropy",
        check=non_negative,
        aliases=("--lambda",),
    )
    keep_share: float = option(
        0.05,
        "share of the SAE's latents kept by per-class (per class) and per-example (per example)",
        check=between(0.0, 1.0),
    )
    epochs: int | None = option(
        None, "cycle 0 training epochs", check=positive, default_text="60 (mlp), 1 (language model)"
    )
    cycle_epochs: int | None = option(
        None,
        "training epochs of each later cycle",
        check=positive,
        default_text="20 (mlp), 1 (language model)",
    )
    batch_size: int | None = option(
        None, "classifier batch size", check=positive, default_text="64 (mlp), 16 (language model)"
    )
    lr: float | None = option(
        None,
        "classifier Adam learning rate",
        check=positive,
        default_text="3e-3 (mlp), 2e-5 (language model)",
    )
    trained_blocks: int | None = option(
        None,
        "language models: fine-tune only the last N blocks up to the hook (and the head)",
        check=positive,
        default_text="every block up to the hook, and the embeddings",
    )
    sae_width: int | None = option(
        None, "SAE latents", check=positive, default_text="4 x the hidden width"
    )
    sae_k: int | None = option(
        None,
        "latents kept by the SAE's top-k",
        check=positive,
        default_text="min(32, hidden width / 4)",
    )
    sae_steps: int = option(600, "SAE training steps", check=positive)
    sae_batch_size: int = option(256, "SAE batch size", check=positive)
    sae_lr: float | None = option(
        None,
        "SAE Adam learning rate",
        check=positive,
        default_text="1e-2 (mlp), 3e-3 (language model)",
    )
    seeds: tuple[int, ...] = option(
        (0,),
        "seeds to run, each a whole run (split, weights, batches, random targets); the summary "
        "gives mean and spread over them",
        check=each(non_negative),
    )
    device: str = device_option()
    threads: int = threads_option()
    output_dir: Path | None = output_dir_option()
    resume: Path | None = resume_option()

    def __post_init__(self) -> None:
        check_options(self)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", "give one or more distinct seeds")
        if not self.strategies:
            raise ConfigError("strategies", f"give at least one of {', '.join(STRATEGIES)}")
        if len(set(self.strategies)) != len(self.strategies):
            raise ConfigError("strategies", "each strategy at most once")
        if self.keep_share <= 0:
            raise ConfigError("keep_share", f"{self.keep_share} must be positive")
        if self.dataset == "digits" and self.resolved_model != MLP:
            raise ConfigError(
                "model", "digits runs on the mlp; language models need a text dataset"
            )
        if self.dataset != "digits" and self.resolved_model == MLP:
            raise ConfigError("model", "the mlp reads digits; give a transformer-lens model name")
        if self.resolved_model == MLP and self.layer is not None and self.layer not in MLP_LAYERS:
            raise ConfigError("layer", f"the mlp has hidden layers 1 and 2, not '{self.layer}'")

    @property
    def resolved_model(self) -> str:
        if self.model is not None:
            return self.model
        return MLP if self.dataset == "digits" else "gpt2"

    @property
    def is_language_model(self) -> bool:
        return self.resolved_model != MLP

    def resolved(self, mlp: float | int, language: float | int) -> float | int:
        return language if self.is_language_model else mlp

    @property
    def fit_epochs(self) -> int:
        return self.epochs or int(self.resolved(60, 1))

    @property
    def later_epochs(self) -> int:
        return self.cycle_epochs or int(self.resolved(20, 1))

    @property
    def fit_batch_size(self) -> int:
        return self.batch_size or int(self.resolved(64, 16))

    @property
    def fit_lr(self) -> float:
        return self.lr or float(self.resolved(3e-3, 2e-5))

    @property
    def resolved_sae_lr(self) -> float:
        return self.sae_lr or float(self.resolved(1e-2, 3e-3))

    def sae_shape(self, hidden_dim: int) -> tuple[int, int]:
        """(width, k) of every SAE of the run, for a hidden width."""
        width = self.sae_width or 4 * hidden_dim
        k = self.sae_k or max(1, min(32, hidden_dim // 4))
        if k > width:
            raise ConfigError("sae_k", f"{k} is more than --sae-width={width}")
        return width, k

    def sae_memory_estimate(self, hidden_dim: int) -> tuple[int, str]:
        """Peak bytes of one SAE's training (float32, an estimate) and the size option to lower
        first: the SAE four times (weights, gradients, Adam's two moments) and a batch's codes."""
        width, _k = self.sae_shape(hidden_dim)
        floats = 4 * (2 * width * hidden_dim + width + hidden_dim)
        floats += self.sae_batch_size * (2 * hidden_dim + 3 * width)
        sizes = {"sae_width": width / (4 * hidden_dim), "sae_batch_size": self.sae_batch_size / 256}
        return 4 * floats, max(sizes, key=sizes.__getitem__)

    def kept_latents(self, width: int) -> int:
        """Latents kept by the per-class and per-example strategies (at least one)."""
        return max(1, int(self.keep_share * width))

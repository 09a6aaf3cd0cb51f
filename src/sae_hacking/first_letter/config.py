"""Options of the first-letter absorption evaluation (first_letter_absorption.py).

Defaults follow SAEBench 0.6's absorption eval (its ``AbsorptionEvalConfig`` and the constants of
its ``feature_absorption.py``), so a run here is comparable to its published numbers.
"""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    between,
    check_options,
    device_option,
    dtype_option,
    non_negative,
    option,
    output_dir_option,
    positive,
    threads_option,
)
from sae_hacking.llm.options import model_option

DEFAULT_RELEASE = "gemma-scope-2b-pt-res-canonical"
DEFAULT_SAE_IDS = ("layer_12/width_16k/canonical",)
TINY_MODEL = "tiny"
TINY_RELEASE = "tiny"
TINY_SAE_IDS = ("blocks.3.hook_resid_post/jumprelu/512",)
TEMPLATE = "{word} has the first letter:"


def template_check(value: str) -> str | None:
    if value.count("{word}") != 1:
        return f"'{value}' must contain {{word}} exactly once"
    return None


def at_least_one(value: tuple[str, ...]) -> str | None:
    return None if value else "give at least one SAE id"


@dataclass(frozen=True)
class FirstLetterConfig:
    """Measure feature absorption on the first-letter task ("A is for Absorption", SAEBench 0.6).

    Several SAEs on the same hook share the model's forward passes, the activations and the probe.
    """

    model: str = model_option()
    sae_release: str | None = option(
        None,
        "sae-lens release, a local sae-lens directory, tiny, or planted",
        default_text=f"{DEFAULT_RELEASE}; tiny for --model tiny",
    )
    sae_ids: tuple[str, ...] | None = option(
        None,
        "comma-separated SAE ids of the release, all on one hook",
        default_text=f"{DEFAULT_SAE_IDS[0]}; {TINY_SAE_IDS[0]} for --model tiny",
        check=lambda ids: None if ids is None else at_least_one(ids),
    )
    prompt_template: str = option(TEMPLATE, "the prompt; {word} is the word", check=template_check)
    icl_examples: int = option(10, "solved examples before the word in each prompt", check=positive)
    max_words: int | None = option(
        None, "evaluate at most this many vocabulary words (a random subset)", check=positive
    )
    train_fraction: float = option(
        0.8, "share of the words that trains the probes; the rest tests", check=between(0.05, 0.95)
    )
    max_k: int = option(10, "largest k of the k-sparse probes", check=positive)
    f1_jump_threshold: float = option(
        0.03,
        "k+1 latents count as a split when F1 rises by more than this",
        check=between(0.0, 1.0),
    )
    absorber_cosine: float = option(
        0.1, "decoder-probe cosine a latent needs to count as an absorber", check=between(-1.0, 1.0)
    )
    full_absorption_cosine: float = option(
        0.025,
        "decoder-probe cosine the top latent needs for full absorption",
        check=between(-1.0, 1.0),
    )
    projection_threshold: float = option(
        0.4, "share of the probe projection the absorbers must carry", check=between(0.0, 1.0)
    )
    max_absorbers: int = option(3, "latents that may share one word's absorption", check=positive)
    min_probe_f1: float = option(
        0.6,
        "letters whose probe F1 is below this are left out of the means",
        check=between(0.0, 1.0),
    )
    ablation: bool = option(
        True,
        "also apply the paper's criterion with exact per-latent ablation of the logit difference",
    )
    ablation_delta: float = option(
        1.0,
        "paper's criterion: |top ablation effect| - |second| must reach this",
        check=non_negative,
    )
    probe_epochs: int = option(
        50, "epochs of the ground-truth and L1 latent probes", check=positive
    )
    probe_batch_size: int = option(
        64,
        "letter probe batch size (SAEBench's 64), less if an epoch would have under 16 batches",
        check=positive,
    )
    latent_probe_batch_size: int = option(
        4096,
        "L1 latent probe batch size (SAEBench's), less if an epoch would have under 16 batches",
        check=positive,
    )
    l1_decay: float = option(0.01, "L1 penalty of the latent probe", check=between(0.0, 1e6))
    top_absorbers: int = option(
        5,
        "absorbing latents shown per letter in letters.csv and report.html (the JSON files list all)",
        check=positive,
    )
    batch_size: int = option(64, "prompts per forward pass", check=positive)
    seed: int = option(42, "seed of the word split, the prompts and the probes")
    device: str = device_option()
    dtype: str = dtype_option()
    threads: int = threads_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)

    @property
    def release(self) -> str:
        if self.sae_release is not None:
            return self.sae_release
        return TINY_RELEASE if self.model == TINY_MODEL else DEFAULT_RELEASE

    @property
    def ids(self) -> tuple[str, ...]:
        if self.sae_ids is not None:
            return self.sae_ids
        return TINY_SAE_IDS if self.release == TINY_RELEASE else DEFAULT_SAE_IDS

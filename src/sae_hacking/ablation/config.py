"""The options of gemma_selective_ablate.py, each declared once."""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    check_options,
    device_option,
    dtype_option,
    each,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    resume_option,
)
from sae_hacking.llm.options import (
    DEFAULT_ABLATOR_ID,
    DEFAULT_READER_ID,
    DEFAULT_READER_RELEASE,
    DEFAULT_RELEASE,
    TINY_ABLATOR_ID,
    TINY_MODEL,
    TINY_READER_ID,
    TINY_RELEASE,
    count_bos_option,
    dataset_id_option,
    dataset_path_option,
    max_prompts_option,
    max_tokens_in_prompt_option,
    model_option,
    sae_id_option,
    sae_release_option,
    split_option,
    text_field_option,
)

DEFAULT_PROMPT_TOKENS = 125
# Where an ablation's effect on the reader is recorded (batched.read_effect_space).
EFFECT_SPACES = ("latents", "preactivations", "activations")


def default_saes(model: str) -> tuple[str, str, str, str]:
    """Ablator and reader SAEs (release, id, release, id) when no flag names them.

    Gemma Scope's residual layer 20 ablates and its MLP-out layer 21 reads, as in the original; the
    offline tiny model gets its tiny stand-ins, so ``--model tiny`` alone runs without downloads.
    """
    if model == TINY_MODEL:
        return TINY_RELEASE, TINY_ABLATOR_ID, TINY_RELEASE, TINY_READER_ID
    return DEFAULT_RELEASE, DEFAULT_ABLATOR_ID, DEFAULT_READER_RELEASE, DEFAULT_READER_ID


def firing_fraction(value: float | None) -> str | None:
    if value is None or 0.0 < value <= 1.0:
        return None
    return f"{value} is not a firing fraction in (0, 1]"


@dataclass(frozen=True)
class SelectiveAblationConfig:
    """Run (or resume) selective ablation."""

    model: str = model_option()
    ablator_sae_release: str | None = sae_release_option()
    ablator_sae_id: str | None = sae_id_option()
    reader_sae_release: str | None = sae_release_option(DEFAULT_READER_RELEASE)
    reader_sae_id: str | None = sae_id_option(DEFAULT_READER_ID, TINY_READER_ID)
    dataset_id: str = dataset_id_option()
    dataset_path: tuple[Path, ...] = dataset_path_option()
    split: str = split_option()
    text_field: str = text_field_option()
    max_prompts: int | None = max_prompts_option(1)
    batch_size: int = option(8, "prompts per clean forward pass", check=positive)
    max_tokens_in_prompt: int | None = max_tokens_in_prompt_option(DEFAULT_PROMPT_TOKENS)
    count_bos: bool = count_bos_option()
    abridge_ablations_to: int = option(100, "K: ablate each prompt's top K latents", check=positive)
    selected_features: tuple[int, ...] = option(
        (),
        "ablate only prompts whose top K holds one of these (none: every prompt)",
        check=each(non_negative),
    )
    exclude_latent_threshold: float | None = option(
        None,
        "never ablate latents firing on more than this fraction of tokens (needs --cooccurrence-dir)",
        check=firing_fraction,
    )
    cooccurrence_dir: Path | None = option(
        None, "a gemma_cooccurrences.py run of the same ablator SAE, for firing frequencies"
    )
    effect_space: str = option(
        "latents",
        "record effects in the reader SAE's latents (the original), its preactivations, or the "
        "reader hook's activations (width d_model; not cut by the reader's sparsity)",
        check=one_of(*EFFECT_SPACES),
    )
    max_batch_ablations: int = option(
        512,
        "ablations per batched forward (bounds memory: about rows x S x (6 d_model + 3 d_mlp) x 4 bytes)",
        check=positive,
    )
    save_every: int = option(100, "checkpoint every this many batches", check=positive)
    max_rows_in_memory: int = option(
        16384,
        "flush effect rows to disk beyond this many (rows x reader width x 4 bytes)",
        check=positive,
    )
    resume: Path | None = resume_option()
    device: str = device_option()
    dtype: str = dtype_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        if self.exclude_latent_threshold is not None and self.cooccurrence_dir is None:
            raise ConfigError(
                "exclude_latent_threshold",
                "needs firing counts; pass --cooccurrence-dir from gemma_cooccurrences.py",
            )

"""The options of gemma_cooccurrences.py and merge_cooccurrences.py, each declared once."""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    check_options,
    device_option,
    dtype_option,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
    resume_option,
)
from sae_hacking.llm.options import (
    DEFAULT_ABLATOR_ID,
    DEFAULT_RELEASE,
    TINY_ABLATOR_ID,
    TINY_MODEL,
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

INT32_LIMIT = 2**31 - 1
DEFAULT_PROMPT_TOKENS = 1024


def latent_ids(rows: tuple[int, ...]) -> str | None:
    if any(row < 0 for row in rows) or len(set(rows)) != len(rows):
        return "latent ids must be distinct and non-negative"
    return None


@dataclass(frozen=True)
class CooccurrenceConfig:
    """Count latent co-occurrences of the ablator SAE over a corpus."""

    model: str = model_option()
    sae_release: str | None = sae_release_option()
    sae_id: str | None = sae_id_option()
    dataset_id: str = dataset_id_option()
    dataset_path: tuple[Path, ...] = dataset_path_option()
    split: str = split_option()
    text_field: str = text_field_option()
    max_tokens_in_prompt: int | None = max_tokens_in_prompt_option(DEFAULT_PROMPT_TOKENS)
    batch_size: int = option(8, "prompts per forward pass", check=positive)
    max_prompts: int | None = max_prompts_option(None)
    max_tokens: int = option(
        1_000_000_000,
        "stop after about this many counted tokens; 0 for no limit (int64 counts)",
        check=non_negative,
    )
    rows: tuple[int, ...] = option(
        (), "count only these latents against all, e.g. 3,17,40", check=latent_ids
    )
    count_bos: bool = count_bos_option()
    top_contexts: int = option(
        5,
        "keep each latent's this many top-activating contexts, shown by look_for_pairs.py (0: none)",
        check=non_negative,
    )
    firing_threshold: float | None = option(
        None,
        "count a latent as firing only where its activation is above this (for SAEs with no "
        "threshold of their own: top-k, BatchTopK)",
        check=non_negative,
    )
    firing_thresholds_from: Path | None = option(
        None,
        "count a latent as firing only above its own bar: Otsu's split of its activation "
        "histogram in this earlier gemma_cooccurrences.py run of the same SAE, or the bars of a "
        "firing_thresholds.json; saved as firing_thresholds.json in the run",
    )
    count_dtype: str = option(
        "auto",
        "auto (int32 when --max-tokens keeps counts below 2^31), int32 or int64",
        check=one_of("auto", "int32", "int64"),
    )
    # Checkpoints fall between batches, so where they fall never changes the counts.
    save_every: int = option(
        0,
        "checkpoint every this many batches (0: only at the end)",
        check=non_negative,
        resumable=True,
    )
    resume: Path | None = resume_option()
    device: str = device_option()
    dtype: str = dtype_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        if self.firing_threshold is not None and self.firing_thresholds_from is not None:
            raise ConfigError(
                "firing_threshold", "give --firing-threshold or --firing-thresholds-from, not both"
            )
        if self.count_dtype == "int32" and self.max_tokens == 0:
            raise ConfigError("count_dtype", "int32 needs a --max-tokens limit below 2^31")

    @property
    def release(self) -> str:
        if self.sae_release is not None:
            return self.sae_release
        return TINY_RELEASE if self.model == TINY_MODEL else DEFAULT_RELEASE

    @property
    def ablator_id(self) -> str:
        if self.sae_id is not None:
            return self.sae_id
        return TINY_ABLATOR_ID if self.release == TINY_RELEASE else DEFAULT_ABLATOR_ID

    def choose_count_dtype(self, world: int) -> str:
        """int32 when no count can pass 2^31 (a pair count is at most the tokens counted), else int64."""
        if self.count_dtype != "auto":
            return self.count_dtype
        # Budgets are checked after each batch, so a rank may overshoot by one batch.
        overshoot = world * self.batch_size * (self.max_tokens_in_prompt or DEFAULT_PROMPT_TOKENS)
        fits = self.max_tokens > 0 and self.max_tokens + overshoot <= INT32_LIMIT
        return "int32" if fits else "int64"


@dataclass(frozen=True)
class MergeConfig:
    """Merge co-occurrence runs into one run directory."""

    # Checked by io.cooccurrence_results.open_mergeable, which reads them.
    runs: tuple[Path, ...] = option((), "run directories of gemma_cooccurrences.py", argument=True)
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)

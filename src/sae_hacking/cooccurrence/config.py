"""The settings of a co-occurrence run (gemma_cooccurrences.py), validated as they are built."""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sae_hacking.errors import UserInputError
from sae_hacking.io.cooccurrence_results import COUNTS, has_results
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.llm.corpus import CorpusSpec
from sae_hacking.llm.models import DEFAULT_MODEL, TINY_MODEL, parse_dtype
from sae_hacking.llm.saes import DEFAULT_ABLATOR_ID, DEFAULT_RELEASE, TINY_ABLATOR_ID, TINY_RELEASE

INT32_LIMIT = 2**31 - 1
# Keys a resumed run must share with the checkpoint it continues.
RESUME_KEYS = (
    "model",
    "sae_release",
    "sae_id",
    "layout",
    "width",
    "rows",
    "dataset",
    "max_tokens_in_prompt",
    "batch_size",
    "count_bos",
    "world",
)


@dataclass(frozen=True)
class CooccurrenceConfig:
    """Everything a co-occurrence run depends on."""

    model: str = DEFAULT_MODEL
    sae_release: str | None = None
    sae_id: str | None = None
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    max_tokens_in_prompt: int = 1024
    batch_size: int = 8
    max_prompts: int | None = None
    max_tokens: int = 1_000_000_000
    rows: tuple[int, ...] = ()
    count_bos: bool = False
    count_dtype: str = "auto"
    save_every: int = 0
    resume: Path | None = None
    device: str = "auto"
    dtype: str = "float32"
    output_dir: Path = field(default_factory=default_output_dir)

    def __post_init__(self) -> None:
        positive = {
            "--max-tokens-in-prompt": self.max_tokens_in_prompt,
            "--batch-size": self.batch_size,
        }
        for flag, value in positive.items():
            if value < 1:
                raise UserInputError(flag, f"{value} must be at least 1")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise UserInputError(
                "--max-prompts", "must be at least 1 (leave it out for the whole corpus)"
            )
        if self.max_tokens < 0:
            raise UserInputError("--max-tokens", "must be 0 (no limit) or positive")
        if self.save_every < 0:
            raise UserInputError(
                "--save-every", "must be 0 (only at the end) or a number of batches"
            )
        if self.count_dtype not in ("auto", "int32", "int64"):
            raise UserInputError("--count-dtype", f"'{self.count_dtype}'; use auto, int32 or int64")
        if any(row < 0 for row in self.rows) or len(set(self.rows)) != len(self.rows):
            raise UserInputError("--rows", "latent ids must be distinct and non-negative")
        if self.count_dtype == "int32" and self.max_tokens == 0:
            raise UserInputError("--count-dtype", "int32 needs a --max-tokens limit below 2^31")
        if self.resume is not None and not has_results(self.resume):
            raise UserInputError(
                "--resume",
                f"'{self.resume}' holds no checkpoint ({COUNTS}.safetensors); give the directory "
                "of a gemma_cooccurrences.py run started with --save-every",
            )
        parse_dtype(self.dtype)

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


def choose_count_dtype(config: CooccurrenceConfig, world: int) -> torch.dtype:
    """int32 when no count can pass 2^31 (a pair count is at most the tokens counted), else int64."""
    if config.count_dtype != "auto":
        return torch.int32 if config.count_dtype == "int32" else torch.int64
    # Budgets are checked after each batch, so a rank may overshoot by one batch.
    overshoot = world * config.batch_size * config.max_tokens_in_prompt
    fits = config.max_tokens > 0 and config.max_tokens + overshoot <= INT32_LIMIT
    return torch.int32 if fits else torch.int64

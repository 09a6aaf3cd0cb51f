"""Options the language-model tools share, and the names of their default models, SAEs and corpus.

Declared once here so ``--model``, the corpus flags, ``--max-tokens-in-prompt``, ``--max-prompts``
and ``--count-bos`` mean the same in every script. Imports nothing heavy: configs use it.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sae_hacking.config import option

if TYPE_CHECKING:
    from sae_hacking.llm.corpus import CorpusSpec

DEFAULT_MODEL = "google/gemma-2-2b"
TINY_MODEL = "tiny"
# "random:google/gemma-2-2b": a known model's shapes with random weights, built offline.
RANDOM_PREFIX = "random:"
# Gemma Scope's residual layer 20 ablates and its MLP-out layer 21 reads, as in the original.
DEFAULT_RELEASE = "gemma-scope-2b-pt-res-canonical"
DEFAULT_ABLATOR_ID = "layer_20/width_65k/canonical"
DEFAULT_READER_RELEASE = "gemma-scope-2b-pt-mlp-canonical"
DEFAULT_READER_ID = "layer_21/width_65k/canonical"
TINY_RELEASE = "tiny"
TINY_ABLATOR_ID = "blocks.3.hook_resid_post/jumprelu/512"
TINY_READER_ID = "blocks.4.hook_resid_post/jumprelu/512"
DEFAULT_DATASET_ID = "monology/pile-uncopyrighted"
LOCAL_SUFFIXES = (".txt", ".jsonl", ".parquet")


def model_option() -> Any:
    return option(
        DEFAULT_MODEL,
        "transformer-lens model name, a local model directory, tiny (random, offline), or "
        f"{RANDOM_PREFIX}NAME (NAME's shapes, random weights, the tiny tokenizer: offline)",
    )


def sae_release_option(
    default: str = DEFAULT_RELEASE,
    help: str = "sae-lens release, a local sae-lens directory, or tiny",
) -> Any:
    return option(None, help, default_text=f"{default}; {TINY_RELEASE} for --model tiny")


def sae_id_option(
    default: str = DEFAULT_ABLATOR_ID,
    tiny: str = TINY_ABLATOR_ID,
    help: str = "SAE id in the release",
) -> Any:
    return option(None, help, default_text=f"{default}; {tiny} for --model tiny")


def dataset_id_option() -> Any:
    return option(DEFAULT_DATASET_ID, "Hugging Face dataset, streamed")


def corpus_files(paths: tuple[Path, ...]) -> str | None:
    for path in paths:
        if not path.is_file():
            return f"'{path}' is not a file"
        if path.suffix not in LOCAL_SUFFIXES:
            return f"'{path}' is not {', '.join(LOCAL_SUFFIXES)}; convert it"
    return None


def dataset_path_option() -> Any:
    return option(
        (),
        "local .txt (a prompt per line), .jsonl or .parquet files (repeatable); wins over "
        "--dataset-id",
        check=corpus_files,
    )


def split_option() -> Any:
    return option("train", "dataset split")


def text_field_option() -> Any:
    return option("text", "the text column or JSON key")


@runtime_checkable
class CorpusOptions(Protocol):
    """A config with the corpus options."""

    @property
    def dataset_id(self) -> str: ...
    @property
    def dataset_path(self) -> tuple[Path, ...]: ...
    @property
    def split(self) -> str: ...
    @property
    def text_field(self) -> str: ...


def corpus_of(config: CorpusOptions) -> "CorpusSpec":
    """The corpus a config's dataset options name."""
    from sae_hacking.llm.corpus import CorpusSpec

    return CorpusSpec(config.dataset_id, config.dataset_path, config.split, config.text_field)


def prompt_tokens(value: int | None) -> str | None:
    if value is None or value >= 2:
        return None
    return f"{value} leaves no room for a token after BOS; give 2 or more"


def max_tokens_in_prompt_option(
    default: int,
    help: str = "truncate prompts to this many tokens, BOS included",
    aliases: tuple[str, ...] = (),
) -> Any:
    """Resolved at run time by ``llm.models.prompt_length``: never more than the model's context."""
    return option(
        None,
        f"{help}; at most the model's context",
        check=prompt_tokens,
        aliases=aliases,
        default_text=f"{default}, or the model's context if shorter",
    )


def max_prompts_option(default: int | None) -> Any:
    def check(value: int | None) -> str | None:
        return None if value is None or value >= 1 else f"{value} must be at least 1"

    return option(
        default,
        "stop after this many prompts (all ranks together); left out: the whole corpus",
        check=check,
        aliases=("--n-prompts",),
    )


def count_bos_option() -> Any:
    return option(
        False,
        "treat the BOS position as a token: count its co-occurrences, and add its activations to "
        "the sums that pick each prompt's latents to ablate (left out by default, like padding: "
        "every prompt starts with BOS, where latents fire unlike on text)",
    )

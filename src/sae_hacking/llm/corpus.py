"""Corpora: a Hugging Face dataset streamed, or local .txt/.jsonl/.parquet files, as token batches.

Prompts are numbered in corpus order; rank r of w takes prompts r, r+w, r+2w, ... so shards are
disjoint and together cover the corpus. Empty (whitespace-only) texts are skipped before numbering.
"""

import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from sae_hacking.errors import UserInputError
from sae_hacking.llm.options import DEFAULT_DATASET_ID, corpus_files


@dataclass(frozen=True)
class CorpusSpec:
    """Where prompts come from: a hub dataset id, or local files (which win when given)."""

    dataset_id: str | None = DEFAULT_DATASET_ID
    dataset_paths: tuple[Path, ...] = ()
    split: str = "train"
    text_field: str = "text"

    def __post_init__(self) -> None:
        if not self.dataset_paths and not self.dataset_id:
            raise UserInputError("--dataset-id", "give a dataset id or --dataset-path")
        # The same check as the flag's, for specs built in Python rather than from the CLI.
        problem = corpus_files(self.dataset_paths)
        if problem is not None:
            raise UserInputError("--dataset-path", problem)

    def describe(self) -> str:
        """How the manifest names this corpus."""
        if self.dataset_paths:
            return ",".join(str(path) for path in self.dataset_paths)
        return f"{self.dataset_id}:{self.split}"


@dataclass(frozen=True)
class TokenBatch:
    """Left-padded tokens, the attention mask, and the positions that count (not pad, not BOS)."""

    tokens_BS: Int[Tensor, "B S"]
    attention_mask_BS: Int[Tensor, "B S"]
    counted_BS: Bool[Tensor, "B S"]

    @property
    def n_prompts(self) -> int:
        return self.tokens_BS.shape[0]

    def to(self, device: torch.device) -> "TokenBatch":
        return TokenBatch(
            self.tokens_BS.to(device), self.attention_mask_BS.to(device), self.counted_BS.to(device)
        )


def _text_of(value: object, where: str, text_field: str) -> str:
    """A record's text; anything but a string (null, a list, a number) is refused, never
    counted as the prompt "None" or "['a', 'b']"."""
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise UserInputError("--text-field", f"{where}: '{text_field}' is {kind}, not a string")
    return value


def _decoded(raw: bytes, number: int, path: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(
            "--dataset-path",
            f"line {number} of '{path}' is not UTF-8 (byte {error.start}: {raw[error.start : error.start + 1]!r}); "
            "convert the file to UTF-8",
        ) from error


def _jsonl_texts(path: Path, text_field: str) -> Iterator[str]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decoded(raw, number, path)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserInputError(
                    "--dataset-path", f"line {number} of '{path}' is not JSON ({error.msg})"
                ) from error
            if not isinstance(record, dict):
                kind = "null" if record is None else type(record).__name__
                raise UserInputError(
                    "--dataset-path",
                    f"line {number} of '{path}' is a JSON {kind}, not an object with a "
                    f"'{text_field}' field",
                )
            if text_field not in record:
                raise UserInputError(
                    "--text-field", f"line {number} of '{path}' has no field '{text_field}'"
                )
            yield _text_of(record[text_field], f"line {number} of '{path}'", text_field)


def _parquet_texts(path: Path, text_field: str) -> Iterator[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as error:
        raise UserInputError(
            "--dataset-path", f"'{path}' is not a readable parquet file"
        ) from error
    if text_field not in table.schema_arrow.names:
        raise UserInputError("--text-field", f"'{path}' has no column '{text_field}'")
    column_type = table.schema_arrow.field(text_field).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise UserInputError(
            "--text-field", f"column '{text_field}' of '{path}' holds {column_type}, not strings"
        )
    row = 0
    for batch in table.iter_batches(columns=[text_field], batch_size=1024):
        for text in batch.column(0).to_pylist():
            row += 1
            yield _text_of(text, f"row {row} of '{path}'", text_field)


def _local_texts(path: Path, text_field: str) -> Iterator[str]:
    if path.suffix == ".txt":
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                yield _decoded(raw, number, path).rstrip("\r\n")
    elif path.suffix == ".jsonl":
        yield from _jsonl_texts(path, text_field)
    else:
        yield from _parquet_texts(path, text_field)


def _hub_texts(dataset_id: str, split: str, text_field: str) -> Iterator[str]:
    import datasets

    try:
        stream = datasets.load_dataset(dataset_id, split=split, streaming=True)
    except (OSError, ValueError, ConnectionError) as error:
        raise UserInputError(
            "--dataset-id",
            f"cannot stream '{dataset_id}' ({type(error).__name__}); check the name, the network "
            "and HF_DATASETS_OFFLINE, or use --dataset-path",
        ) from error
    for number, row in enumerate(stream, start=1):
        assert isinstance(row, dict)
        if text_field not in row:
            raise UserInputError(
                "--text-field", f"'{dataset_id}' rows have no field '{text_field}'"
            )
        yield _text_of(row[text_field], f"row {number} of '{dataset_id}'", text_field)


def _nonempty_texts(spec: CorpusSpec) -> Iterator[str]:
    """Every non-empty text of the corpus in order; a corpus without one is refused."""
    if spec.dataset_paths:
        texts: Iterable[str] = itertools.chain.from_iterable(
            _local_texts(path, spec.text_field) for path in spec.dataset_paths
        )
    else:
        assert spec.dataset_id is not None
        texts = _hub_texts(spec.dataset_id, spec.split, spec.text_field)
    seen = 0
    for text in texts:
        if text.strip():
            seen += 1
            yield text
    if not seen:
        flag = "--dataset-path" if spec.dataset_paths else "--dataset-id"
        raise UserInputError(flag, f"'{spec.describe()}' holds no text (every line is empty)")


def iter_texts(spec: CorpusSpec, rank: int = 0, world: int = 1, skip: int = 0) -> Iterator[str]:
    """This rank's prompts in order, after skipping its first ``skip`` (for resuming)."""
    return itertools.islice(_nonempty_texts(spec), rank + skip * world, None, world)


# How many texts are read before a run directory is made: enough to refuse a wrong file at
# once, few enough to cost nothing next to loading the model.
CHECKED_TEXTS = 1000


def check_corpus(spec: CorpusSpec) -> None:
    """Read the corpus's first ``CHECKED_TEXTS`` texts, so a file that is empty, not UTF-8 or not
    JSON is refused before a run directory is made (a problem further in is found while streaming,
    and the run directory is then removed if it holds nothing yet)."""
    for _ in itertools.islice(_nonempty_texts(spec), CHECKED_TEXTS):
        pass


def tokenize_batch(
    texts: list[str],
    tokenizer: PreTrainedTokenizerBase,
    max_tokens: int,
    count_bos: bool = False,
) -> TokenBatch:
    """Tokenize with BOS, truncate to ``max_tokens`` (BOS included), pad on the left."""
    tokenizer.padding_side = "left"
    encoded = tokenizer(
        texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
    )
    tokens_BS = encoded["input_ids"]
    attention_mask_BS = encoded["attention_mask"]
    counted_BS = attention_mask_BS.bool()
    if not count_bos and tokenizer.bos_token_id is not None:
        # Only the first real token is BOS; a BOS id inside the text would still count.
        first_real_B = attention_mask_BS.argmax(dim=1)
        counted_BS[torch.arange(len(texts)), first_real_B] &= (
            tokens_BS[torch.arange(len(texts)), first_real_B] != tokenizer.bos_token_id
        )
    return TokenBatch(tokens_BS, attention_mask_BS, counted_BS)


def iter_token_batches(
    texts: Iterable[str],
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    max_tokens: int,
    count_bos: bool = False,
) -> Iterator[TokenBatch]:
    """Token batches of up to ``batch_size`` prompts (the last may be shorter)."""
    iterator = iter(texts)
    while chunk := list(itertools.islice(iterator, batch_size)):
        yield tokenize_batch(chunk, tokenizer, max_tokens, count_bos)

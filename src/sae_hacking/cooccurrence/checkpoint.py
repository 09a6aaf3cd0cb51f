"""Checkpoints of a co-occurrence run: this rank's accumulators, the manifest, save and resume.

At a checkpoint the ranks reduce into rank 0, which writes the bit-packed "ever co-occurred"
triangle and then the counts (see io/cooccurrence_results.py for why in that order); the other
ranks zero theirs. On resume rank 0 starts from the saved counts and the others from zero. Top
contexts follow the same rule: rank 0 keeps the best of every rank's, the others start empty.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from sae_lens import SAE
from torch import Tensor

from sae_hacking.config import ConfigError
from sae_hacking.cooccurrence.config import CooccurrenceConfig
from sae_hacking.cooccurrence.contexts import CONTEXT_AFTER, CONTEXT_BEFORE, TopContexts, merge_top
from sae_hacking.core.distinct_tokens import TOKEN_BITS, token_bits_layout
from sae_hacking.core.thresholds import HISTOGRAM_BINS, histogram_layout
from sae_hacking.core.triangle import triangle_size
from sae_hacking.io.cooccurrence_results import (
    ROWS,
    TOKEN_BITMAP,
    TRIANGLE,
    has_vocabulary,
    read_manifest,
    read_tensors,
    save_counts,
    save_ever_cooccurred,
    write_vocabulary,
)
from sae_hacking.io.firing_thresholds import HISTOGRAM
from sae_hacking.llm.distributed import RankInfo, barrier
from sae_hacking.llm.options import corpus_of
from sae_hacking.llm.saes import sae_hook_name


@dataclass
class Counter:
    """This rank's accumulators and progress."""

    counts: Tensor
    firing_E: Tensor
    # Each latent's non-zero activations in the bins of core/thresholds.py (D: bins), int64.
    histogram_ED: Tensor
    # Each latent's bitmap of the token ids it fired on (core/distinct_tokens.py; D: bits), uint8.
    token_bits_ED: Tensor
    # When a latent counted as firing (io/firing_thresholds.py).
    firing_rule: dict[str, Any]
    prompts: int = 0
    tokens: int = 0
    prompts_before: int = 0
    # Each latent's top contexts (None with --top-contexts 0).
    top: TopContexts | None = None


def manifest_of(
    config: CooccurrenceConfig,
    sae: SAE[Any],
    ranks: RankInfo,
    dtype: torch.dtype,
    progress: list[dict[str, int]],
    complete: bool,
    counter_rule: dict[str, Any],
) -> dict[str, Any]:
    """What a checkpoint's manifest says: layout, sizes, provenance and each rank's progress."""
    return {
        "layout": ROWS if config.rows else TRIANGLE,
        "width": sae.cfg.d_sae,
        "rows": list(config.rows) or None,
        "count_dtype": str(dtype).removeprefix("torch."),
        "tokens": sum(p["tokens"] for p in progress),
        "prompts": sum(p["prompts"] for p in progress),
        "model": config.model,
        "sae_release": config.release,
        "sae_id": config.ablator_id,
        "hook_name": sae_hook_name(sae),
        "neuronpedia_id": sae.cfg.metadata.neuronpedia_id,
        "dataset": corpus_of(config).describe(),
        "max_tokens_in_prompt": config.max_tokens_in_prompt,
        "batch_size": config.batch_size,
        "count_bos": config.count_bos,
        "top_contexts": config.top_contexts,
        "firing": counter_rule,
        "activation_histogram": histogram_layout(),
        TOKEN_BITMAP: token_bits_layout(),
        "context_window": [CONTEXT_BEFORE, CONTEXT_AFTER] if config.top_contexts else None,
        "world": ranks.world,
        "progress": progress,
        "complete": complete,
    }


def _gather_progress(counter: Counter, ranks: RankInfo) -> list[dict[str, int]]:
    mine = torch.tensor(
        [counter.prompts_before + counter.prompts, counter.tokens], dtype=torch.int64
    )
    if ranks.world == 1:
        return [{"prompts": int(mine[0]), "tokens": int(mine[1])}]
    everyone = [torch.zeros_like(mine) for _ in range(ranks.world)]
    dist.all_gather(everyone, mine.to(counter.counts.device) if counter.counts.is_cuda else mine)
    return [{"prompts": int(t[0]), "tokens": int(t[1])} for t in everyone]


def checkpoint(
    config: CooccurrenceConfig,
    run_dir: Path,
    sae: SAE[Any],
    tokenizer: Any,
    counter: Counter,
    ranks: RankInfo,
    complete: bool,
) -> None:
    """Reduce every rank's counts (and top contexts) into rank 0, which writes them atomically
    (collective); the tokenizer's vocabulary goes beside them once, to show the contexts."""
    progress = _gather_progress(counter, ranks)
    if ranks.world > 1:
        for tensor in (counter.counts, counter.firing_E, counter.histogram_ED):
            dist.reduce(tensor, dst=0)
            if not ranks.is_main:
                tensor.zero_()
        # A union of bitmaps is their OR (the maximum of 0/1 bytes).
        dist.reduce(counter.token_bits_ED, dst=0, op=dist.ReduceOp.MAX)
        if not ranks.is_main:
            counter.token_bits_ED.zero_()
        if counter.top is not None:
            counter.top = _gathered_top(counter.top, ranks)
    if ranks.is_main:
        manifest = manifest_of(
            config, sae, ranks, counter.counts.dtype, progress, complete, counter.firing_rule
        )
        key = "row_counts" if config.rows else "pair_counts"
        if not config.rows:
            # Bits first: a reader trusts them only once the counts of the same checkpoint follow.
            save_ever_cooccurred(run_dir, counter.counts, manifest)
        tensors = {
            key: counter.counts,
            "firing_counts": counter.firing_E,
            HISTOGRAM: counter.histogram_ED,
            TOKEN_BITMAP: counter.token_bits_ED,
        }
        if counter.top is not None:
            if not has_vocabulary(run_dir):
                write_vocabulary(run_dir, token_strings(tokenizer))
            tensors.update(counter.top.tensors())
        save_counts(run_dir, tensors, manifest)
    barrier(ranks)


def _gathered_top(top: TopContexts, ranks: RankInfo) -> TopContexts:
    """On rank 0 the top contexts of every rank's; on the others none (they start again)."""
    gathered = []
    for tensor in top.tensors().values():
        everyone = [torch.empty_like(tensor) for _ in range(ranks.world)]
        dist.all_gather(everyone, tensor.contiguous())
        gathered.append(everyone)
    width, k = top.prompts_EK.shape
    if not ranks.is_main:
        return TopContexts.empty(width, k, top.prompts_EK.device)
    merged = top
    for rank in range(1, ranks.world):
        merged = merge_top(merged, TopContexts(*(parts[rank] for parts in gathered)))
    return merged


def token_strings(tokenizer: Any) -> list[str]:
    """Each token id's text as it reads inside a context: a word-initial piece keeps its space
    (decoding one id alone drops it for SentencePiece-style tokenizers, not byte-level ones)."""
    ids = list(range(len(tokenizer)))
    texts = tokenizer.batch_decode([[i] for i in ids])
    pieces = tokenizer.convert_ids_to_tokens(ids)
    return [
        " " + text
        if isinstance(piece, str) and piece[:1] in ("\u2581", "\u0120") and not text.startswith(" ")
        else text
        for text, piece in zip(texts, pieces, strict=True)
    ]


def start_counter(
    config: CooccurrenceConfig,
    width: int,
    dtype: torch.dtype,
    device: torch.device,
    ranks: RankInfo,
    firing_rule: dict[str, Any],
) -> Counter:
    """Fresh accumulators, or on resume this rank's progress and (rank 0) the saved counts."""
    shape = (len(config.rows), width) if config.rows else (triangle_size(width),)
    counter = Counter(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(width, dtype=torch.int64, device=device),
        torch.zeros(width, HISTOGRAM_BINS, dtype=torch.int64, device=device),
        torch.zeros(width, TOKEN_BITS, dtype=torch.uint8, device=device),
        firing_rule,
    )
    if config.top_contexts:
        counter.top = TopContexts.empty(width, config.top_contexts, device)
    if config.resume is None:
        return counter
    manifest = read_manifest(config.resume)
    progress = manifest["progress"][ranks.rank]
    counter.prompts_before, counter.tokens = progress["prompts"], progress["tokens"]
    if ranks.is_main:
        key = "row_counts" if config.rows else "pair_counts"
        saved = read_tensors(config.resume)
        counter.counts.copy_(saved[key])
        counter.firing_E.copy_(saved["firing_counts"])
        counter.histogram_ED.copy_(saved[HISTOGRAM])
        counter.token_bits_ED.copy_(saved[TOKEN_BITMAP])
        if counter.top is not None:
            counter.top = TopContexts.of(saved).to(device)
    return counter


def check_resumable(resume: Path, ranks: RankInfo, top_contexts: int) -> None:
    """Refuse to resume a finished run, one counted by another number of ranks, or one that kept
    another number of top contexts (a run from before they were kept has none).

    Every other setting comes from the run's saved config (``config.resumed``).
    """
    saved = read_manifest(resume)
    if HISTOGRAM not in saved.get("tensors", {}):
        raise ConfigError(
            "resume",
            f"'{resume}' was counted by an older version without activation histograms; "
            "count it again from the start",
        )
    if TOKEN_BITMAP not in saved.get("tensors", {}):
        raise ConfigError(
            "resume",
            f"'{resume}' was counted by an older version without token bitmaps; "
            "count it again from the start",
        )
    kept = int(saved.get("top_contexts") or 0)
    if kept != top_contexts:
        raise ConfigError(
            "top_contexts",
            f"'{resume}' kept {kept} top contexts per latent; resume with --top-contexts {kept}",
        )
    if saved.get("complete"):
        raise ConfigError("resume", f"'{resume}' is already complete")
    if saved.get("world") != ranks.world:
        raise ConfigError(
            "resume",
            f"'{resume}' was counted by {saved.get('world')} processes, this run has "
            f"{ranks.world}; resume with the same torchrun --nproc-per-node",
        )

"""Checkpoints of a co-occurrence run: this rank's accumulators, the manifest, save and resume.

At a checkpoint the ranks reduce into rank 0, which writes the bit-packed "ever co-occurred"
triangle and then the counts (see io/cooccurrence_results.py for why in that order); the other
ranks zero theirs. On resume rank 0 starts from the saved counts and the others from zero.
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
from sae_hacking.core.triangle import triangle_size
from sae_hacking.io.cooccurrence_results import (
    ROWS,
    TRIANGLE,
    read_manifest,
    read_tensors,
    save_counts,
    save_ever_cooccurred,
)
from sae_hacking.llm.distributed import RankInfo, barrier
from sae_hacking.llm.options import corpus_of
from sae_hacking.llm.saes import sae_hook_name


@dataclass
class Counter:
    """This rank's accumulators and progress."""

    counts: Tensor
    firing_E: Tensor
    prompts: int = 0
    tokens: int = 0
    prompts_before: int = 0


def manifest_of(
    config: CooccurrenceConfig,
    sae: SAE[Any],
    ranks: RankInfo,
    dtype: torch.dtype,
    progress: list[dict[str, int]],
    complete: bool,
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
    counter: Counter,
    ranks: RankInfo,
    complete: bool,
) -> None:
    """Reduce every rank's counts into rank 0, which writes them atomically (collective)."""
    progress = _gather_progress(counter, ranks)
    if ranks.world > 1:
        for tensor in (counter.counts, counter.firing_E):
            dist.reduce(tensor, dst=0)
            if not ranks.is_main:
                tensor.zero_()
    if ranks.is_main:
        manifest = manifest_of(config, sae, ranks, counter.counts.dtype, progress, complete)
        key = "row_counts" if config.rows else "pair_counts"
        if not config.rows:
            # Bits first: a reader trusts them only once the counts of the same checkpoint follow.
            save_ever_cooccurred(run_dir, counter.counts, manifest)
        save_counts(run_dir, {key: counter.counts, "firing_counts": counter.firing_E}, manifest)
    barrier(ranks)


def start_counter(
    config: CooccurrenceConfig,
    width: int,
    dtype: torch.dtype,
    device: torch.device,
    ranks: RankInfo,
) -> Counter:
    """Fresh accumulators, or on resume this rank's progress and (rank 0) the saved counts."""
    shape = (len(config.rows), width) if config.rows else (triangle_size(width),)
    counter = Counter(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(width, dtype=torch.int64, device=device),
    )
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
    return counter


def check_resumable(resume: Path, ranks: RankInfo) -> None:
    """Refuse to resume a finished run, or one counted by another number of ranks.

    Every other setting comes from the run's saved config (``config.resumed``).
    """
    saved = read_manifest(resume)
    if saved.get("complete"):
        raise ConfigError("resume", f"'{resume}' is already complete")
    if saved.get("world") != ranks.world:
        raise ConfigError(
            "resume",
            f"'{resume}' was counted by {saved.get('world')} processes, this run has "
            f"{ranks.world}; resume with the same torchrun --nproc-per-node",
        )

"""The co-occurrence run behind gemma_cooccurrences.py: count, checkpoint, resume, reduce across ranks.

Invariant that makes checkpoints and torchrun agree: the true counts are the sum over ranks of
each rank's accumulators. At a checkpoint the ranks reduce into rank 0 (which saves) and the other
ranks zero theirs; on resume rank 0 starts from the saved counts and the others from zero. Each
rank's batches are fixed by its shard and --batch-size, and checkpoints fall between batches, so
a resumed run sees exactly the batches an uninterrupted one would and reaches the same counts.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sae_lens import SAE, HookedSAETransformer
from torch import Tensor

from sae_hacking.cli import command_line, resolve_device
from sae_hacking.core.cooccurrence import add_counts_, add_row_counts_
from sae_hacking.core.triangle import triangle_size
from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import append_jsonl
from sae_hacking.io.bundle import bundle_paths, load_bundle, load_manifest
from sae_hacking.io.cooccurrence_results import (
    COUNTS,
    ROWS,
    TRIANGLE,
    save_counts,
    save_ever_cooccurred,
)
from sae_hacking.io.rundir import default_output_dir, jsonable, make_run_dir, write_config
from sae_hacking.llm.corpus import CorpusSpec, TokenBatch, iter_texts, iter_token_batches
from sae_hacking.llm.distributed import RankInfo, barrier, init_ranks, rank_device, shutdown
from sae_hacking.llm.models import DEFAULT_MODEL, TINY_MODEL, load_model, parse_dtype, stop_layer
from sae_hacking.llm.saes import (
    DEFAULT_ABLATOR_ID,
    DEFAULT_RELEASE,
    TINY_ABLATOR_ID,
    TINY_RELEASE,
    firing_latents,
    resolve_sae,
    sae_hook_name,
)

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
        if self.resume is not None and not bundle_paths(self.resume, COUNTS)[1].is_file():
            raise UserInputError("--resume", f"'{self.resume}' has no checkpoint ({COUNTS}.json)")
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


def _share(total: int, ranks: RankInfo) -> int:
    return total // ranks.world + int(ranks.rank < total % ranks.world)


@dataclass
class Counter:
    """This rank's accumulators and progress."""

    counts: Tensor
    firing_E: Tensor
    prompts: int = 0
    tokens: int = 0
    prompts_before: int = 0


@torch.inference_mode()
def hook_acts(model: HookedSAETransformer, hook_name: str, batch: TokenBatch) -> Tensor:
    """The activations at ``hook_name`` for a batch, running the model only as far as the hook."""
    stop = stop_layer(hook_name)
    if hook_name == f"blocks.{stop - 1}.hook_resid_post":
        # A forward stopped after a block returns that block's hooked resid_post: no cache needed
        # (run_with_cache cost ~10% of the tiny model's forward, see benchmarks/cooccurrence.py).
        return model(batch.tokens_BS, attention_mask=batch.attention_mask_BS, stop_at_layer=stop)
    _, cache = model.run_with_cache(
        batch.tokens_BS,
        attention_mask=batch.attention_mask_BS,
        names_filter=[hook_name],
        stop_at_layer=stop,
    )
    return cache[hook_name]


@torch.inference_mode()
def active_of_batch(
    model: HookedSAETransformer, sae: SAE[Any], hook_name: str, batch: TokenBatch
) -> Tensor:
    """Which SAE latents fire on each counted token, running the model only as far as the hook."""
    acts = hook_acts(model, hook_name, batch)
    x_TM = acts.reshape(*acts.shape[:2], -1)[batch.counted_BS]
    return firing_latents(sae, x_TM)


def _manifest(
    config: CooccurrenceConfig,
    sae: SAE[Any],
    ranks: RankInfo,
    dtype: torch.dtype,
    progress: list[dict[str, int]],
    complete: bool,
) -> dict[str, Any]:
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
        "dataset": config.corpus.describe(),
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
        manifest = _manifest(config, sae, ranks, counter.counts.dtype, progress, complete)
        key = "row_counts" if config.rows else "pair_counts"
        save_counts(run_dir, {key: counter.counts, "firing_counts": counter.firing_E}, manifest)
        if complete and not config.rows:
            save_ever_cooccurred(run_dir, counter.counts, manifest)
    barrier(ranks)


def _start_counter(
    config: CooccurrenceConfig,
    width: int,
    dtype: torch.dtype,
    device: torch.device,
    ranks: RankInfo,
) -> Counter:
    shape = (len(config.rows), width) if config.rows else (triangle_size(width),)
    counter = Counter(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(width, dtype=torch.int64, device=device),
    )
    if config.resume is None:
        return counter
    manifest = load_manifest(config.resume, COUNTS)
    progress = manifest["progress"][ranks.rank]
    counter.prompts_before, counter.tokens = progress["prompts"], progress["tokens"]
    if ranks.is_main:
        key = "row_counts" if config.rows else "pair_counts"
        saved, _ = load_bundle(config.resume, COUNTS)
        counter.counts.copy_(saved[key])
        counter.firing_E.copy_(saved["firing_counts"])
    return counter


def _check_resumable(
    config: CooccurrenceConfig, expected: dict[str, Any], dtype: torch.dtype
) -> None:
    assert config.resume is not None
    saved = load_manifest(config.resume, COUNTS)
    if saved.get("complete"):
        raise UserInputError("--resume", f"'{config.resume}' is already complete")
    for key in (*RESUME_KEYS, "count_dtype"):
        want = expected[key] if key != "count_dtype" else str(dtype).removeprefix("torch.")
        if jsonable(saved.get(key)) != jsonable(want):
            raise UserInputError(
                "--resume",
                f"the checkpoint has {key}={saved.get(key)!r} but this run has {want!r}; pass the same flags",
            )


def _shared_run_dir(config: CooccurrenceConfig, ranks: RankInfo) -> Path:
    if config.resume is not None:
        return config.resume
    box: list[Any] = [
        make_run_dir(config.output_dir, "gemma_cooccurrences") if ranks.is_main else None
    ]
    if ranks.world > 1:
        dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def _progress_bar(total: int | None, show: bool) -> Progress:
    return Progress(
        TextColumn("counting"),
        BarColumn(),
        TextColumn("{task.completed:,} prompts"),
        TextColumn("{task.fields[tokens]:,} tokens"),
        TextColumn("{task.fields[rate]:,.0f} tokens/s"),
        TimeElapsedColumn(),
        disable=not show,
        transient=False,
    )


def _any_rank_continues(active: bool, ranks: RankInfo, device: torch.device) -> bool:
    if ranks.world == 1:
        return active
    flag = torch.tensor([int(active)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def run(config: CooccurrenceConfig) -> Path:
    """Count co-occurrences over the corpus; returns the run directory."""
    ranks = init_ranks(resolve_device(config.device))
    try:
        return _run(config, ranks)
    finally:
        shutdown(ranks)


def _run(config: CooccurrenceConfig, ranks: RankInfo) -> Path:
    device = rank_device(resolve_device(config.device), ranks)
    run_dir = _shared_run_dir(config, ranks)
    if ranks.is_main:
        if config.resume is None:
            write_config(run_dir, config, command_line())
        else:
            append_jsonl(
                run_dir / "resumes.jsonl", {"config": jsonable(config), "command": command_line()}
            )
    model = load_model(config.model, device, parse_dtype(config.dtype))
    sae = resolve_sae(model, config.release, config.ablator_id, device)
    hook_name = sae_hook_name(sae)
    width = sae.cfg.d_sae
    if config.rows and max(config.rows) >= width:
        raise UserInputError(
            "--rows", f"latent {max(config.rows)} is out of range; the SAE has {width} latents"
        )
    dtype = choose_count_dtype(config, ranks.world)
    if config.resume is not None:
        _check_resumable(config, _manifest(config, sae, ranks, dtype, [], False), dtype)
    counter = _start_counter(config, width, dtype, device, ranks)
    assert model.tokenizer is not None
    texts = iter_texts(config.corpus, ranks.rank, ranks.world, skip=counter.prompts_before)
    prompt_budget = (
        None
        if config.max_prompts is None
        else _share(config.max_prompts, ranks) - counter.prompts_before
    )
    if prompt_budget is not None:
        texts = (text for _, text in zip(range(max(prompt_budget, 0)), texts, strict=False))
    token_budget = _share(config.max_tokens, ranks) if config.max_tokens else None
    batches = iter_token_batches(
        texts, model.tokenizer, config.batch_size, config.max_tokens_in_prompt, config.count_bos
    )
    rows_R = torch.tensor(config.rows, dtype=torch.long, device=device)
    started, step = time.perf_counter(), 0
    with _progress_bar(config.max_prompts, ranks.is_main) as bar:
        task = bar.add_task("count", total=config.max_prompts, tokens=counter.tokens, rate=0.0)
        while True:
            within_budget = token_budget is None or counter.tokens < token_budget
            batch = next(batches, None) if within_budget else None
            if not _any_rank_continues(batch is not None, ranks, device):
                break
            if batch is not None:
                active_TE = active_of_batch(model, sae, hook_name, batch.to(device))
                if config.rows:
                    add_row_counts_(counter.counts, counter.firing_E, active_TE, rows_R)
                else:
                    add_counts_(counter.counts, counter.firing_E, active_TE)
                counter.prompts += batch.n_prompts
                counter.tokens += int(batch.counted_BS.sum())
            step += 1
            rate = counter.tokens / max(time.perf_counter() - started, 1e-9)
            bar.update(
                task, advance=batch.n_prompts if batch else 0, tokens=counter.tokens, rate=rate
            )
            if config.save_every and step % config.save_every == 0:
                checkpoint(config, run_dir, sae, counter, ranks, complete=False)
    checkpoint(config, run_dir, sae, counter, ranks, complete=True)
    return run_dir

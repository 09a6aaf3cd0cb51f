"""The co-occurrence run behind gemma_cooccurrences.py: count, checkpoint, resume, reduce across ranks.

Invariant that makes checkpoints and torchrun agree: the true counts are the sum over ranks of
each rank's accumulators. At a checkpoint the ranks reduce into rank 0 (which saves) and the other
ranks zero theirs; on resume rank 0 starts from the saved counts and the others from zero. Each
rank's batches are fixed by its shard and --batch-size, and checkpoints fall between batches, so
a resumed run sees exactly the batches an uninterrupted one would and reaches the same counts.
"""

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sae_lens import SAE, HookedSAETransformer
from torch import Tensor

from sae_hacking.config import ConfigError, read_saved_options, resumed
from sae_hacking.cooccurrence.checkpoint import (
    Counter,
    check_resumable,
    checkpoint,
    start_counter,
)
from sae_hacking.cooccurrence.config import DEFAULT_PROMPT_TOKENS, CooccurrenceConfig
from sae_hacking.cooccurrence.contexts import batch_top, merge_top
from sae_hacking.core.cooccurrence import active_entries, add_entry_counts_, add_row_counts_
from sae_hacking.core.distinct_tokens import add_token_bits_
from sae_hacking.core.thresholds import add_activation_histogram_
from sae_hacking.devices import command_line, free_memory_bytes, resolve_device
from sae_hacking.io.atomic import append_jsonl, remove_stale_temporaries
from sae_hacking.io.cooccurrence_results import COUNTS, has_results, read_manifest
from sae_hacking.io.firing_thresholds import (
    POSITIVE,
    global_rule,
    load_thresholds,
    run_thresholds,
    write_thresholds,
)
from sae_hacking.io.rundir import (
    default_output_dir,
    jsonable,
    make_run_dir,
    remove_run_dir,
    removed_unless_used,
    write_config,
)
from sae_hacking.llm.corpus import TokenBatch, check_corpus, iter_texts, iter_token_batches
from sae_hacking.llm.distributed import (
    RankInfo,
    init_ranks,
    main_rank_makes,
    rank_device,
    shutdown,
)
from sae_hacking.llm.models import load_model, parse_dtype, prompt_length, stop_layer
from sae_hacking.llm.options import corpus_of
from sae_hacking.llm.saes import (
    TINY_RELEASE,
    check_release_id,
    firing_and_activations,
    resolve_sae,
    sae_hook_name,
)
from sae_hacking.memory import check_fits

SCRIPT = "gemma_cooccurrences"


def _share(total: int, ranks: RankInfo) -> int:
    return total // ranks.world + int(ranks.rank < total % ranks.world)


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
def encode_batch(
    model: HookedSAETransformer, sae: SAE[Any], hook_name: str, batch: TokenBatch
) -> tuple[Tensor, Tensor]:
    """Which SAE latents fire on each counted token and their activations where they fire,
    running the model only as far as the hook."""
    acts = hook_acts(model, hook_name, batch)
    x_TM = acts.reshape(*acts.shape[:2], -1)[batch.counted_BS]
    return firing_and_activations(sae, x_TM)


def firing_entries(
    active_TE: Tensor, acts_TE: Tensor, histogram_ED: Tensor, thresholds_E: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Token and latent of each entry that counts as firing (active and, with bars, above its
    latent's bar), in row-major order; every active entry's activation is added to the
    histograms first, so a thresholded run keeps the histograms of all non-zero activations."""
    token_D, latent_D = active_entries(active_TE)
    values_D = acts_TE[token_D, latent_D].float()
    add_activation_histogram_(histogram_ED, latent_D, values_D)
    if thresholds_E is None:
        return token_D, latent_D
    above_D = values_D > thresholds_E[latent_D]
    return token_D[above_D], latent_D[above_D]


def active_of_batch(
    model: HookedSAETransformer, sae: SAE[Any], hook_name: str, batch: TokenBatch
) -> Tensor:
    """Which SAE latents fire on each counted token, running the model only as far as the hook."""
    return encode_batch(model, sae, hook_name, batch)[0]


@torch.inference_mode()
def add_batch_contexts(
    counter: Counter,
    active_TE: Tensor,
    acts_TE: Tensor,
    batch: TokenBatch,
    ranks: RankInfo,
    k: int,
) -> None:
    """Merge the batch's best contexts into the counter's; prompts get their corpus index
    (rank r of w reads prompts r, r + w, ..., see llm/corpus.py)."""
    assert counter.top is not None
    read = counter.prompts_before + counter.prompts
    prompt_B = ranks.rank + ranks.world * (
        read + torch.arange(batch.n_prompts, device=active_TE.device)
    )
    found = batch_top(
        acts_TE.float(),
        active_TE,
        batch.tokens_BS,
        batch.attention_mask_BS,
        batch.counted_BS,
        prompt_B,
        k,
        counter.top.floor_E(),
    )
    counter.top = merge_top(counter.top, found)


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


def prepared(config: CooccurrenceConfig) -> CooccurrenceConfig:
    """The config that runs: on resume the saved one (an option given now that contradicts it is
    an error), with the SAE named and the prompt length resolved against the model's context."""
    if config.resume is not None:
        if not has_results(config.resume):
            raise ConfigError(
                "resume",
                f"'{config.resume}' holds no checkpoint ({COUNTS}.safetensors); give the directory "
                "of a gemma_cooccurrences.py run started with --save-every",
            )
        config = resumed(config, read_saved_options(config.resume))
    return replace(
        config,
        sae_release=config.release,
        sae_id=config.ablator_id,
        max_tokens_in_prompt=prompt_length(
            config.max_tokens_in_prompt, DEFAULT_PROMPT_TOKENS, config.model
        ),
    )


def run(config: CooccurrenceConfig) -> Path:
    """Count co-occurrences over the corpus; returns the run directory."""
    device = resolve_device(config.device)
    config = prepared(config)
    ranks = init_ranks(device)
    try:
        return _run(config, ranks, rank_device(device, ranks))
    finally:
        shutdown(ranks)


@dataclass(frozen=True)
class FiringBars:
    """When a latent counts as firing: above ``thresholds_E`` (None: activation > 0), by ``rule``
    (see io/firing_thresholds.py)."""

    thresholds_E: Tensor | None
    rule: dict[str, Any]


def firing_bars(config: CooccurrenceConfig, sae: SAE[Any], device: torch.device) -> FiringBars:
    """The firing rule of this run: the flags', or on resume the run's own (its saved bars)."""
    width = sae.cfg.d_sae
    if config.resume is not None:
        manifest = read_manifest(config.resume)
        thresholds_E = run_thresholds(config.resume, manifest, "--resume")
        rule = manifest.get("firing", POSITIVE)
    elif config.firing_threshold is not None:
        thresholds_E = torch.full((width,), config.firing_threshold)
        rule = global_rule(config.firing_threshold)
    elif config.firing_thresholds_from is not None:
        sae_of = {
            "model": config.model,
            "sae_id": config.ablator_id,
            "hook_name": sae_hook_name(sae),
        }
        thresholds_E, rule = load_thresholds(
            config.firing_thresholds_from, sae_of, width, "--firing-thresholds-from"
        )
    else:
        thresholds_E, rule = None, POSITIVE
    return FiringBars(None if thresholds_E is None else thresholds_E.to(device), rule)


def _load_checked(
    config: CooccurrenceConfig, device: torch.device
) -> tuple[HookedSAETransformer, SAE[Any], FiringBars]:
    """Model, SAE and firing rule, every name and pairing checked before any download that can be
    avoided."""
    if config.release != TINY_RELEASE and not Path(config.release).is_dir():
        check_release_id(config.release, config.ablator_id)
    model = load_model(config.model, device, parse_dtype(config.dtype))
    sae = resolve_sae(model, config.release, config.ablator_id, device)
    if config.rows and max(config.rows) >= sae.cfg.d_sae:
        raise ConfigError(
            "rows",
            f"latent {max(config.rows)} is out of range; the SAE has {sae.cfg.d_sae} latents",
        )
    # A batch's residual activations and SAE codes (4 bytes each), before the first forward.
    tokens = config.batch_size * (config.max_tokens_in_prompt or DEFAULT_PROMPT_TOKENS)
    batch_bytes = 4 * tokens * (model.cfg.d_model + sae.cfg.d_sae)
    check_fits(
        batch_bytes,
        "--batch-size",
        f"a batch of {config.batch_size:,} prompts",
        free_memory_bytes(device),
    )
    return model, sae, firing_bars(config, sae, device)


def _run(config: CooccurrenceConfig, ranks: RankInfo, device: torch.device) -> Path:
    corpus = corpus_of(config)
    check_corpus(corpus)
    model, sae, firing = _load_checked(config, device)
    if config.resume is not None:
        check_resumable(config.resume, ranks, config.top_contexts)
        if ranks.is_main:
            remove_stale_temporaries(config.resume)
        return _count(config, ranks, device, model, sae, firing, config.resume)
    # The run directory is made only once every input has been checked, and removed again if the
    # corpus is refused while streaming before anything beside its config was written.
    run_dir = main_rank_makes(
        ranks, lambda: make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    )
    if not ranks.is_main:
        return _count(config, ranks, device, model, sae, firing, run_dir)
    with removed_unless_used(run_dir):
        return _count(config, ranks, device, model, sae, firing, run_dir)


def _total_tokens(tokens: int, ranks: RankInfo, device: torch.device) -> int:
    if ranks.world == 1:
        return tokens
    total = torch.tensor([tokens], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def _count(
    config: CooccurrenceConfig,
    ranks: RankInfo,
    device: torch.device,
    model: HookedSAETransformer,
    sae: SAE[Any],
    firing: FiringBars,
    run_dir: Path,
) -> Path:
    corpus = corpus_of(config)
    hook_name = sae_hook_name(sae)
    width = sae.cfg.d_sae
    dtype = getattr(torch, config.choose_count_dtype(ranks.world))
    if ranks.is_main and config.resume is None:
        write_config(run_dir, config, command_line())
        if firing.rule["rule"] == "per_latent":
            assert firing.thresholds_E is not None
            write_thresholds(run_dir, firing.thresholds_E, firing.rule)
    # On resume the saved counts are read (and checked) before the resume is recorded, so a
    # damaged checkpoint is refused without touching the run.
    counter = start_counter(config, width, dtype, device, ranks, firing.rule)
    if ranks.is_main and config.resume is not None:
        append_jsonl(
            run_dir / "resumes.jsonl", {"config": jsonable(config), "command": command_line()}
        )
    assert model.tokenizer is not None
    texts = iter_texts(corpus, ranks.rank, ranks.world, skip=counter.prompts_before)
    prompt_budget = (
        None
        if config.max_prompts is None
        else _share(config.max_prompts, ranks) - counter.prompts_before
    )
    if prompt_budget is not None:
        texts = (text for _, text in zip(range(max(prompt_budget, 0)), texts, strict=False))
    token_budget = _share(config.max_tokens, ranks) if config.max_tokens else None
    assert config.max_tokens_in_prompt is not None  # resolved by prepared()
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
                batch = batch.to(device)
                active_TE, acts_TE = encode_batch(model, sae, hook_name, batch)
                token_D, latent_D = firing_entries(
                    active_TE, acts_TE, counter.histogram_ED, firing.thresholds_E
                )
                ids_T = batch.tokens_BS[batch.counted_BS]  # the rows of active_TE, in order
                add_token_bits_(counter.token_bits_ED, latent_D, ids_T[token_D])
                if firing.thresholds_E is not None and (config.top_contexts or config.rows):
                    active_TE = active_TE & (acts_TE.float() > firing.thresholds_E)
                if config.top_contexts:
                    add_batch_contexts(
                        counter, active_TE, acts_TE, batch, ranks, config.top_contexts
                    )
                del acts_TE  # freed before the scatter, so peak memory stays that of counting
                if config.rows:
                    add_row_counts_(counter.counts, counter.firing_E, active_TE, rows_R)
                else:
                    n_tokens = active_TE.shape[0]
                    add_entry_counts_(counter.counts, counter.firing_E, token_D, latent_D, n_tokens)
                counter.prompts += batch.n_prompts
                counter.tokens += int(batch.counted_BS.sum())
            step += 1
            rate = counter.tokens / max(time.perf_counter() - started, 1e-9)
            bar.update(
                task, advance=batch.n_prompts if batch else 0, tokens=counter.tokens, rate=rate
            )
            if config.save_every and step % config.save_every == 0:
                checkpoint(config, run_dir, sae, model.tokenizer, counter, ranks, complete=False)
    # Before ranks reduce, counter.tokens on rank 0 holds the saved tokens plus its own.
    if _total_tokens(counter.tokens, ranks, device) == 0:
        if config.resume is None and ranks.is_main:
            remove_run_dir(run_dir)  # its checkpoints, if any, hold no token
        raise ConfigError(
            "max_tokens_in_prompt",
            f"{counter.prompts_before + counter.prompts} prompts gave no token to count "
            "(BOS is not counted); give longer prompts or a larger --max-tokens-in-prompt",
        )
    checkpoint(config, run_dir, sae, model.tokenizer, counter, ranks, complete=True)
    return run_dir

"""The selective-ablation run: corpus in, effect rows out, checkpointed, resumable, one shard per rank.

Layout of a run directory::

    config.json                 written first
    partial/rank-R/effects.json this rank's shards and how many of its prompts are done
    partial/rank-R/shard-*.safetensors
    effects/                    all ranks' shards summed and compacted (what look_for_pairs reads)
    summary.json

A checkpoint flushes the in-memory rows to a new shard, then rewrites ``effects.json`` atomically;
shards it does not list (written by a run killed before its manifest) are deleted on resume.
Checkpoints fall on the same batches whether or not a run was interrupted, so a resumed run sums
the same shards in the same order and ends bit-identical.
"""

import json
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sae_hacking.ablation.batched import (
    batched_ablation_effects,
    check_linear_decoder,
    effect_width,
)
from sae_hacking.ablation.config import (
    DEFAULT_PROMPT_TOKENS,
    SelectiveAblationConfig,
    default_saes,
)
from sae_hacking.ablation.sites import plan_for
from sae_hacking.config import ConfigError, read_saved_options, resumed
from sae_hacking.core.ablation import ablatable_latents
from sae_hacking.devices import command_line, resolve_device
from sae_hacking.io.ablation_sources import CooccurrenceFiring, read_firing
from sae_hacking.io.atomic import atomic_write_json, remove_stale_temporaries
from sae_hacking.io.bundle import damaged
from sae_hacking.io.effects import (
    MANIFEST,
    RowAccumulator,
    StoreInfo,
    compact,
    read_manifest,
    write_manifest,
    write_shard,
)
from sae_hacking.io.rundir import (
    default_output_dir,
    make_run_dir,
    removed_unless_used,
    write_config,
)
from sae_hacking.llm.corpus import check_corpus, iter_texts, iter_token_batches
from sae_hacking.llm.distributed import (
    RankInfo,
    barrier,
    init_ranks,
    main_rank_makes,
    rank_device,
    shutdown,
)
from sae_hacking.llm.models import load_model, parse_dtype, prompt_length
from sae_hacking.llm.options import corpus_of
from sae_hacking.llm.saes import resolve_sae

SCRIPT = "gemma_selective_ablate"


def _fresh_run_dir(config: SelectiveAblationConfig) -> Path:
    run_dir = make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    write_config(run_dir, config, command_line())
    return run_dir


def _sae_description(release: str, sae_id: str, sae: Any) -> dict[str, Any]:
    return {
        "release": release,
        "id": sae_id,
        "hook": sae.cfg.metadata.hook_name,
        "width": int(sae.cfg.d_sae),
        "neuronpedia_id": sae.cfg.metadata.neuronpedia_id,
    }


def _progress(disable: bool) -> Progress:
    return Progress(
        TextColumn("[bold]ablating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[prompts_s]:,.1f} prompts/s"),
        TextColumn("{task.fields[tokens_s]:,.0f} tokens/s"),
        TextColumn("{task.fields[ablations]:,} ablations"),
        TimeRemainingColumn(),
        disable=disable,
    )


def _resume_state(rank_dir: Path) -> dict[str, Any] | None:
    if not (rank_dir / MANIFEST).is_file():
        return None
    state = read_manifest(rank_dir, "--resume")  # a damaged manifest is refused in one line
    try:
        for key in ("prompts_done", "prompts_ablated", "ablations"):
            int(state[key])
    except (KeyError, TypeError, ValueError) as error:
        raise damaged("--resume", rank_dir / MANIFEST, "it lacks the progress counts") from error
    listed = {entry["name"] for entry in state["shards"]}
    for path in rank_dir.glob("shard-*"):
        if path.name.split(".")[0] not in listed:
            path.unlink()  # written after the last checkpoint
    return state


def _prompts_done(rank_dir: Path) -> int:
    return int(json.loads((rank_dir / MANIFEST).read_text(encoding="utf-8"))["prompts_done"])


def _firing(config: SelectiveAblationConfig) -> CooccurrenceFiring | None:
    if config.cooccurrence_dir is None:
        return None
    assert config.ablator_sae_release is not None and config.ablator_sae_id is not None
    return read_firing(
        config.cooccurrence_dir, config.model, config.ablator_sae_release, config.ablator_sae_id
    )


def prepared(config: SelectiveAblationConfig) -> SelectiveAblationConfig:
    """The config that runs: on resume the saved one (an option given now that contradicts it is
    an error), with every SAE named and the prompt length resolved against the model's context."""
    if config.resume is not None:
        config = resumed(config, read_saved_options(config.resume))
    ablator_release, ablator_id, reader_release, reader_id = default_saes(config.model)
    return replace(
        config,
        ablator_sae_release=config.ablator_sae_release or ablator_release,
        ablator_sae_id=config.ablator_sae_id or ablator_id,
        reader_sae_release=config.reader_sae_release or reader_release,
        reader_sae_id=config.reader_sae_id or reader_id,
        max_tokens_in_prompt=prompt_length(
            config.max_tokens_in_prompt, DEFAULT_PROMPT_TOKENS, config.model
        ),
    )


def run(config: SelectiveAblationConfig) -> Path:
    """Run (or resume) selective ablation and return the run directory.

    With ``cooccurrence_dir``, latents firing on more than ``exclude_latent_threshold`` of the
    co-occurrence run's tokens are never ablated. Under torchrun every rank ablates its share of
    the prompts into ``partial/rank-R`` and rank 0 sums them into ``effects/``.
    """
    device = resolve_device(config.device)
    config = prepared(config)
    ranks = init_ranks(device)
    try:
        return _run(config, ranks, rank_device(device, ranks))
    finally:
        shutdown(ranks)


def _run(config: SelectiveAblationConfig, ranks: RankInfo, device: torch.device) -> Path:
    # Everything that can refuse the flags (corpus, model, SAEs, their pairing) is loaded before a
    # fresh run directory is made, so a refused run leaves nothing behind.
    assert config.ablator_sae_release is not None and config.ablator_sae_id is not None
    assert config.reader_sae_release is not None and config.reader_sae_id is not None
    assert config.max_tokens_in_prompt is not None
    corpus = corpus_of(config)
    check_corpus(corpus)
    model = load_model(config.model, device=device, dtype=parse_dtype(config.dtype))
    ablator = resolve_sae(
        model, config.ablator_sae_release, config.ablator_sae_id, device, flag="--ablator-sae-id"
    )
    reader = resolve_sae(
        model, config.reader_sae_release, config.reader_sae_id, device, flag="--reader-sae-id"
    )
    check_linear_decoder(ablator, "--ablator-sae-id")
    check_linear_decoder(reader, "--reader-sae-id")
    plan = plan_for(ablator.cfg.metadata.hook_name, reader.cfg.metadata.hook_name)  # pyright: ignore[reportArgumentType]
    width = int(ablator.cfg.d_sae)
    for feature in config.selected_features:
        if feature >= width:
            raise ConfigError(
                "selected_features",
                f"{feature} is out of range; the ablator SAE has {width} latents",
            )
    if config.abridge_ablations_to > width:
        raise ConfigError(
            "abridge_ablations_to",
            f"{config.abridge_ablations_to} exceeds the ablator's {width} latents",
        )
    firing = _firing(config)
    firing_counts, n_tokens = (firing.firing_E, firing.tokens) if firing else (None, 0)
    # Latents fire above the co-occurrence run's bars, so both steps agree on which fired.
    thresholds_E = None if firing is None else firing.thresholds_E
    if firing_counts is not None and firing_counts.shape[0] != width:
        raise ConfigError(
            "cooccurrence_dir",
            f"its counts are for {firing_counts.shape[0]} latents, the ablator SAE has {width}; "
            "give a co-occurrence run of the same ablator SAE",
        )
    if config.resume is not None and ranks.is_main:
        remove_stale_temporaries(config.resume)
    run_dir = config.resume or main_rank_makes(ranks, lambda: _fresh_run_dir(config))
    # A fresh run refused while streaming its corpus, before any checkpoint, leaves nothing behind.
    cleanup: AbstractContextManager[Path] = (
        removed_unless_used(run_dir)
        if config.resume is None and ranks.is_main
        else nullcontext(run_dir)
    )
    with cleanup:
        ablatable_E = ablatable_latents(
            firing_counts, n_tokens, config.exclude_latent_threshold, width
        )
        selected_D = torch.tensor(config.selected_features, dtype=torch.long, device=device)
        # The reader's "width" is the width of the effect rows, so stores check shapes alike in
        # every space; "effect_space" tells look_for_pairs what the rows are.
        reader_info = _sae_description(config.reader_sae_release, config.reader_sae_id, reader)
        width_Y = effect_width(reader, config.effect_space)
        reader_info |= {"sae_width": reader_info["width"], "width": width_Y}
        reader_info |= {"effect_space": config.effect_space}
        ablator_info = _sae_description(config.ablator_sae_release, config.ablator_sae_id, ablator)
        if thresholds_E is not None:
            assert firing is not None
            ablator_info["firing"] = firing.rule
            thresholds_E = thresholds_E.to(device)
        info = StoreInfo(
            ablator_info,
            reader_info,
            config.model,
        )

        rank_dir = run_dir / "partial" / f"rank-{ranks.rank}"
        state = _resume_state(rank_dir) or {
            "shards": [],
            "prompts_done": 0,
            "prompts_ablated": 0,
            "ablations": 0,
        }
        shards: list[dict[str, Any]] = state["shards"]
        done, ablated, n_ablations = (
            state["prompts_done"],
            state["prompts_ablated"],
            state["ablations"],
        )
        my_prompts = (
            None
            if config.max_prompts is None
            else len(range(ranks.rank, config.max_prompts, ranks.world))
        )
        accumulator = RowAccumulator(width, width_Y, device)
        assert model.tokenizer is not None

        def checkpoint() -> None:
            rank_dir.mkdir(parents=True, exist_ok=True)  # made late: a refused corpus leaves no run
            if accumulator.n_rows:
                shards.append(
                    write_shard(rank_dir, f"shard-{len(shards):05d}", *accumulator.take())
                )
            extra = {"prompts_done": done, "prompts_ablated": ablated, "ablations": n_ablations}
            write_manifest(rank_dir, info, shards, extra)

        texts = iter_texts(corpus, ranks.rank, ranks.world, skip=done)
        if my_prompts is not None:
            texts = (text for _, text in zip(range(max(my_prompts - done, 0)), texts, strict=False))
        batches = iter_token_batches(
            texts, model.tokenizer, config.batch_size, config.max_tokens_in_prompt, config.count_bos
        )
        with _progress(disable=not ranks.is_main) as progress:
            task = progress.add_task(
                "ablate", total=my_prompts, completed=done, prompts_s=0.0, tokens_s=0.0, ablations=0
            )
            started, prompts_now, tokens_now = time.perf_counter(), 0, 0
            for batch in batches:
                batch = batch.to(device)
                choice, chunks = batched_ablation_effects(
                    model,
                    plan,
                    ablator,
                    reader,
                    batch.tokens_BS,
                    batch.attention_mask_BS,
                    batch.counted_BS,
                    config.abridge_ablations_to,
                    ablatable_E,
                    selected_D,
                    config.max_batch_ablations,
                    effect_space=config.effect_space,
                    firing_thresholds_E=thresholds_E,
                )
                for chunk in chunks:
                    accumulator.add(chunk.latents_K, chunk.effects_KY)
                    n_ablations += int(chunk.latents_K.shape[0])
                done += batch.n_prompts
                prompts_now += batch.n_prompts
                tokens_now += int(batch.counted_BS.sum())
                ablated += int(choice.chosen_B.sum())
                batch_number = (done + config.batch_size - 1) // config.batch_size
                if (
                    batch_number % config.save_every == 0
                    or accumulator.n_rows > config.max_rows_in_memory
                ):
                    checkpoint()
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(
                    task,
                    completed=done,
                    prompts_s=prompts_now / elapsed,
                    tokens_s=tokens_now / elapsed,
                    ablations=n_ablations,
                )
        checkpoint()
        barrier(ranks)
        if ranks.is_main:
            rank_dirs = sorted((run_dir / "partial").glob("rank-*"))
            compact(rank_dirs, run_dir / "effects", "--resume")
            prompts = sum(_prompts_done(rank_dir) for rank_dir in rank_dirs)
            atomic_write_json(
                run_dir / "summary.json",
                {
                    "ranks": ranks.world,
                    "plan": {"ablator": plan.ablator.name, "reader": plan.reader.name},
                    "prompts": prompts,
                    "max_prompts": config.max_prompts,
                    # Fewer prompts than --max-prompts asked for: the corpus had no more.
                    "corpus_ran_out": config.max_prompts is not None
                    and prompts < config.max_prompts,
                },
            )
        barrier(ranks)
        return run_dir

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sae_hacking.ablation.batched import batched_ablation_effects, check_linear_decoder
from sae_hacking.ablation.sites import plan_for
from sae_hacking.core.ablation import ablatable_latents
from sae_hacking.devices import command_line, resolve_device
from sae_hacking.errors import UserInputError
from sae_hacking.io.ablation_sources import read_firing_counts
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.effects import (
    MANIFEST,
    RowAccumulator,
    StoreInfo,
    compact,
    write_manifest,
    write_shard,
)
from sae_hacking.io.rundir import make_run_dir, write_config
from sae_hacking.llm import (
    CorpusSpec,
    init_ranks,
    iter_texts,
    iter_token_batches,
    load_model,
    parse_dtype,
    rank_device,
    resolve_sae,
)
from sae_hacking.llm.distributed import RankInfo, barrier, shutdown

SCRIPT = "gemma_selective_ablate"


@dataclass(frozen=True)
class SelectiveAblationConfig:
    """Everything a selective-ablation run depends on (validated here, so errors name the flag)."""

    model: str = "google/gemma-2-2b"
    ablator_sae_release: str = "gemma-scope-2b-pt-res-canonical"
    ablator_sae_id: str = "layer_20/width_65k/canonical"
    reader_sae_release: str = "gemma-scope-2b-pt-mlp-canonical"
    reader_sae_id: str = "layer_21/width_65k/canonical"
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    n_prompts: int = 1
    batch_size: int = 8
    max_tokens_in_prompt: int = 125
    abridge_ablations_to: int = 100
    selected_features: tuple[int, ...] = ()
    exclude_latent_threshold: float | None = None
    cooccurrence_dir: Path | None = None
    max_batch_ablations: int = 512
    save_every: int = 100
    max_rows_in_memory: int = 16384
    device: str = "auto"
    dtype: str = "float32"
    output_dir: Path = Path("results")

    def __post_init__(self) -> None:
        positive = {
            "--n-prompts": self.n_prompts,
            "--batch-size": self.batch_size,
            "--max-tokens-in-prompt": self.max_tokens_in_prompt,
            "--abridge-ablations-to": self.abridge_ablations_to,
            "--max-batch-ablations": self.max_batch_ablations,
            "--save-every": self.save_every,
            "--max-rows-in-memory": self.max_rows_in_memory,
        }
        for flag, value in positive.items():
            if value < 1:
                raise UserInputError(flag, f"{value} is not positive; give 1 or more")
        if self.max_tokens_in_prompt < 2:
            raise UserInputError(
                "--max-tokens-in-prompt", "a prompt needs BOS and at least one token"
            )
        if any(f < 0 for f in self.selected_features):
            raise UserInputError("--selected-features", "latent ids are 0 or more")
        if self.exclude_latent_threshold is not None:
            if not 0.0 < self.exclude_latent_threshold <= 1.0:
                raise UserInputError(
                    "--exclude-latent-threshold", "give a firing fraction in (0, 1]"
                )
            if self.cooccurrence_dir is None:
                raise UserInputError(
                    "--exclude-latent-threshold",
                    "needs firing counts; pass --cooccurrence-dir from gemma_cooccurrences.py",
                )
        parse_dtype(self.dtype)


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
    manifest_path = rank_dir / MANIFEST
    if not manifest_path.is_file():
        return None
    state = json.loads(manifest_path.read_text(encoding="utf-8"))
    listed = {entry["name"] for entry in state["shards"]}
    for path in rank_dir.glob("shard-*"):
        if path.name.split(".")[0] not in listed:
            path.unlink()  # written after the last checkpoint
    return state


def resolve_run_dir(
    config: SelectiveAblationConfig, resume: Path | None
) -> tuple[Path, SelectiveAblationConfig, tuple[torch.Tensor, int] | None]:
    """A fresh run directory, or the one to resume (whose saved config is the one that runs).

    Also returns the co-occurrence run's firing counts and tokens, read (and checked against the
    ablator) before a fresh run directory is made.
    """
    if resume is None:
        firing = _firing(config)
        run_dir = make_run_dir(config.output_dir, SCRIPT)
        write_config(run_dir, config, command_line())
        return run_dir, config, firing
    config = saved_config(resume)
    return resume, config, _firing(config)


def saved_config(resume: Path) -> SelectiveAblationConfig:
    """The config a run directory was started with (a resumed run runs with it)."""
    saved = resume / "config.json"
    if not saved.is_file():
        raise UserInputError(
            "--resume", f"'{resume}' has no config.json; give a selective-ablation run directory"
        )
    return config_from_json(json.loads(saved.read_text(encoding="utf-8"))["config"])


def _firing(config: SelectiveAblationConfig) -> tuple[torch.Tensor, int] | None:
    if config.cooccurrence_dir is None:
        return None
    return read_firing_counts(
        config.cooccurrence_dir, config.model, config.ablator_sae_release, config.ablator_sae_id
    )


def config_from_json(raw: dict[str, Any]) -> SelectiveAblationConfig:
    """Rebuild a config written by ``write_config``."""
    corpus_raw = raw["corpus"]
    corpus = CorpusSpec(
        dataset_id=corpus_raw["dataset_id"],
        dataset_paths=tuple(Path(p) for p in corpus_raw["dataset_paths"]),
        split=corpus_raw["split"],
        text_field=corpus_raw["text_field"],
    )
    values = {**raw, "corpus": corpus, "selected_features": tuple(raw["selected_features"])}
    for key in ("cooccurrence_dir", "output_dir"):
        values[key] = None if raw[key] is None else Path(raw[key])
    return SelectiveAblationConfig(**values)


def _shared_run_dir(
    config: SelectiveAblationConfig, resume: Path | None, ranks: RankInfo
) -> tuple[Path, SelectiveAblationConfig, tuple[torch.Tensor, int] | None]:
    """Rank 0 makes (or opens) the run directory; the other ranks open the same one."""
    if ranks.world == 1:
        return resolve_run_dir(config, resume)
    box: list[Any] = [None]
    try:
        if ranks.is_main:
            resolved = resolve_run_dir(config, resume)
            box = [str(resolved[0])]
            return resolved
    finally:
        dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        raise RuntimeError("rank 0 could not start the run")
    return resolve_run_dir(config, Path(box[0]))


def run(config: SelectiveAblationConfig, resume: Path | None = None) -> Path:
    """Run (or resume) selective ablation and return the run directory.

    With ``cooccurrence_dir``, latents firing on more than ``exclude_latent_threshold`` of the
    co-occurrence run's tokens are never ablated. Under torchrun every rank ablates its share of
    the prompts into ``partial/rank-R`` and rank 0 sums them into ``effects/``.
    """
    ranks = init_ranks(resolve_device(config.device))
    try:
        return _run(config, resume, ranks)
    finally:
        shutdown(ranks)


def _run(config: SelectiveAblationConfig, resume: Path | None, ranks: RankInfo) -> Path:
    # Everything that can refuse the flags (model, SAEs, their pairing) is loaded before a fresh
    # run directory is made, so a refused run leaves nothing behind.
    if resume is not None:
        config = saved_config(resume)
    device = rank_device(resolve_device(config.device), ranks)
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
            raise UserInputError(
                "--selected-features",
                f"{feature} is out of range; the ablator SAE has {width} latents",
            )
    if config.abridge_ablations_to > width:
        raise UserInputError(
            "--abridge-ablations-to",
            f"{config.abridge_ablations_to} exceeds the ablator's {width} latents",
        )
    run_dir, config, firing = _shared_run_dir(config, resume, ranks)
    firing_counts, n_tokens = firing if firing is not None else (None, 0)
    if firing_counts is not None and firing_counts.shape[0] != width:
        raise UserInputError(
            "--cooccurrence-dir",
            f"its counts are for {firing_counts.shape[0]} latents, the ablator SAE has {width}; "
            "give a co-occurrence run of the same ablator SAE",
        )
    ablatable_E = ablatable_latents(firing_counts, n_tokens, config.exclude_latent_threshold, width)
    selected_D = torch.tensor(config.selected_features, dtype=torch.long, device=device)
    info = StoreInfo(
        _sae_description(config.ablator_sae_release, config.ablator_sae_id, ablator),
        _sae_description(config.reader_sae_release, config.reader_sae_id, reader),
        config.model,
    )

    rank_dir = run_dir / "partial" / f"rank-{ranks.rank}"
    rank_dir.mkdir(parents=True, exist_ok=True)
    state = _resume_state(rank_dir) or {
        "shards": [],
        "prompts_done": 0,
        "prompts_ablated": 0,
        "ablations": 0,
    }
    shards: list[dict[str, Any]] = state["shards"]
    done, ablated, n_ablations = state["prompts_done"], state["prompts_ablated"], state["ablations"]
    my_prompts = len(range(ranks.rank, config.n_prompts, ranks.world))
    accumulator = RowAccumulator(width, int(reader.cfg.d_sae), device)
    assert model.tokenizer is not None

    def checkpoint() -> None:
        if accumulator.n_rows:
            shards.append(write_shard(rank_dir, f"shard-{len(shards):05d}", *accumulator.take()))
        extra = {"prompts_done": done, "prompts_ablated": ablated, "ablations": n_ablations}
        write_manifest(rank_dir, info, shards, extra)

    texts = iter_texts(config.corpus, ranks.rank, ranks.world, skip=done)
    remaining = max(my_prompts - done, 0)
    batches = iter_token_batches(
        (text for _, text in zip(range(remaining), texts, strict=False)),
        model.tokenizer,
        config.batch_size,
        config.max_tokens_in_prompt,
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
            )
            for chunk in chunks:
                accumulator.add(chunk.latents_K, chunk.effects_KD)
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
        atomic_write_json(
            run_dir / "summary.json",
            {
                "ranks": ranks.world,
                "plan": {"ablator": plan.ablator.name, "reader": plan.reader.name},
            },
        )
    barrier(ranks)
    return run_dir

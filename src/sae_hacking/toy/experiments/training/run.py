"""A whole toy run: data, SAE, training, and every result file, in one run directory.

``run(ToyTrainConfig(...))`` is the whole tool. With ``resume=RUN_DIR`` it continues that run from
its last checkpoint (weights, Adam, schedule and batch generator), so the result equals an
uninterrupted run's bit for bit; a kill loses at most one ``checkpoint_every`` interval.
"""

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from sae_hacking.config import ConfigError, flag_of, given_options, read_saved_options, resumed
from sae_hacking.devices import command_line, free_memory_bytes, resolve_device
from sae_hacking.errors import RunStopped
from sae_hacking.io.atomic import atomic_write_json, remove_stale_temporaries
from sae_hacking.io.bundle import load_bundle, save_bundle
from sae_hacking.io.rundir import (
    default_output_dir,
    make_run_dir,
    removed_unless_used,
    write_config,
)
from sae_hacking.memory import check_fits
from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.experiments.training.config import ToyTrainConfig
from sae_hacking.toy.experiments.training.plots import plot_recovery_heatmap, plot_training_curves
from sae_hacking.toy.metrics.recovery import Recovery
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.checkpoint import TRAINER, architecture_name, load_trainer_state
from sae_hacking.toy.training.loop import TrainerState, TrainResult, TrainSettings, train
from sae_hacking.toy.training.run_log import (
    CHECKPOINT_DIR,
    RunLog,
    latest_checkpoint,
    records_up_to,
)

RUN_PREFIX = "train_topk_sae_toy"
COMMAND = "train-topk-sae-toy"
# Independent streams from one --seed: dictionary, SAE init, held-out batch, training batches.
SEED_OFFSETS = {"data": 0, "init": 1, "eval": 2, "train": 3}
# Steps between progress-bar updates (one host sync each, no evaluation).
PROGRESS_EVERY = 100
# Options every toy training run's config.json holds (to refuse resuming another tool's run).
SIGNATURE_OPTIONS = ("dataset_num_features", "perturbation_size", "sae_hidden_dim")


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    summary: dict[str, Any]


def seeded(config: ToyTrainConfig, stream: str, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(config.seed + SEED_OFFSETS[stream])


def noisy(rows_DM: torch.Tensor, noise: float, generator: torch.Generator) -> torch.Tensor:
    """Rows plus Gaussian noise of ``noise`` times each row's norm (in expectation)."""
    raw_DM = torch.randn(rows_DM.shape, generator=generator, device=generator.device)
    scale_D1 = rows_DM.norm(dim=-1, keepdim=True) / rows_DM.shape[-1] ** 0.5
    return rows_DM + noise * scale_D1 * raw_DM


def build_sae(
    config: ToyTrainConfig, source: PerturbedChildren, generator: torch.Generator
) -> TopKSAE | HierarchicalTopKSAE:
    """The SAE the config asks for, at its initialisation or at the truth plus noise."""
    if config.hierarchical:
        shape = HierarchicalShape(
            model_dim=config.model_dim,
            num_parents=config.latents,
            k=config.topk,
            aux_k=config.aux_k,
            child_warmup_samples=config.child_warmup,
        )
        sae = HierarchicalTopKSAE(shape, generator)
        if config.init_to_truth:
            sae.load_hierarchy(
                noisy(source.parents_AM, config.init_noise, generator),
                noisy(source.perturbations_A2M, config.init_noise, generator),
            )
        return sae
    sae = TopKSAE(
        TopKShape(
            model_dim=config.model_dim, width=config.latents, k=config.topk, aux_k=config.aux_k
        ),
        generator,
    )
    if config.init_to_truth:
        sae.load_directions(noisy(source.features_NM, config.init_noise, generator))
    return sae


def feature_table(found: Recovery, source: PerturbedChildren) -> list[dict[str, Any]]:
    """Per true feature: its parent, its best latent and its Hungarian partner, with cosines."""
    parent_of_N = source.siblings.parent_of_N.tolist()
    return [
        {
            "feature": n,
            "parent": parent_of_N[n],
            "best_direction": int(found.best_latent_N[n]),
            "best_cosine": round(float(found.best_cosine_N[n]), 5),
            "matched_direction": int(found.matched_latent_N[n]),
            "matched_cosine": round(float(found.matched_cosine_N[n]), 5),
        }
        for n in range(len(parent_of_N))
    ]


def write_results(
    run_dir: Path,
    config: ToyTrainConfig,
    sae: nn.Module,
    source: PerturbedChildren,
    result: TrainResult,
    log: RunLog,
    device: torch.device,
    wall_seconds: float,
) -> dict[str, Any]:
    """summary.json, the final checkpoint and the plots."""
    final = result.final
    log.save_final(final, sae)  # pyright: ignore[reportArgumentType]
    found = final.evaluation.recovery
    directions = "parent + child directions" if config.hierarchical else "decoder rows"
    plot_recovery_heatmap(
        found.cos_ND,
        found.matched_latent_N,
        run_dir / "recovery_heatmap.png",
        f"{architecture_name(sae)}: |cos| of true features with {directions}",
    )
    plot_training_curves(log.records, run_dir / "training_curves.png")
    summary = {
        "architecture": architecture_name(sae),
        "device": str(device),
        "final": final.record(),
        "steps": final.step,
        "samples": final.samples,
        "train_seconds": round(result.train_seconds, 3),
        "samples_per_second": round(result.samples_per_second),
        "wall_seconds": round(wall_seconds, 3),
        "checkpoint": f"{CHECKPOINT_DIR}/final.safetensors",
        "scored_directions": directions,
        "features": feature_table(found, source),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    return summary


@dataclass(frozen=True)
class Resume:
    """Where a resumed run starts: its last checkpoint's SAE tensors and trainer state."""

    sae_tensors: dict[str, torch.Tensor]
    state: TrainerState


def resumed_config(config: ToyTrainConfig, run_dir: Path) -> ToyTrainConfig:
    """The saved run's config; a device chosen now (``--device`` or ``--cuda``) replaces its own."""
    saved = read_saved_options(run_dir)
    if not all(name in saved for name in SIGNATURE_OPTIONS):
        raise ConfigError("resume", f"'{run_dir}' is not a {RUN_PREFIX} run; give one of those")
    if {"device", "cuda"} & given_options(config):
        saved = {k: v for k, v in saved.items() if k not in ("device", "cuda")}
    return resumed(config, saved)


def prepare_resume(run_dir: Path, device: torch.device) -> Resume | None:
    """Clear what a kill left half-written and read the last checkpoint (None: start over)."""
    if (run_dir / "summary.json").exists():
        raise ConfigError("resume", f"'{run_dir}' is complete (it has summary.json)")
    # Temporary files of writes a kill interrupted; the files they were replacing are intact.
    remove_stale_temporaries(run_dir)
    manifest = latest_checkpoint(run_dir)
    if manifest is None:
        return None
    name = manifest.name.removesuffix(".json")
    try:
        tensors, _ = load_bundle(manifest.parent, name, device=device)
        state = load_trainer_state(manifest, device)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise ConfigError(
            "resume",
            f"checkpoint '{manifest}' is damaged ({error}); delete it and its .safetensors "
            "to resume from the one before",
        ) from error
    sae_tensors = {k: v for k, v in tensors.items() if not k.startswith(TRAINER)}
    return Resume(sae_tensors, state)


def stop_message(run_dir: Path, resume: Path | None) -> str:
    """The one line Ctrl-C prints: where the run's state is and the command that continues it."""
    if not run_dir.exists():
        return "stopped before anything was saved (no run directory is left)"
    checkpoint = latest_checkpoint(run_dir)
    where = (
        f"its state is in {run_dir} up to the checkpoint {checkpoint.stem}"
        if checkpoint is not None
        else f"{run_dir} holds no checkpoint yet, so a resume starts over"
    )
    program = command_line()[0] if command_line() else COMMAND
    launcher = f"uv run {program}" if program.endswith(".py") else COMMAND
    command = f"{launcher} --resume {shlex.quote(str(resume or run_dir))}"
    return f"stopped: {where}; continue with: {command}"


def run(config: ToyTrainConfig) -> RunOutcome:
    """Make the run directory (config.json first), train, and write every result beside it.

    Every check that can refuse the config runs before the run directory is made.
    """
    started = time.perf_counter()
    if config.resume is not None:
        config = resumed_config(config, config.resume)
    device = resolve_device(config.device_spec, config.device_field)
    if device.type == "cpu":
        torch.set_num_threads(config.threads)
    needed, costliest = config.memory_estimate()
    check_fits(needed, flag_of(costliest), "a run of these sizes", free_memory_bytes(device))
    if config.resume is not None:
        run_dir = config.resume
        resume = prepare_resume(run_dir, device)
    else:
        run_dir = make_run_dir(config.output_dir or default_output_dir(), RUN_PREFIX)
        write_config(run_dir, config, command_line())
        resume = None
    try:
        with removed_unless_used(run_dir):
            return train_in(run_dir, config, device, resume, started)
    except KeyboardInterrupt:
        raise RunStopped(stop_message(run_dir, config.resume)) from None


def train_in(
    run_dir: Path,
    config: ToyTrainConfig,
    device: torch.device,
    resume: Resume | None,
    started: float,
) -> RunOutcome:
    """Data, SAE and training in a made run directory; from ``resume`` when given."""
    source = PerturbedChildren.random(
        config.dataset_num_features,
        config.model_dim,
        config.perturbation_size,
        config.dataset_k,
        seeded(config, "data", device),
    )
    save_bundle(
        run_dir,
        "dataset",
        {"parents_AM": source.parents_AM, "perturbations_A2M": source.perturbations_A2M},
        {"description": "features are parents_AM[a] + perturbations_A2M[a, c], at row 2a + c"},
    )
    sae = build_sae(config, source, seeded(config, "init", device))
    eval_x_BM, _ = source.sample(config.eval_batch_size, seeded(config, "eval", device))
    settings = TrainSettings(
        steps=config.total_steps,
        batch_size=config.batch_size,
        lr=config.lr,
        schedule=config.schedule(),
        grad_clip=config.grad_clip,
        log_every=config.evaluate_every,
        checkpoint_every=config.save_every,
        progress_every=PROGRESS_EVERY,
    )
    state = None
    records: list[dict[str, Any]] = []
    if resume is not None:
        sae.load_state_dict(resume.sae_tensors)
        state = resume.state
    if config.resume is not None:
        # Evaluations after the checkpoint are made again, exactly as before.
        records = records_up_to(run_dir, -1 if state is None else state.step)
    log = RunLog(
        run_dir,
        config.total_steps,
        config.batch_size,
        {"seed": config.seed},
        records=records,
        resumed_at=None if config.resume is None else (0 if state is None else state.step),
    )
    with log:
        generator = seeded(config, "train", device)
        result = train(sae, source, settings, generator, eval_x_BM, log, resume=state)
    summary = write_results(
        run_dir, config, sae, source, result, log, device, time.perf_counter() - started
    )
    return RunOutcome(run_dir, summary)

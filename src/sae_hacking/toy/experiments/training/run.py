"""A whole toy run: data, SAE, training, and every result file, in one run directory."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_hacking.devices import resolve_device
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import save_bundle
from sae_hacking.io.rundir import make_run_dir, write_config
from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.experiments.training.config import ToyTrainConfig
from sae_hacking.toy.experiments.training.plots import plot_recovery_heatmap, plot_training_curves
from sae_hacking.toy.metrics.recovery import Recovery
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.checkpoint import architecture_name
from sae_hacking.toy.training.loop import TrainResult, TrainSettings, train
from sae_hacking.toy.training.run_log import CHECKPOINT_DIR, RunLog

RUN_PREFIX = "train_topk_sae_toy"
# Independent streams from one --seed: dictionary, SAE init, held-out batch, training batches.
SEED_OFFSETS = {"data": 0, "init": 1, "eval": 2, "train": 3}


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
    log.save(final, sae, "final")  # pyright: ignore[reportArgumentType]
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


def run(config: ToyTrainConfig, argv: list[str]) -> RunOutcome:
    """Make the run directory (config.json first), train, and write every result beside it."""
    started = time.perf_counter()
    device = resolve_device(config.device, config.device_flag)
    if device.type == "cpu":
        torch.set_num_threads(config.threads)
    run_dir = make_run_dir(config.output_dir, RUN_PREFIX)
    write_config(run_dir, config, argv)
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
    )
    with RunLog(run_dir, config.total_steps, config.save_every, {"seed": config.seed}) as log:
        result = train(sae, source, settings, seeded(config, "train", device), eval_x_BM, log)
    summary = write_results(
        run_dir, config, sae, source, result, log, device, time.perf_counter() - started
    )
    return RunOutcome(run_dir, summary)

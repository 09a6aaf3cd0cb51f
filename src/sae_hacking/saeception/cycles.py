"""One unit of an SAE-ception run: a (seed, cycle, strategy) that trains, scores and saves.

A unit's directory holds ``classifier`` and ``sae`` bundles and, written last, ``metrics.json``; a
unit with ``metrics.json`` is finished, which is all resuming needs. Every random draw comes from a
generator seeded by (seed, cycle, stream) alone, never by the strategy: the strategies of one
cycle share their batches and SAE initialisations, so their differences come from the targets.
"""

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import load_bundle, save_bundle
from sae_hacking.saeception.classifiers import Classifier, ClassifierFactory
from sae_hacking.saeception.config import STRATEGIES, SaeCeptionConfig
from sae_hacking.saeception.data import LabelledData
from sae_hacking.saeception.metrics import (
    class_selectivity,
    clustering_scores,
    nan_mean,
    probe_accuracy,
    uncertainty_coefficient,
)
from sae_hacking.saeception.sharpening import sharpened_targets
from sae_hacking.saeception.training import (
    FitSettings,
    SaeSettings,
    fit_classifier,
    hidden_and_logits,
    train_sae,
)
from sae_hacking.toy.metrics.activity import (
    dead_latent_count,
    fraction_variance_unexplained,
    mean_l0,
)
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape

BASELINE = "baseline"
METRICS = "metrics.json"
STREAMS = ("init", "batches", "sae_init", "sae_batches", "targets")


def generator(seed: int, cycle: int, stream: str, device: torch.device) -> torch.Generator:
    """An independent stream per (seed, cycle, name); the strategy never enters it."""
    index = STREAMS.index(stream)
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + cycle) * 64 + index)


@dataclass(frozen=True)
class Unit:
    seed: int
    cycle: int
    strategy: str  # BASELINE at cycle 0

    def directory(self, run_dir: Path) -> Path:
        here = run_dir / f"seed-{self.seed}" / f"cycle-{self.cycle}"
        return here if self.cycle == 0 else here / self.strategy

    def previous(self) -> "Unit":
        if self.cycle == 1:
            return Unit(self.seed, 0, BASELINE)
        return Unit(self.seed, self.cycle - 1, self.strategy)

    def finished(self, run_dir: Path) -> bool:
        return (self.directory(run_dir) / METRICS).is_file()


def plan(config: SaeCeptionConfig) -> list[Unit]:
    """Every unit of the run in the order it runs: seed by seed, cycle by cycle."""
    strategies = [s for s in STRATEGIES if s in config.strategies]
    units = []
    for seed in config.seeds:
        units.append(Unit(seed, 0, BASELINE))
        units += [Unit(seed, c, s) for c in range(1, config.cycles + 1) for s in strategies]
    return units


def save_sae(directory: Path, sae: TopKSAE, scale: float, record: dict[str, float]) -> None:
    save_bundle(
        directory,
        "sae",
        dict(sae.state_dict()),
        {"shape": asdict(sae.shape), "activation_scale": scale, "final_training": record},
    )


def load_sae(directory: Path, device: torch.device) -> tuple[TopKSAE, float]:
    """The SAE of a finished unit and the scale its inputs were divided by."""
    tensors, manifest = load_bundle(directory, "sae", device)
    sae = TopKSAE(TopKShape(**manifest["shape"]), torch.Generator(device=device))
    sae.load_state_dict(tensors)
    sae.eval()
    return sae, float(manifest["activation_scale"])


def accuracy(logits_BL: Tensor, labels_B: Tensor) -> float:
    return (logits_BL.argmax(dim=1).cpu() == labels_B).float().mean().item()


def mean_cosine(h_BM: Tensor, t_BM: Tensor) -> float:
    return torch.nn.functional.cosine_similarity(h_BM, t_BM, dim=-1).mean().item()


def code_metrics(
    codes_train_BE: Float[Tensor, "B E"],
    codes_test_DE: Float[Tensor, "D E"],
    hidden_train_BM: Float[Tensor, "B M"],
    hidden_test_DM: Float[Tensor, "D M"],
    labels_train_B: Int[Tensor, " B"],
    labels_test_D: Int[Tensor, " D"],
    classes: int,
    seed: int,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Scalar metrics of held-out codes (probes fit on the training codes), and per-latent values."""
    test_labels = labels_test_D.to(codes_test_DE.device)
    csi_E = class_selectivity(codes_test_DE, test_labels, classes)
    u_E = uncertainty_coefficient(codes_test_DE, test_labels, classes)
    as_numpy = [t.detach().cpu().double().numpy() for t in (codes_train_BE, codes_test_DE)]
    hidden = [t.detach().cpu().double().numpy() for t in (hidden_train_BM, hidden_test_DM)]
    y_train, y_test = labels_train_B.numpy(), labels_test_D.numpy()
    codes_clusters = clustering_scores(as_numpy[1], y_test, classes, seed)
    hidden_clusters = clustering_scores(hidden[1], y_test, classes, seed)
    scalars = {
        "probe_accuracy": probe_accuracy(as_numpy[0], y_train, as_numpy[1], y_test, seed),
        "csi": nan_mean(csi_E),
        "u": nan_mean(u_E),
        "l0": mean_l0(codes_test_DE),
        "dead_latents": float(dead_latent_count(codes_test_DE)),
        "ari": codes_clusters["ari"],
        "silhouette": codes_clusters["silhouette"],
        "hidden_probe_accuracy": probe_accuracy(hidden[0], y_train, hidden[1], y_test, seed),
        "hidden_ari": hidden_clusters["ari"],
        "hidden_silhouette": hidden_clusters["silhouette"],
    }
    per_latent = {"csi": csi_E.tolist(), "u": u_E.tolist()}
    return scalars, per_latent


@dataclass
class UnitContext:
    """What every unit of one seed shares."""

    config: SaeCeptionConfig
    data: LabelledData
    factory: ClassifierFactory
    device: torch.device
    run_dir: Path
    manifest: dict[str, Any]


def run_unit(ctx: UnitContext, unit: Unit, on_epoch: Any = None) -> dict[str, Any]:
    """Train, score and save one unit; returns its metrics (also written to its directory)."""
    config, data, device = ctx.config, ctx.data, ctx.device
    cpu = torch.device("cpu")
    seed, cycle = unit.seed, unit.cycle
    classifier = ctx.factory.build(generator(seed, 0, "init", device))
    assert isinstance(classifier, Classifier) and isinstance(classifier, nn.Module)
    batch_size = config.fit_batch_size
    extra: dict[str, Any] = {}
    if cycle == 0:
        settings = FitSettings(config.fit_epochs, batch_size, config.fit_lr, 0.0)
        targets_BM = None
    else:
        previous = unit.previous().directory(ctx.run_dir)
        state, _ = load_bundle(previous, "classifier", device)
        classifier.load_trained_state(state)
        sae, scale = load_sae(previous, device)
        hidden_BM, _ = hidden_and_logits(classifier, data.train, batch_size)
        with torch.no_grad():
            codes_BE = sae.encode_dense(hidden_BM / scale)
        width = sae.width
        targets_BM = sharpened_targets(
            unit.strategy,
            codes_BE,
            data.train.labels_B.to(device),
            sae.W_dec_EM.detach(),
            sae.b_dec_M.detach(),
            data.classes,
            config.kept_latents(width),
            generator(seed, cycle, "targets", device),
        )
        settings = FitSettings(config.later_epochs, batch_size, config.fit_lr, config.aux_weight)
        if targets_BM is not None:
            extra["kept_latents"] = config.kept_latents(width)
            extra["target_cosine_before"] = mean_cosine(hidden_BM, targets_BM)
            extra["zero_targets"] = int((targets_BM.norm(dim=1) == 0).sum().item())
    losses = fit_classifier(
        classifier,
        data.train,
        targets_BM,
        settings,
        generator(seed, cycle, "batches", cpu),
        on_epoch,
    )
    hidden_train_BM, logits_train_BL = hidden_and_logits(classifier, data.train, batch_size)
    hidden_test_DM, logits_test_DL = hidden_and_logits(classifier, data.test, batch_size)
    if targets_BM is not None:
        extra["target_cosine_after"] = mean_cosine(hidden_train_BM, targets_BM)
    scale = hidden_train_BM.norm(dim=1).mean().clamp_min(1e-12).item()
    width, k = config.sae_shape(hidden_train_BM.shape[1])
    sae_settings = SaeSettings(
        width, k, config.sae_steps, config.sae_batch_size, config.resolved_sae_lr
    )
    sae, trained = train_sae(
        hidden_train_BM / scale,
        data.train.labels_B,
        data.classes,
        hidden_test_DM / scale,
        sae_settings,
        generator(seed, cycle, "sae_init", device),
        generator(seed, cycle, "sae_batches", device),
    )
    with torch.no_grad():
        codes_train_BE = sae.encode_dense(hidden_train_BM / scale)
        codes_test_DE = sae.encode_dense(hidden_test_DM / scale)
        recon_test_DM = sae.reconstruct(hidden_test_DM / scale)
    scalars, per_latent = code_metrics(
        codes_train_BE,
        codes_test_DE,
        hidden_train_BM,
        hidden_test_DM,
        data.train.labels_B,
        data.test.labels_B,
        data.classes,
        seed,
    )
    metrics: dict[str, Any] = {
        "seed": seed,
        "cycle": cycle,
        "strategy": unit.strategy,
        "task_accuracy": accuracy(logits_test_DL, data.test.labels_B),
        "train_accuracy": accuracy(logits_train_BL, data.train.labels_B),
        **scalars,
        "fvu": fraction_variance_unexplained(hidden_test_DM / scale, recon_test_DM),
        "train_ce": losses["ce"],
        "train_aux": losses["aux"],
        **extra,
        "sae": {
            "width": width,
            "k": k,
            "mmcs_class_means": trained.final.evaluation.scalars["mmcs"],
        },
        "per_latent": per_latent,
    }
    directory = unit.directory(ctx.run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    save_bundle(directory, "classifier", classifier.trained_state(), ctx.manifest)
    save_sae(directory, sae, scale, trained.final.record())
    atomic_write_json(directory / METRICS, _finite(metrics))
    return metrics


def _finite(value: Any) -> Any:
    """NaN as JSON null (JSON has no NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, np.floating):
        return _finite(float(value))
    return value

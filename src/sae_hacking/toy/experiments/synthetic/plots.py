"""The pictures of a SynthSAEBench run: training curves, and absorption against the hierarchy."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from jaxtyping import Float
from torch import Tensor

from sae_hacking.io.atomic import atomic_write


def save_figure(figure: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(figure)


def plot_training_curves(records: list[dict[str, float]], path: Path) -> None:
    """Loss, FVU, L0 and dead latents against training samples."""
    samples = [r["samples"] for r in records]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for axis, key, title in zip(
        axes,
        ("train_loss", "fvu", "l0", "dead_fraction"),
        ("training loss", "fraction of variance unexplained", "L0", "dead latents (fraction)"),
        strict=True,
    ):
        axis.plot(samples, [r[key] for r in records])
        axis.set_title(title)
        axis.set_xlabel("samples")
    axes[0].set_yscale("log")
    figure.tight_layout()
    save_figure(figure, path)


def plot_absorption(detail: dict[str, Any], f1_E: Float[Tensor, " E"], path: Path) -> None:
    """Per parent: firing of its latent alone vs with a child; per latent: F1 (SynthSAEBench)."""
    parents = [p for p in detail["parents"] if p["samples_with_child"] > 0]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].scatter(
        [p["fires_alone"] for p in parents],
        [p["fires_with_child"] for p in parents],
        s=8,
        c=[p["absorption_fraction"] for p in parents],
        cmap="viridis",
        vmin=0,
        vmax=1,
    )
    axes[0].plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    axes[0].set_xlabel("P(parent latent fires | parent alone)")
    axes[0].set_ylabel("P(parent latent fires | parent with a child)")
    axes[0].set_title("absorption gap (colour: absorption fraction)")
    axes[1].hist(f1_E.numpy(), bins=40, range=(0, 1))
    axes[1].set_xlabel("F1 of a latent as a detector of its best feature")
    axes[1].set_ylabel("latents")
    figure.tight_layout()
    save_figure(figure, path)

"""The pictures a person looks at after a toy run: feature recovery heat-map, training curves."""

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.io.atomic import atomic_write


def best_match_order(matched_latent_N: Int[Tensor, " N"], num_latents: int) -> list[int]:
    """Latents in the order of the features they are matched to, unmatched latents last."""
    order = [int(d) for d in matched_latent_N.tolist() if d >= 0]
    seen = set(order)
    return order + [d for d in range(num_latents) if d not in seen]


def save_figure(figure: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(figure)


def plot_recovery_heatmap(
    cos_ND: Float[Tensor, "N D"],
    matched_latent_N: Int[Tensor, " N"],
    path: Path,
    title: str,
) -> None:
    """|cosine| of every true feature (rows) with every direction (columns, best match first)."""
    order = best_match_order(matched_latent_N, cos_ND.shape[1])
    shown_ND = cos_ND.abs()[:, torch.tensor(order, dtype=torch.long)].numpy()
    num_features, num_latents = shown_ND.shape
    figure, axes = plt.subplots(
        figsize=(min(3 + 0.12 * num_latents, 18), min(2 + 0.12 * num_features, 14))
    )
    image = axes.imshow(shown_ND, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, label="|cosine|")
    axes.set_xlabel("SAE direction (ordered by the feature it is matched to; unmatched last)")
    axes.set_ylabel("true feature (siblings adjacent)")
    axes.set_title(title)
    save_figure(figure, path)


CURVES = (
    ("loss", ("train_loss", "mse")),
    ("fraction of variance unexplained", ("fvu",)),
    ("L0", ("l0",)),
    ("recovery", ("mmcs", "mcc")),
    ("dead latents (fraction)", ("dead_fraction",)),
    ("siblings", ("sibling_split_rate", "child_specificity", "pair_detection_rate")),
)


def plot_training_curves(records: list[dict[str, float]], path: Path) -> None:
    """One panel per family of metrics against training samples."""
    figure, axes_grid = plt.subplots(2, 3, figsize=(14, 7))
    samples = [record["samples"] for record in records]
    for axes, (title, keys) in zip(axes_grid.flat, CURVES, strict=True):
        for key in keys:
            if key in records[0]:
                axes.plot(samples, [record[key] for record in records], label=key)
        if title == "loss":
            axes.set_yscale("log")
        axes.set_title(title)
        axes.set_xlabel("training samples")
        axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)

"""Encoder and decoder cosine heat-maps against the true features, side by side, one row per SAE."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from torch import nn

from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.io.atomic import atomic_write
from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.metrics.absorption import best_match_latents
from sae_hacking.toy.saes.matryoshka import MatryoshkaSAE

Panel = tuple[str, list[tuple[str, nn.Module]], TreeSource | SyntheticSource]
# Beyond this many features a heat-map names no tick (they would overlap).
MAX_TICKS = 64


def feature_names(source: TreeSource | SyntheticSource) -> list[str]:
    return list(source.tree.names if isinstance(source, TreeSource) else source.names)


def latent_order(sae: MatryoshkaSAE, source: TreeSource | SyntheticSource) -> torch.Tensor:
    """Latents sorted by the feature they best match; unmatched latents last."""
    latent_N = best_match_latents(sae.decoder_directions(), source.features_NM)
    matched = [e for e in latent_N.tolist() if e >= 0]
    rest = [e for e in range(sae.width) if e not in matched]
    return torch.tensor(matched + rest, dtype=torch.long)


@torch.no_grad()
def save_heatmaps(path: Path, panels: list[Panel]) -> None:
    """One PNG: for every SAE, cos(encoder, features) and cos(decoder, features)."""
    rows = [(h, name, sae, source) for h, saes, source in panels for name, sae in saes]
    fig, axes = plt.subplots(
        len(rows), 2, figsize=(7.5, 1.9 * len(rows) + 0.6), squeeze=False, constrained_layout=True
    )
    image = None
    for r, (hierarchy, name, sae, source) in enumerate(rows):
        assert isinstance(sae, MatryoshkaSAE)
        order = latent_order(sae, source)
        names = feature_names(source)
        for c, (label, weights) in enumerate(
            (("encoder", sae.encoder_directions()), ("decoder", sae.decoder_directions()))
        ):
            cos_EN = cosine_matrix(weights[order.to(weights.device)], source.features_NM).cpu()
            ax = axes[r][c]
            image = ax.imshow(cos_EN.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
            if cos_EN.numel() <= 64:
                for (i, j), value in _cells(cos_EN):
                    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
            ax.set_title(f"{hierarchy} · {name} · {label}", fontsize=8)
            if len(names) <= MAX_TICKS:
                ax.set_xticks(range(len(names)), names, fontsize=7)
                ax.set_yticks(range(len(order)), [f"L{e}" for e in order.tolist()], fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.4, label="cosine with true feature")
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _cells(matrix: torch.Tensor) -> list[tuple[tuple[int, int], float]]:
    return [
        ((i, j), matrix[i, j].item())
        for i in range(matrix.shape[0])
        for j in range(matrix.shape[1])
    ]

"""Checkpoints of toy SAEs: a safetensors bundle whose manifest says how to rebuild the SAE.

``load_checkpoint(path)`` is the documented way back: give it the ``.safetensors`` file (or its
``.json`` manifest, or the path without a suffix) and it returns the rebuilt SAE and its manifest.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sae_hacking.io.bundle import load_bundle, save_bundle
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape

ARCHITECTURES: dict[str, tuple[type[nn.Module], type]] = {
    "topk": (TopKSAE, TopKShape),
    "hierarchical_topk": (HierarchicalTopKSAE, HierarchicalShape),
}


def architecture_name(sae: nn.Module) -> str:
    """The registry name of an SAE's class."""
    for name, (cls, _) in ARCHITECTURES.items():
        if type(sae) is cls:
            return name
    raise TypeError(f"no checkpoint format for {type(sae).__name__}")


def build_sae(architecture: str, hyperparameters: dict[str, Any], device: str = "cpu") -> nn.Module:
    """A freshly initialised SAE of a registered architecture."""
    cls, shape_cls = ARCHITECTURES[architecture]
    generator = torch.Generator(device=device)
    return cls(shape_cls(**hyperparameters), generator)


def save_checkpoint(
    directory: Path, name: str, sae: nn.Module, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``name.safetensors`` + ``name.json`` atomically; returns the tensor file's path."""
    hyperparameters = sae.hyperparameters()  # pyright: ignore[reportCallIssue]
    manifest = {
        "architecture": architecture_name(sae),
        "hyperparameters": hyperparameters,
        **(extra or {}),
    }
    save_bundle(directory, name, dict(sae.state_dict()), manifest)
    return directory / f"{name}.safetensors"


@dataclass(frozen=True)
class Checkpoint:
    """A rebuilt SAE (in eval mode) and the manifest it was saved with."""

    sae: nn.Module
    manifest: dict[str, Any]


def load_checkpoint(path: Path | str, device: str = "cpu") -> Checkpoint:
    """Rebuild the SAE saved at ``path`` (``.safetensors``, ``.json`` or no suffix) on ``device``."""
    path = Path(path)
    name = path.name.removesuffix(".safetensors").removesuffix(".json")
    tensors, manifest = load_bundle(path.parent, name, device=device)
    sae = build_sae(manifest["architecture"], manifest["hyperparameters"], device)
    sae.load_state_dict(tensors)
    sae.eval()
    return Checkpoint(sae, manifest)

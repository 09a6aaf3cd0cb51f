"""Checkpoints of toy SAEs: a safetensors bundle whose manifest says how to rebuild the SAE.

``load_checkpoint(path)`` is the documented way back: give it the ``.safetensors`` file (or its
``.json`` manifest, or the path without a suffix) and it returns the rebuilt SAE and its manifest.
A checkpoint saved during training also holds the trainer's state (tensors under ``trainer.``,
numbers under the manifest's ``trainer``), read back by ``load_trainer_state`` for an exact resume.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sae_hacking.io.bundle import load_bundle, save_bundle
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainerState

TRAINER = "trainer."

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


def trainer_tensors(state: TrainerState) -> dict[str, Tensor]:
    tensors = {
        f"{TRAINER}optimizer.{index}.{key}": value
        for index, moments in state.optimizer_state.items()
        for key, value in moments.items()
    }
    tensors[f"{TRAINER}generator"] = state.generator_state
    tensors[f"{TRAINER}loss_sum"] = state.loss_sum
    return tensors


def save_checkpoint(
    directory: Path,
    name: str,
    sae: nn.Module,
    extra: dict[str, Any] | None = None,
    trainer: TrainerState | None = None,
) -> Path:
    """Write ``name.safetensors`` + ``name.json`` atomically; returns the tensor file's path."""
    hyperparameters = sae.hyperparameters()  # pyright: ignore[reportCallIssue]
    manifest = {
        "architecture": architecture_name(sae),
        "hyperparameters": hyperparameters,
        **(extra or {}),
    }
    tensors = dict(sae.state_dict())
    if trainer is not None:
        tensors |= trainer_tensors(trainer)
        manifest["trainer"] = {
            "step": trainer.step,
            "rate": trainer.rate,
            "last_log": trainer.last_log,
            "train_seconds": trainer.train_seconds,
        }
    save_bundle(directory, name, tensors, manifest)
    return directory / f"{name}.safetensors"


def bundle_of(path: Path | str) -> tuple[Path, str]:
    """The directory and bundle name of ``name.safetensors``, ``name.json`` or ``name``."""
    path = Path(path)
    return path.parent, path.name.removesuffix(".safetensors").removesuffix(".json")


def load_trainer_state(path: Path | str, device: torch.device | str = "cpu") -> TrainerState:
    """The trainer's state saved in a checkpoint (``ValueError`` if it holds none)."""
    directory, name = bundle_of(path)
    tensors, manifest = load_bundle(directory, name, device="cpu")
    if "trainer" not in manifest:
        raise ValueError(f"'{directory / name}' holds no trainer state")
    numbers = manifest["trainer"]
    optimizer_state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(f"{TRAINER}optimizer."):
            index, moment = key.removeprefix(f"{TRAINER}optimizer.").split(".", 1)
            optimizer_state.setdefault(int(index), {})[moment] = value
    return TrainerState(
        step=int(numbers["step"]),
        optimizer_state=optimizer_state,
        rate=numbers["rate"],
        # A generator's state is a CPU byte tensor whatever the generator's device.
        generator_state=tensors[f"{TRAINER}generator"],
        loss_sum=tensors[f"{TRAINER}loss_sum"].to(device),
        last_log=int(numbers["last_log"]),
        train_seconds=float(numbers["train_seconds"]),
    )


@dataclass(frozen=True)
class Checkpoint:
    """A rebuilt SAE (in eval mode) and the manifest it was saved with."""

    sae: nn.Module
    manifest: dict[str, Any]


def load_checkpoint(path: Path | str, device: str = "cpu") -> Checkpoint:
    """Rebuild the SAE saved at ``path`` (``.safetensors``, ``.json`` or no suffix) on ``device``."""
    directory, name = bundle_of(path)
    tensors, manifest = load_bundle(directory, name, device=device)
    sae = build_sae(manifest["architecture"], manifest["hyperparameters"], device)
    sae.load_state_dict({k: v for k, v in tensors.items() if not k.startswith(TRAINER)})
    sae.eval()
    return Checkpoint(sae, manifest)

"""Tensor bundles: one safetensors file plus a JSON manifest beside it, both written atomically.

A bundle ``name`` in ``directory`` is ``name.safetensors`` and ``name.json``. The manifest is
written after the tensors, so a manifest that exists always describes complete tensors.
"""

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from sae_hacking.io.atomic import atomic_write, atomic_write_json

MANIFEST_FORMAT = "sae_hacking.bundle/1"


def bundle_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """The tensor file and the manifest file of a bundle."""
    return directory / f"{name}.safetensors", directory / f"{name}.json"


def save_bundle(
    directory: Path, name: str, tensors: dict[str, Tensor], manifest: dict[str, Any]
) -> None:
    """Save tensors (moved to CPU, made contiguous) and their manifest atomically."""
    tensor_path, manifest_path = bundle_paths(directory, name)
    cpu = {key: value.detach().contiguous().cpu() for key, value in tensors.items()}
    atomic_write(tensor_path, lambda tmp: save_file(cpu, str(tmp)))
    shapes = {key: {"shape": list(v.shape), "dtype": str(v.dtype)} for key, v in cpu.items()}
    atomic_write_json(manifest_path, {"format": MANIFEST_FORMAT, "tensors": shapes, **manifest})


def load_manifest(directory: Path, name: str) -> dict[str, Any]:
    """Read a bundle's manifest."""
    _, manifest_path = bundle_paths(directory, name)
    return json.loads(manifest_path.read_text(encoding="utf-8"))


def load_bundle(
    directory: Path, name: str, device: torch.device | str = "cpu", keys: list[str] | None = None
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load a bundle's tensors (all, or only ``keys``) and its manifest.

    safetensors memory-maps the file, so loading a few keys of a large bundle reads only those.
    """
    tensor_path, _ = bundle_paths(directory, name)
    manifest = load_manifest(directory, name)
    tensors: dict[str, Tensor] = {}
    with safe_open(str(tensor_path), framework="pt", device=str(device)) as handle:
        for key in keys if keys is not None else handle.keys():
            tensors[key] = handle.get_tensor(key)
    return tensors, manifest

"""The gpu tier (``pytest -m gpu``): every script on CUDA against the same run on the CPU.

Skipped without CUDA. ``SAE_HACKING_GPU_TIER_ON_CPU=1`` runs the tier with the CPU standing in
for the GPU (CPU against CPU): a dry run of the tests' own code on machines without a GPU.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def cuda() -> torch.device:
    """The device under test."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get("SAE_HACKING_GPU_TIER_ON_CPU") == "1":
        return torch.device("cpu")
    pytest.skip("needs a CUDA device")


@contextmanager
def no_host_sync(device: torch.device) -> Iterator[None]:
    """Raise on any operation that makes the host wait for the GPU (CUDA only)."""
    if device.type != "cuda":
        yield
        return
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def only_dir(parent: Path) -> Path:
    """The single run directory a script made under ``parent``."""
    (run_dir,) = [path for path in parent.iterdir() if path.is_dir()]
    return run_dir


def sides(cuda: torch.device) -> list[tuple[str, torch.device]]:
    """The two runs compared: ("cpu", the CPU) and ("gpu", the device under test).

    Results and folders are named by side, so a dry run on the CPU keeps both apart.
    """
    return [("cpu", torch.device("cpu")), ("gpu", cuda)]

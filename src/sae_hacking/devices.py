"""Device resolution, done once per run: ``auto|cpu|cuda[:N]`` to a ``torch.device``."""

import sys

import torch

from sae_hacking.config import ConfigError, device_name


def resolve_device(spec: str, field: str = "device") -> torch.device:
    """Turn ``auto|cpu|cuda[:N]`` into a device, refusing CUDA where there is none."""
    problem = device_name(spec)
    if problem is not None:
        raise ConfigError(field, problem)
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            field,
            f"'{spec}' asked for, but no CUDA device is visible (torch {torch.__version__} "
            "needs an NVIDIA driver of the 580 series or newer); use cpu",
        )
    device = torch.device(spec)
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            field, f"'{spec}' but only {torch.cuda.device_count()} CUDA devices are visible"
        )
    return device


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device; None for the CPU (``memory.check_fits`` reads the system's)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free


def command_line() -> list[str]:
    """The command line this process was started with, for config.json."""
    return list(sys.argv)

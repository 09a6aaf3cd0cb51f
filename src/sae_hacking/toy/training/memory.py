"""Refusing sizes that cannot fit: an estimate against the device's memory, before allocating.

Without it a huge ``--sae-hidden-dim`` or ``--batch-size`` ends in an allocator traceback (or the
kernel's OOM killer) after the run directory is made.
"""

import os

import torch

from sae_hacking.config import ConfigError


def device_memory(device: torch.device) -> int:
    """Total bytes of the device: a GPU's memory, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def readable_bytes(count: float | int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.3g} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def refuse_beyond_memory(needed: int, field: str, device: torch.device) -> None:
    """Raise a ConfigError naming ``field`` when ``needed`` bytes exceed the device's memory."""
    limit = device_memory(device)
    if needed > limit:
        raise ConfigError(
            field,
            f"the run would need about {readable_bytes(needed)}, more than the "
            f"{readable_bytes(limit)} of the {device.type} memory; lower it",
        )

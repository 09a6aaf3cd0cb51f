"""Refuse sizes that cannot be allocated from an estimate, before allocating (no torch here).

A request for 1e13 latents or a batch of 1e14 would otherwise fail deep inside torch with a
traceback, or push the machine into swap. Tools estimate the bytes a size needs and call
``check_fits`` with the flag that chose it.
"""

import os
from pathlib import Path

from sae_hacking.errors import UserInputError


def available_memory_bytes() -> int:
    """Memory the system can give without swapping (``MemAvailable``), else physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 62  # no way to know: let the allocation itself decide


def human_bytes(n_bytes: float | int) -> str:
    """``1.5 GiB``-style sizes for messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def check_fits(n_bytes: float | int, flag: str, what: str, available: int | None = None) -> None:
    """Refuse ``what`` (e.g. "an SAE of 1e13 latents") when it needs more than the memory free now."""
    free = available_memory_bytes() if available is None else available
    if n_bytes > free:
        raise UserInputError(
            flag,
            f"{what} needs about {human_bytes(n_bytes)} but {human_bytes(free)} of memory is free; "
            "give a smaller size",
        )

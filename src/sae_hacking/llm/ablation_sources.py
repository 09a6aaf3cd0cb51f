"""What selective ablation and the pair search read from a co-occurrence run.

Adapter over the co-occurrence results' loader: firing counts (for --exclude-latent-threshold)
and a pair lookup (for --cooccurrence-threshold), checked against the ablator SAE they describe.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from sae_hacking.errors import UserInputError

FLAG = "--cooccurrence-dir"


def _unreadable(directory: Path) -> UserInputError:
    return UserInputError(
        FLAG,
        f"cannot read co-occurrence counts from '{directory}': this build has no co-occurrence "
        "loader yet; leave the flag out",
    )


def read_firing_counts(directory: Path, config: Any) -> tuple[Tensor, int]:
    """Per-latent firing counts and tokens counted, from a gemma_cooccurrences.py run."""
    del config
    raise _unreadable(directory)


def cooccurrence_lookup(
    directory: Path, ablator: dict[str, Any]
) -> Callable[[Tensor, Tensor], Tensor]:
    """``(first_P, second_P) -> counts_P`` from a co-occurrence run of the same ablator SAE."""
    del ablator
    raise _unreadable(directory)

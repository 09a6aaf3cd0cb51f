"""What selective ablation and the pair search read from a co-occurrence run.

Adapter over ``io.cooccurrence_results``: firing counts (for --exclude-latent-threshold), the
run's firing thresholds (so the ablation's choice of firing latents agrees with the counts) and a
pair lookup (for --cooccurrence-threshold), after checking that the run counted the same model,
ablator SAE and firing rule as the ablation it is used with.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.io.bundle import bundle_paths
from sae_hacking.io.cooccurrence_results import (
    EVER,
    TRIANGLE,
    CooccurrenceResults,
    load_cooccurrence,
)
from sae_hacking.io.firing_thresholds import (
    describe_firing,
    firing_rule,
    run_thresholds,
    same_firing,
)

FLAG = "--cooccurrence-dir"


def _same_release(saved: Any, wanted: str) -> bool:
    # A local SAE directory may be named by another relative path to the same place.
    if saved == wanted:
        return True
    return (
        isinstance(saved, str)
        and Path(saved).is_dir()
        and Path(wanted).is_dir()
        and Path(saved).resolve() == Path(wanted).resolve()
    )


def open_cooccurrence(
    directory: Path,
    model: str,
    release: str,
    sae_id: str,
    width: int | None = None,
    hook_name: str | None = None,
    ablator: dict[str, Any] | None = None,
) -> CooccurrenceResults:
    """A finished co-occurrence run of exactly this model and ablator SAE (and, given the
    ``ablator`` an ablation run describes, of the firing rule it chose latents by), or a one-line
    error."""
    results = load_cooccurrence(directory, FLAG)
    manifest = results.manifest
    wanted: dict[str, Any] = {"model": model, "sae_id": sae_id}
    if width is not None:
        wanted["width"] = width
    if hook_name is not None:
        wanted["hook_name"] = hook_name
    for key, value in wanted.items():
        if manifest.get(key) != value:
            raise UserInputError(
                FLAG,
                f"'{directory}' counted {key} {manifest.get(key)!r} but the ablation uses {value!r}; "
                "give a co-occurrence run of the same model and ablator SAE",
            )
    if not _same_release(manifest.get("sae_release"), release):
        raise UserInputError(
            FLAG,
            f"'{directory}' counted SAE release {manifest.get('sae_release')!r} but the ablation "
            f"uses {release!r}; give a co-occurrence run of the same model and ablator SAE",
        )
    if results.firing_E.shape[0] != results.width:
        raise UserInputError(FLAG, f"'{directory}' has firing counts of the wrong length")
    if ablator is not None:
        counted, chosen = firing_rule(manifest), firing_rule(ablator)
        if not same_firing(counted, chosen):
            raise UserInputError(
                FLAG,
                f"'{directory}' counted firing as {describe_firing(counted)}, the ablation chose "
                f"latents firing as {describe_firing(chosen)}; give gemma_selective_ablate.py "
                "this co-occurrence run as --cooccurrence-dir",
            )
    return results


@dataclass(frozen=True)
class CooccurrenceFiring:
    """What an ablation reads of a co-occurrence run: per-latent firing counts over ``tokens``
    tokens, and the bars above which a latent counted as firing (None: activation > 0) by
    ``rule`` (io/firing_thresholds.py)."""

    firing_E: Tensor
    tokens: int
    thresholds_E: Tensor | None
    rule: dict[str, Any]


def read_firing(directory: Path, model: str, release: str, sae_id: str) -> CooccurrenceFiring:
    """Firing counts, tokens counted and firing thresholds, from a gemma_cooccurrences.py run."""
    results = open_cooccurrence(directory, model, release, sae_id)
    thresholds_E = run_thresholds(directory, results.manifest, FLAG)
    return CooccurrenceFiring(
        results.firing_E, results.tokens, thresholds_E, firing_rule(results.manifest)
    )


def pair_lookup(results: CooccurrenceResults, threshold: int) -> Callable[[Tensor, Tensor], Tensor]:
    """``(first_P, second_P) -> counts_P`` for the pair search.

    At threshold 0 only "ever co-occurred" matters, so the 1-bit-per-pair file is read (268 MB at
    65k latents, against 8.6 GB of counts); a pair that passes has count 0, one that fails reads 1.
    """
    if results.manifest["layout"] != TRIANGLE:
        raise UserInputError(
            FLAG,
            f"'{results.directory}' counted only --rows; the pair search needs all pairs "
            "(run gemma_cooccurrences.py without --rows)",
        )
    if threshold == 0 and bundle_paths(results.directory, EVER)[0].is_file():

        def ever(first_P: Tensor, second_P: Tensor) -> Tensor:
            return results.ever_cooccurred(first_P, second_P).long()

        return ever
    return results.pair_counts


def firing_of(results: CooccurrenceResults | None, latents: list[int]) -> dict[int, int | None]:
    """How many tokens each latent fired on (None without a co-occurrence run)."""
    if results is None:
        return dict.fromkeys(latents)
    firing_E = results.firing_E
    index = torch.tensor(latents, dtype=torch.long)
    values = firing_E[index].tolist() if latents else []
    return {latent: int(v) for latent, v in zip(latents, values, strict=True)}

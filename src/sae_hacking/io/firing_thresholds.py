"""What "a latent fires" meant for a co-occurrence run, and the per-latent bars behind it.

Every counts manifest records its firing rule under ``firing``:

- ``{"rule": "positive"}``: activation > 0, the SAE's own (runs from before the rule was recorded
  read as this);
- ``{"rule": "above", "threshold": x}``: activation > x for every latent (``--firing-threshold``);
- ``{"rule": "per_latent", "method": "otsu" | "file", "source": ..., "crc32": ...}``: activation
  above each latent's own bar (``--firing-thresholds-from``), the bars in ``firing_thresholds.json``
  beside the counts (``{"rule": ..., "width": E, "thresholds": [...]}``, float32 values).

Runs whose rules differ counted different events, so they are neither merged nor paired with an
ablation that chose its latents by another rule (``same_firing``).
"""

import json
import math
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from sae_hacking.core.thresholds import HISTOGRAM_BINS, histogram_otsu_thresholds
from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import tensor_checksum

THRESHOLDS_FILE = "firing_thresholds.json"
HISTOGRAM = "activation_histogram"
POSITIVE: dict[str, Any] = {"rule": "positive"}
# What identifies a rule: the source's path may differ between copies of the same bars.
_IDENTITY = ("rule", "threshold", "crc32")


def firing_rule(manifest: dict[str, Any]) -> dict[str, Any]:
    """The firing rule a counts manifest (or an ablation's ablator description) records."""
    rule = manifest.get("firing")
    return rule if isinstance(rule, dict) else POSITIVE


def same_firing(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether two firing rules count the same events."""
    return all(first.get(key) == second.get(key) for key in _IDENTITY)


def describe_firing(rule: dict[str, Any]) -> str:
    """A rule in a few words, for errors."""
    if rule.get("rule") == "above":
        return f"activation > {rule.get('threshold')}"
    if rule.get("rule") == "per_latent":
        return f"per-latent bars ({rule.get('method')}, crc32 {rule.get('crc32')})"
    return "activation > 0"


def global_rule(threshold: float) -> dict[str, Any]:
    return {"rule": "above", "threshold": threshold}


def per_latent_rule(thresholds_E: Float[Tensor, " E"], method: str, source: Path) -> dict[str, Any]:
    return {
        "rule": "per_latent",
        "method": method,
        "source": str(source),
        "crc32": tensor_checksum(thresholds_E.float()),
    }


def write_thresholds(
    directory: Path, thresholds_E: Float[Tensor, " E"], rule: dict[str, Any]
) -> None:
    """The bars as JSON a person can read and edit (and pass back with --firing-thresholds-from)."""
    values = thresholds_E.float().cpu().tolist()
    atomic_write_json(
        directory / THRESHOLDS_FILE,
        {"rule": rule, "width": len(values), "thresholds": values},
    )


def read_thresholds_file(path: Path, flag: str) -> Float[Tensor, " E"]:
    """The bars of a ``firing_thresholds.json``: finite, non-negative, one per latent."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserInputError(flag, f"cannot read '{path}' as JSON ({error})") from error
    values = saved.get("thresholds") if isinstance(saved, dict) else None
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise UserInputError(flag, f"'{path}' holds no list of numbers under 'thresholds'")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise UserInputError(flag, f"'{path}' has a negative or non-finite threshold")
    return torch.tensor(values, dtype=torch.float32).reshape(-1)


def fit_thresholds(directory: Path, flag: str) -> Float[Tensor, " E"]:
    """Otsu's bar per latent from the activation histograms of a co-occurrence run (finished, or
    stopped at a checkpoint: its histograms are those of the tokens counted so far)."""
    from sae_hacking.io.cooccurrence_results import load_cooccurrence

    results = load_cooccurrence(directory, flag, allow_partial=True)
    histogram_ED = results.activation_histogram()
    if histogram_ED is None:
        raise UserInputError(
            flag,
            f"'{directory}' kept no activation histograms (counted by an older version); "
            "count it again to fit thresholds from it",
        )
    if tuple(histogram_ED.shape) != (results.width, HISTOGRAM_BINS):
        raise UserInputError(
            flag,
            f"'{directory}' has histograms of shape {list(histogram_ED.shape)}, not "
            f"[{results.width}, {HISTOGRAM_BINS}]; count it again with this version",
        )
    return histogram_otsu_thresholds(histogram_ED)


def load_thresholds(
    source: Path, sae: dict[str, Any], width: int, flag: str
) -> tuple[Float[Tensor, " E"], dict[str, Any]]:
    """The bars ``--firing-thresholds-from`` names, and their rule: fitted from a co-occurrence run
    of the same SAE (``sae``: its ``model``, ``sae_release``, ``sae_id`` and ``hook_name``), or
    read from a thresholds file for ``width`` latents."""
    if source.is_dir():
        from sae_hacking.io.cooccurrence_results import read_manifest

        if not (source / "counts.safetensors").is_file():
            raise UserInputError(
                flag, f"'{source}' holds no counts.safetensors; give a gemma_cooccurrences.py run"
            )
        manifest = read_manifest(source, flag=flag)
        for key, value in sae.items():
            if key in manifest and manifest[key] != value and key != "sae_release":
                raise UserInputError(
                    flag,
                    f"'{source}' counted {key} {manifest[key]!r}, this run uses {value!r}; "
                    "give a run of the same model and SAE",
                )
        thresholds_E, method = fit_thresholds(source, flag), "otsu"
    elif source.is_file():
        thresholds_E, method = read_thresholds_file(source, flag), "file"
    else:
        raise UserInputError(flag, f"'{source}' does not exist")
    if thresholds_E.shape[0] != width:
        raise UserInputError(
            flag,
            f"'{source}' has thresholds for {thresholds_E.shape[0]} latents, the SAE has {width}",
        )
    return thresholds_E, per_latent_rule(thresholds_E, method, source)


def run_thresholds(directory: Path, manifest: dict[str, Any], flag: str) -> Tensor | None:
    """The bars a co-occurrence run counted above (None: activation > 0), checked against its rule."""
    rule = firing_rule(manifest)
    width = int(manifest["width"])
    if rule["rule"] == "above":
        return torch.full((width,), float(rule["threshold"]))
    if rule["rule"] != "per_latent":
        return None
    thresholds_E = read_thresholds_file(directory / THRESHOLDS_FILE, flag)
    if thresholds_E.shape[0] != width or tensor_checksum(thresholds_E) != rule.get("crc32"):
        raise UserInputError(
            flag,
            f"'{directory / THRESHOLDS_FILE}' is not the thresholds its counts were made with "
            "(another width or checksum); restore it from a copy",
        )
    return thresholds_E

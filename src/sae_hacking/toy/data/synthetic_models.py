"""sae-lens synthetic models (SynthSAEBench and its kin): presets, and loading from any source.

A model is named by a preset (``synth-sae-bench-16k``, or a scaled-down one of the same shape),
a ``SyntheticModelConfig`` JSON file, a directory written by ``SyntheticModel.save``, or a Hugging
Face id (``repo`` or ``repo:subfolder``). The 16k preset is SynthSAEBench-16k's published
configuration (Chanin and Garriga-Alonso 2026, arXiv 2602.14687; sae-lens
``docs/synth_sae_bench.md``), built offline from its seed.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sae_hacking.errors import UserInputError

if TYPE_CHECKING:
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig


@dataclass(frozen=True)
class PresetShape:
    """The sizes a SynthSAEBench-shaped preset varies; everything else is the published value."""

    num_features: int
    hidden_dim: int
    root_nodes: int
    sae_width: int
    description: str


# Scaled-down presets keep the published hierarchy (branching 4, depth 3, all children exclusive,
# so 85 features per tree and about two thirds of all features in trees), firing, correlation and
# magnitudes; only the counts shrink. The SAE width keeps the published quarter of the features.
PRESETS: dict[str, PresetShape] = {
    "synth-sae-bench-16k": PresetShape(
        16_384, 768, 128, 4096, "SynthSAEBench-16k, the published benchmark model"
    ),
    "synth-sae-bench-4k": PresetShape(
        4096, 256, 32, 1024, "a quarter of SynthSAEBench-16k: minutes on a GPU"
    ),
    "synth-sae-bench-1k": PresetShape(
        1024, 128, 8, 256, "a sixteenth of SynthSAEBench-16k: minutes on a laptop CPU"
    ),
}

HUB_16K = "decoderesearch/synth-sae-bench-16k-v2"


def preset_config(name: str) -> "SyntheticModelConfig":
    """The ``SyntheticModelConfig`` of a preset."""
    from sae_lens.synthetic import (
        FoldedNormalMagnitudeConfig,
        HierarchyConfig,
        LinearMagnitudeConfig,
        LowRankCorrelationConfig,
        OrthogonalizationConfig,
        SyntheticModelConfig,
        ZipfianFiringProbabilityConfig,
    )

    shape = PRESETS[name]
    return SyntheticModelConfig(
        num_features=shape.num_features,
        hidden_dim=shape.hidden_dim,
        firing_probability=ZipfianFiringProbabilityConfig(
            exponent=0.5, max_prob=0.4, min_prob=5e-4
        ),
        hierarchy=HierarchyConfig(
            total_root_nodes=shape.root_nodes,
            branching_factor=4,
            max_depth=3,
            mutually_exclusive_portion=1.0,
            mutually_exclusive_min_depth=0,
            compensate_probabilities=True,
            scale_children_by_parent=True,
        ),
        orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4),
        correlation=LowRankCorrelationConfig(rank=25, correlation_scale=0.1),
        mean_firing_magnitudes=LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5,
        seed=42,
    )


def describe_sources() -> str:
    """One line naming every kind of source, for help texts and errors."""
    return (
        f"a preset ({', '.join(PRESETS)}), a SyntheticModelConfig .json file, a saved "
        "SyntheticModel directory, or a Hugging Face id (repo or repo:subfolder)"
    )


def looks_local(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or Path(spec).exists()


def check_model_source(spec: str, flag: str) -> None:
    """Refuse a source that cannot load, before any work (hub ids are checked when loaded)."""
    if spec in PRESETS:
        return
    if looks_local(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserInputError(flag, f"'{spec}' does not exist; give {describe_sources()}")
        if path.is_dir() and not (path / "synthetic_model_config.json").exists():
            raise UserInputError(flag, f"'{spec}' holds no synthetic_model_config.json")
        return
    if spec.count("/") != 1 and ":" not in spec:
        raise UserInputError(flag, f"'{spec}' is not {describe_sources()}")


def feature_count(spec: str) -> int | None:
    """The number of features a source names, read without building it (None for a hub id)."""
    if spec in PRESETS:
        return PRESETS[spec].num_features
    return saved_config_value(spec, "num_features")


def hidden_size(spec: str) -> int | None:
    """The hidden size a source names, read without building it (None for a hub id)."""
    if spec in PRESETS:
        return PRESETS[spec].hidden_dim
    return saved_config_value(spec, "hidden_dim")


def saved_config_value(spec: str, key: str) -> int | None:
    """An integer of a local source's ``SyntheticModelConfig`` JSON (None where unreadable)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "synthetic_model_config.json"
    if not path.is_file():
        return None
    try:
        return int(json.loads(path.read_text())[key])
    except (ValueError, KeyError, TypeError):
        return None


def default_width(spec: str, num_features: int) -> int:
    """An SAE's width on a source: the preset's, else a quarter of the features (as published)."""
    return PRESETS[spec].sae_width if spec in PRESETS else max(num_features // 4, 1)


def load_synthetic_model(spec: str, device: str, flag: str = "--model") -> "SyntheticModel":
    """Build or load the named model on ``device`` (presets and config files are built here)."""
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig

    check_model_source(spec, flag)
    if spec in PRESETS:
        return SyntheticModel(preset_config(spec), device=device)
    path = Path(spec).expanduser()
    if path.is_file():
        try:
            config = SyntheticModelConfig.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise UserInputError(
                flag, f"'{spec}' is not a SyntheticModelConfig: {error}"
            ) from error
        return SyntheticModel(config, device=device)
    if path.is_dir():
        return SyntheticModel.load_from_disk(path, device=device)
    try:
        return SyntheticModel.load_from_source(spec, device=device)
    except OSError as error:  # the hub is unreachable, or the repo holds no such model
        raise UserInputError(flag, f"could not load '{spec}' from the hub: {error}") from error

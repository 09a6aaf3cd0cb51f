"""A small SynthSAEBench-shaped sae-lens model, built once per test session (seconds)."""

import dataclasses
from typing import TYPE_CHECKING

from sae_hacking.toy.data.synthetic_models import preset_config

if TYPE_CHECKING:
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig


def tiny_config(seed: int = 0) -> "SyntheticModelConfig":
    """The published 16k recipe at 256 features: 2 trees of 85 features, 86 features outside.

    Rarest features fire at 5e-3 (not 5e-4) and correlations are stronger (scale 0.3), so a few
    ten thousand samples see every feature and every kind of dependence.
    """
    from sae_lens.synthetic import (
        LowRankCorrelationConfig,
        OrthogonalizationConfig,
        ZipfianFiringProbabilityConfig,
    )

    config = preset_config("synth-sae-bench-1k")
    assert config.hierarchy is not None
    return dataclasses.replace(
        config,
        num_features=256,
        hidden_dim=32,
        firing_probability=ZipfianFiringProbabilityConfig(
            exponent=0.5, max_prob=0.4, min_prob=5e-3
        ),
        hierarchy=dataclasses.replace(config.hierarchy, total_root_nodes=2),
        orthogonalization=OrthogonalizationConfig(num_steps=5, lr=3e-4),
        correlation=LowRankCorrelationConfig(rank=4, correlation_scale=0.3),
        seed=seed,
    )


def tiny_model() -> "SyntheticModel":
    from sae_lens.synthetic import SyntheticModel

    return SyntheticModel(tiny_config())


def small_config() -> "SyntheticModelConfig":
    """24 features in 16 dimensions, one tree of 7 (branching 2, depth 2): for end-to-end runs
    of the toy labs, whose SAEs are as wide as the model has features."""
    config = tiny_config()
    assert config.hierarchy is not None
    return dataclasses.replace(
        config,
        num_features=24,
        hidden_dim=16,
        hierarchy=dataclasses.replace(
            config.hierarchy, total_root_nodes=1, branching_factor=2, max_depth=2
        ),
    )

"""The options of look_for_pairs.py, each declared once."""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import (
    ConfigError,
    between,
    check_options,
    device_option,
    non_negative,
    one_of,
    option,
    output_dir_option,
    positive,
)


def some_runs(runs: tuple[Path, ...]) -> str | None:
    return None if runs else "give at least one gemma_selective_ablate.py run directory"


@dataclass(frozen=True)
class PairSearchConfig:
    """Search pairs and write their report."""

    ablation_dir: tuple[Path, ...] = option(
        (),
        "a gemma_selective_ablate.py run (repeatable: runs and ranks are summed)",
        check=some_runs,
        default_text="required",
    )
    cooccurrence_dir: Path | None = option(
        None, "a gemma_cooccurrences.py run of the same ablator SAE"
    )
    cooccurrence_threshold: int = option(
        0, "drop pairs that co-occur more often than this", check=non_negative
    )
    cosine_sim_threshold: float = option(
        0.5, "keep pairs with cosine at least this", check=between(-1.0, 1.0)
    )
    sign: bool = option(
        False,
        "compare sign patterns of the effects (the original's default) instead of the effects",
    )
    scoring: str = option(
        "thresholds",
        "thresholds (cosine and co-occurrence bars) or ranked (effect cosine x confidence that "
        "the pair co-occurs less than chance, decoders sharing a direction, siblings dropped; "
        "needs --cooccurrence-dir and the ablator's decoder)",
        check=one_of("thresholds", "ranked"),
    )
    score_threshold: float = option(
        0.3, "with --scoring ranked: keep pairs scoring at least this", check=between(0.0, 1.0)
    )
    # core.pair_scores.CARRIES_PARENT (this module imports no torch).
    min_decoder_cosine: float = option(
        0.1,
        "with --scoring ranked: drop pairs whose ablator decoders are closer to orthogonal than this "
        "(an absorber's decoder carries its parent)",
        check=between(-1.0, 1.0),
    )
    # core.pair_scores.GENERALITY_RATIO (this module imports no torch).
    generality_ratio: float = option(
        2.0,
        "with --scoring ranked, where the co-occurrence run estimated each latent's distinct tokens: "
        "keep a pair only if one latent fired on at least this many times the other's distinct "
        "tokens (a parent is more general than its absorber); 1 keeps every pair",
        check=between(1.0, 1e6),
    )
    just_these: tuple[int, ...] = option(
        (), "only pairs involving these latents (repeatable or comma-separated)"
    )
    top_n: int = option(
        1000,
        "report the best N of the pairs that pass (the report says how many passed)",
        check=positive,
    )
    block_rows: int = option(
        4096,
        "rows per block of the blocked search (memory: 2 x rows x reader width x 4 bytes)",
        check=positive,
    )
    explanations: bool = option(
        False, "fetch Neuronpedia explanations (cached; skipped when offline)"
    )
    decoder_cosine: bool = option(
        True,
        "show each pair's decoder cosine (loads the ablator SAE; a hub SAE not cached is downloaded)",
    )
    truth: Path | None = option(
        None,
        "mark pairs against known absorption: a planted run's truth.json or first_letter_absorption.py's "
        "absorbing_pairs.json (key absorbed_pairs: letter_latent, word_latent); prints precision and recall",
    )
    device: str = device_option()
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        if self.scoring == "ranked" and self.cooccurrence_dir is None:
            raise ConfigError("scoring", "ranked scoring needs --cooccurrence-dir")

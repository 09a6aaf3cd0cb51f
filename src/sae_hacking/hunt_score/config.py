"""The options of score_hunt.py, each declared once."""

from dataclasses import dataclass
from pathlib import Path

from sae_hacking.config import ConfigError, check_options, each, option, output_dir_option, positive


def required(value: Path | None) -> str | None:
    return None if value is not None else "required"


@dataclass(frozen=True)
class ScoreHuntConfig:
    """Score a look_for_pairs.py run against known absorbing pairs: the share of them in the hunt's
    top N (recall at N) and the precision of its top N, for several N."""

    pairs_dir: Path | None = option(
        None,
        "a look_for_pairs.py run (its pairs.json, best first)",
        check=required,
        default_text="required",
    )
    truth: Path | None = option(
        None,
        "absorbing pairs: first_letter_absorption.py's absorbing_pairs.json or a planted "
        "truth.json (keys letter_latent, word_latent)",
        check=required,
        default_text="required",
    )
    sae_id: str | None = option(
        None,
        "the truth pairs of this SAE (a first-letter run of several SAEs)",
        default_text="the hunt's ablator, when the truth names SAEs",
    )
    top_n: tuple[int, ...] = option(
        (1, 5, 10, 20, 50, 100, 1000), "the N scored, comma-separated", check=each(positive)
    )
    output_dir: Path | None = output_dir_option()

    def __post_init__(self) -> None:
        check_options(self)
        if not self.top_n:
            raise ConfigError("top_n", "give at least one N")

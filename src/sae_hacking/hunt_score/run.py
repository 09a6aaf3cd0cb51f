"""Score a hunt's ranking against truth pairs: recall and precision of its top N.

The hunt's ranking is the order of ``pairs.json`` (look_for_pairs.py writes the best pair first:
by score with ``--scoring ranked``, by cosine otherwise). Pairs are unordered. A truth pair
counts as found at N when it is among the first N hunt pairs; precision at N is the share of
those first N (or of all pairs, when fewer) that are truth pairs.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sae_hacking.devices import command_line
from sae_hacking.errors import UserInputError
from sae_hacking.hunt_score.config import ScoreHuntConfig
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config

SCRIPT = "score_hunt"
PAIRS_FILE = "pairs.json"
LatentPair = tuple[int, int]


@dataclass(frozen=True)
class AtN:
    """The hunt's first ``n`` pairs against the truth."""

    n: int
    shown: int
    hits: int
    truth: int

    @property
    def recall(self) -> float:
        return self.hits / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return self.hits / self.shown if self.shown else 1.0

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "recall": self.recall, "precision": self.precision}


def _read_object(path: Path, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserInputError(flag, f"cannot read '{path}': {error.strerror}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserInputError(flag, f"'{path}' is not JSON: {error}") from error
    if not isinstance(value, dict):
        raise UserInputError(flag, f"'{path}' is not a JSON object")
    return value


def ordered(a: int, b: int) -> LatentPair:
    return (a, b) if a <= b else (b, a)


def hunt_ranking(pairs_dir: Path) -> tuple[list[LatentPair], dict[str, Any]]:
    """The hunt's pairs best first, and its ablator's description."""
    path = pairs_dir / PAIRS_FILE
    if not path.is_file():
        raise UserInputError("--pairs-dir", f"'{pairs_dir}' has no {PAIRS_FILE}")
    written = _read_object(path, "--pairs-dir")
    try:
        ranking = [
            ordered(int(p["first"]["latent"]), int(p["second"]["latent"])) for p in written["pairs"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise UserInputError(
            "--pairs-dir", f"'{path}' is not a look_for_pairs.py result"
        ) from error
    return ranking, dict(written.get("ablator") or {})


def truth_pairs(path: Path, sae_id: str | None, hunt_sae_id: str | None) -> frozenset[LatentPair]:
    """The truth's (letter latent, word latent) pairs, of one SAE when the file names several."""
    written = _read_object(path, "--truth")
    try:
        rows = [
            (ordered(int(p["letter_latent"]), int(p["word_latent"])), p.get("sae_id"))
            for p in written["absorbed_pairs"]
        ]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserInputError(
            "--truth", f"'{path}' lacks absorbed_pairs with letter_latent and word_latent"
        ) from error
    named = sorted({s for _, s in rows if s is not None})
    if not named:
        if sae_id is not None:
            raise UserInputError("--sae-id", f"'{path}' names no SAE; leave --sae-id out")
        return frozenset(pair for pair, _ in rows)
    wanted = sae_id or (hunt_sae_id if hunt_sae_id in named else None)
    if wanted is None:
        if len(named) > 1 or hunt_sae_id is not None:
            flag = "--sae-id" if len(named) > 1 else "--truth"
            raise UserInputError(
                flag,
                f"the truth holds pairs of {', '.join(named)}, the hunt's ablator is "
                f"{hunt_sae_id}; name one with --sae-id",
            )
        wanted = named[0]
    if wanted not in named:
        raise UserInputError("--sae-id", f"'{wanted}' is not among {', '.join(named)}")
    return frozenset(pair for pair, s in rows if s == wanted)


def score_at(ranking: list[LatentPair], truth: frozenset[LatentPair], n: int) -> AtN:
    top = ranking[:n]
    return AtN(n, len(top), len(set(top) & truth), len(truth))


@dataclass(frozen=True)
class HuntScore:
    """Where the scores were written, and the scores."""

    run_dir: Path
    truth: frozenset[LatentPair]
    ranked: int
    scores: list[AtN]


def run(config: ScoreHuntConfig) -> HuntScore:
    """Read both inputs, score the top N for each N, write score.json and print the table."""
    assert config.pairs_dir is not None and config.truth is not None
    ranking, ablator = hunt_ranking(config.pairs_dir)
    truth = truth_pairs(config.truth, config.sae_id, ablator.get("id"))
    if not truth:
        raise UserInputError("--truth", f"'{config.truth}' holds no absorbing pair to score")
    run_dir = make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    write_config(run_dir, config, command_line())
    scores = [score_at(ranking, truth, n) for n in sorted(set(config.top_n))]
    # Every truth pair the hunt found at all, and those it never reported.
    found_anywhere = set(ranking) & truth
    atomic_write_json(
        run_dir / "score.json",
        {
            "pairs_dir": str(config.pairs_dir),
            "truth": str(config.truth),
            "ablator": ablator,
            "truth_pairs": len(truth),
            "hunt_pairs": len(ranking),
            "found_anywhere": len(found_anywhere),
            "at_n": [s.record() for s in scores],
            "missed": sorted(truth - found_anywhere),
        },
    )
    print_scores(scores, len(ranking), len(found_anywhere))
    return HuntScore(run_dir, truth, len(ranking), scores)


def print_scores(scores: list[AtN], ranked: int, found: int) -> None:
    truth = scores[0].truth
    table = Table(
        title=f"{truth} truth pairs; the hunt ranked {ranked} pairs, {found} of them true"
    )
    for column in ("top N", "pairs", "true", "recall", "precision"):
        table.add_column(column, justify="right")
    for s in scores:
        table.add_row(str(s.n), str(s.shown), str(s.hits), f"{s.recall:.2f}", f"{s.precision:.2f}")
    Console().print(table)

"""Score an absorption hunt against known absorbing pairs.

Reads a look_for_pairs.py run (its pairs, best first) and a truth file (first_letter_absorption.py's
absorbing_pairs.json, or a planted model's truth.json), and reports for each N the share of the
truth pairs among the hunt's top N and the precision of that top N: score.json and a table.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.hunt_score.config import ScoreHuntConfig

app = make_app(__doc__ or "")


def work(config: ScoreHuntConfig) -> None:
    from sae_hacking.hunt_score.run import run

    typer.echo(f"scores written to {run(config).run_dir}")


config_command(app, ScoreHuntConfig, work)

if __name__ == "__main__":
    app()

"""SAE-ception: retrain a classifier towards SAE-sharpened hidden activations, cycle by cycle.

Cycle 0 trains the classifier (an MLP on scikit-learn's digits, or a transformer-lens model with a
linear head on SST-2, AG News or a local CSV/JSONL file). Each later cycle trains a top-k SAE on the
previous classifier's hidden activations, builds targets with each strategy (per-class,
per-example, and the random and none controls), retrains with CE + lambda (1 - cos(h, t)), and
scores the new classifier and its SAE codes. ``--resume DIR`` continues a stopped run.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.saeception.config import SaeCeptionConfig

app = make_app(__doc__.splitlines()[0] if __doc__ else "")


def work(config: SaeCeptionConfig) -> None:
    from sae_hacking.saeception.run import run

    result = run(config)
    typer.echo(result.tables)
    typer.echo(f"results in {result.run_dir}")


config_command(app, SaeCeptionConfig, work)


if __name__ == "__main__":
    app()

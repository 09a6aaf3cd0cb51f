"""Train top-k or hierarchical top-k SAEs on parents with two perturbed children; score them.

Runs as ``uv run src/sae_hacking/train_topk_sae_toy.py`` or as the ``train-topk-sae-toy`` command.
Every multi-word flag is accepted with dashes or underscores (``--perturbation-size`` or
``--perturbation_size``, see ``cli.dashed_flags``), so the original toolkit's command runs as written.
The options are the fields of ``ToyTrainConfig``; the library is imported only to run.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.toy.experiments.training.config import ToyTrainConfig

app = make_app(__doc__.splitlines()[0] if __doc__ else "")


def work(config: ToyTrainConfig) -> None:
    from sae_hacking.toy.experiments.training.run import run

    typer.echo(f"results in {run(config).run_dir}")


config_command(app, ToyTrainConfig, work)


if __name__ == "__main__":
    app()

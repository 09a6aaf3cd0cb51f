"""Find ablator latents whose ablation effects look alike but which (almost) never fire together.

Reads the effects of one or more ``gemma_selective_ablate.py`` runs (summed when several), keeps
pairs of ablated latents with cosine >= ``--cosine-sim-threshold`` and co-occurrence <=
``--cooccurrence-threshold``, and writes pairs.json, pairs.csv, cosines.png and pairs.html.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.pair_search.config import PairSearchConfig

app = make_app(__doc__ or "")


def work(config: PairSearchConfig) -> None:
    from sae_hacking.pair_search.run import run  # heavy: imported once the flags are checked

    typer.echo(f"pairs written to {run(config)}")


config_command(app, PairSearchConfig, work)

if __name__ == "__main__":
    app()

"""Find ablator latents whose ablation effects look alike but which (almost) never fire together.

Reads the effects of one or more ``gemma_selective_ablate.py`` runs (summed when several), keeps
pairs of ablated latents with cosine >= ``--cosine-sim-threshold`` and co-occurrence <=
``--cooccurrence-threshold``, and writes pairs.json, pairs.csv, cosines.png and pairs.html.
"""

from pathlib import Path
from typing import Annotated

import typer

from sae_hacking.cli import DeviceOption, OutputDirOption, make_app, run_or_fail
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.pair_search.run import PairSearchConfig, run

app = make_app(__doc__ or "")


@app.command()
def main(
    ablation_dir: Annotated[
        list[Path],
        typer.Option(
            help="a gemma_selective_ablate.py run (repeatable: runs and ranks are summed)"
        ),
    ],
    cooccurrence_dir: Annotated[
        Path | None, typer.Option(help="a gemma_cooccurrences.py run of the same ablator SAE")
    ] = None,
    cooccurrence_threshold: Annotated[
        int, typer.Option(help="drop pairs that co-occur more often than this")
    ] = 0,
    cosine_sim_threshold: Annotated[
        float, typer.Option(help="keep pairs with cosine at least this")
    ] = 0.5,
    sign: Annotated[
        bool,
        typer.Option(
            help="compare sign patterns of the effects (the original's default) instead of the effects"
        ),
    ] = False,
    scoring: Annotated[
        str,
        typer.Option(
            help="thresholds (cosine and co-occurrence bars) or ranked (effect cosine x "
            "confidence that the pair co-occurs less than chance, siblings dropped; needs "
            "--cooccurrence-dir)"
        ),
    ] = "thresholds",
    score_threshold: Annotated[
        float, typer.Option(help="with --scoring ranked: keep pairs scoring at least this")
    ] = 0.3,
    just_these: Annotated[
        list[int] | None, typer.Option(help="only pairs involving these latents (repeatable)")
    ] = None,
    top_n: Annotated[int, typer.Option(help="keep the best N pairs")] = 1000,
    block_rows: Annotated[
        int,
        typer.Option(
            help="rows per block of the blocked search (memory: 2 x rows x reader width x 4 bytes)"
        ),
    ] = 4096,
    explanations: Annotated[
        bool, typer.Option(help="fetch Neuronpedia explanations (cached; skipped when offline)")
    ] = False,
    device: DeviceOption = "auto",
    output_dir: OutputDirOption = None,
) -> None:
    """Search pairs and write their report."""

    def work() -> Path:
        config = PairSearchConfig(
            ablation_dirs=tuple(ablation_dir),
            cooccurrence_dir=cooccurrence_dir,
            cooccurrence_threshold=cooccurrence_threshold,
            cosine_sim_threshold=cosine_sim_threshold,
            sign=sign,
            scoring=scoring,
            score_threshold=score_threshold,
            just_these=tuple(just_these or ()),
            top_n=top_n,
            block_rows=block_rows,
            explanations=explanations,
            device=device,
            output_dir=output_dir or default_output_dir(),
        )
        run_dir = run(config)
        typer.echo(f"pairs written to {run_dir}")
        return run_dir

    run_or_fail(work)


if __name__ == "__main__":
    app()

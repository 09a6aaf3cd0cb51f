"""Ablate each prompt's top ablator-SAE latents one at a time and record how the reader SAE's latents change.

For every prompt whose top ``--abridge-ablations-to`` ablator latents include one of
``--selected-features``, each of those latents is zeroed (the SAE's error term kept) and
clean - ablated reader activations at the last real token are summed per ablator latent. The
summed rows and ablation counts go to ``<run>/effects/``, which ``look_for_pairs.py`` reads.
"""

import json

import typer

from sae_hacking.ablation.config import SelectiveAblationConfig
from sae_hacking.cli import config_command, make_app

app = make_app(__doc__ or "")


def work(config: SelectiveAblationConfig) -> None:
    from sae_hacking.ablation.run import run  # heavy: imported once the flags are checked

    run_dir = run(config)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    if summary["corpus_ran_out"]:
        typer.echo(
            f"the corpus ran out: {summary['prompts']} prompts ablated of the "
            f"{summary['max_prompts']} that --max-prompts asked for"
        )
    typer.echo(f"effects written to {run_dir / 'effects'}")


config_command(app, SelectiveAblationConfig, work)

if __name__ == "__main__":
    app()

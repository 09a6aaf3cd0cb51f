"""Measure feature absorption of SAEs on the first-letter task ("A is for Absorption", SAEBench 0.6).

Runs as ``uv run src/sae_hacking/first_letter_absorption.py`` or as ``first-letter-absorption``.
"""

from sae_hacking.cli import config_command, make_app
from sae_hacking.first_letter.config import FirstLetterConfig

app = make_app(__doc__.splitlines()[0] if __doc__ else "")


def work(config: FirstLetterConfig) -> None:
    import typer

    from sae_hacking.first_letter.run import run

    result = run(config)
    for sae in result.saes:
        fraction = sae.mean("absorption_fraction")
        full = sae.mean("full_absorption_rate")
        typer.echo(
            f"{sae.sae_id}: mean absorption fraction {fraction if fraction is None else round(fraction, 4)}, "
            f"full absorption {full if full is None else round(full, 4)}"
        )
    typer.echo(f"wrote {result.run_dir} in {result.seconds:.1f} s")


config_command(app, FirstLetterConfig, work)

if __name__ == "__main__":
    app()

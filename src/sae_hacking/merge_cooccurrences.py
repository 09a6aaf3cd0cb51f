"""Sum the counts of finished gemma_cooccurrences.py runs (e.g. shards run on separate machines).

The runs must share model, SAE, layout and BOS handling; their corpora should be disjoint.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.cooccurrence.config import MergeConfig

app = make_app(__doc__ or "")


def work(config: MergeConfig) -> None:
    from sae_hacking.cooccurrence.merge import run  # heavy: imported once the flags are checked

    run_dir, manifest = run(config)
    typer.echo(f"{run_dir} ({manifest['tokens']:,} tokens, {manifest['prompts']:,} prompts)")


config_command(app, MergeConfig, work)

if __name__ == "__main__":
    app()

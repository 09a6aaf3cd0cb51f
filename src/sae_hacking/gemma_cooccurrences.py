"""Count how often each pair of an SAE's latents fires on the same token, exactly, over a corpus.

Runs the model only as far as the SAE's hook. Writes a packed int32/int64 upper triangle of pair
counts, per-latent firing counts and a bit-packed "ever co-occurred" triangle. Resumable
(--save-every, --resume) and shardable with torchrun.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.cooccurrence.config import CooccurrenceConfig

app = make_app(__doc__ or "")


def work(config: CooccurrenceConfig) -> None:
    from sae_hacking.cooccurrence.run import run  # heavy: imported once the flags are checked

    typer.echo(str(run(config)))


config_command(app, CooccurrenceConfig, work)

if __name__ == "__main__":
    app()

"""Send a prompt to a running prompt server; print its tokens coloured by activation and save an HTML file.

With no --feature-idx the server picks the latents that fire most on the prompt.
"""

from sae_hacking.cli import config_command, make_app
from sae_hacking.highlight.config import ClientConfig

app = make_app(__doc__ or "")


def work(config: ClientConfig) -> None:
    from sae_hacking.highlight.client import run  # imported once the flags are checked

    run(config)


config_command(app, ClientConfig, work)

if __name__ == "__main__":
    app()

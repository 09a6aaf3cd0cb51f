"""Serve a page and a JSON API that colour a prompt's tokens by how strongly SAE latents fire.

The model loads once; SAEs load on first use and stay in a small cache. Open the printed address in a
browser, or send prompts with ``prompt_client.py``.
"""

from sae_hacking.cli import config_command, make_app
from sae_hacking.highlight.config import ServerConfig

app = make_app(__doc__ or "")


def work(config: ServerConfig) -> None:
    from sae_hacking.highlight.server import run  # heavy: imported once the flags are checked

    run(config)


config_command(app, ServerConfig, work)

if __name__ == "__main__":
    app()

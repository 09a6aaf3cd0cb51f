"""Serve a page and a JSON API that colour a prompt's tokens by how strongly SAE latents fire.

The model loads once; SAEs load on first use and stay in a small cache. Open the printed address in a
browser, or send prompts with ``prompt_client.py``.
"""

from typing import Annotated

import typer

from sae_hacking.cli import DeviceOption, DtypeOption, make_app, run_or_fail
from sae_hacking.highlight.server import ServerConfig, run
from sae_hacking.llm.models import DEFAULT_MODEL

app = make_app(__doc__ or "")


@app.command()
def main(
    model: Annotated[
        str, typer.Option(help="transformer-lens model name, or 'tiny' (random, offline)")
    ] = DEFAULT_MODEL,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "float32",
    host: Annotated[
        str, typer.Option(help="loopback address to bind (no authentication)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_prompt_tokens: Annotated[
        int | None,
        typer.Option(
            help="longest prompt in tokens (default: 1024, or the model's context if shorter)"
        ),
    ] = None,
    sae_cache_size: Annotated[int, typer.Option(help="SAEs kept loaded at once")] = 2,
    sae_release: Annotated[
        str | None,
        typer.Option(
            help="the page's default SAE release (default: gemma-scope-2b-pt-res-canonical; tiny for --model tiny)"
        ),
    ] = None,
    sae_id: Annotated[
        str | None,
        typer.Option(help="the page's default SAE id (default: layer_20/width_65k/canonical)"),
    ] = None,
) -> None:
    """Load the model and serve the prompt highlighter until interrupted."""
    run_or_fail(
        lambda: run(
            ServerConfig(
                model=model,
                device=device,
                dtype=dtype,
                host=host,
                port=port,
                max_prompt_tokens=max_prompt_tokens,
                sae_cache_size=sae_cache_size,
                sae_release=sae_release,
                sae_id=sae_id,
            )
        )
    )


if __name__ == "__main__":
    app()

"""Send a prompt to a running prompt server; print its tokens coloured by activation and save an HTML file.

With no --feature-idx the server picks the latents that fire most on the prompt.
"""

from typing import Annotated

import typer

from sae_hacking.cli import OutputDirOption, make_app, run_or_fail
from sae_hacking.highlight.client import DEFAULT_SERVER_URL, ClientConfig, parse_feature_idx, run
from sae_hacking.io.rundir import default_output_dir

app = make_app(__doc__ or "")


@app.command()
def main(
    prompt: Annotated[str, typer.Option(help="the text to highlight")],
    sae_release: Annotated[
        str | None, typer.Option(help="sae-lens release (default: the server's default)")
    ] = None,
    sae_id: Annotated[
        str | None, typer.Option(help="SAE id within the release (default: the server's default)")
    ] = None,
    feature_idx: Annotated[
        list[str] | None,
        typer.Option(
            help="latent id(s); repeat the flag or give a comma list (default: the top latents)"
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(help="how many top latents, when no --feature-idx")] = 10,
    server_url: Annotated[str, typer.Option(help="address of prompt_server")] = DEFAULT_SERVER_URL,
    output_dir: OutputDirOption = None,
    timeout: Annotated[
        float, typer.Option(help="seconds to wait (the first SAE may download)")
    ] = 600.0,
) -> None:
    """Highlight one prompt and save it as a self-contained HTML file."""
    run_or_fail(
        lambda: run(
            ClientConfig(
                prompt=prompt,
                sae_release=sae_release,
                sae_id=sae_id,
                feature_idx=parse_feature_idx(feature_idx or []),
                top_k=top_k,
                server_url=server_url,
                output_dir=output_dir or default_output_dir(),
                timeout_s=timeout,
            )
        )
    )


if __name__ == "__main__":
    app()

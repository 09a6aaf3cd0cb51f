"""``prompt_client``'s work: ask a running prompt server about one prompt and keep the answer locally.

The run directory holds ``config.json``, ``highlight.json`` (the server's answer) and ``highlight.html``
(self-contained; open it in any browser). File names are fixed here, never taken from the server.
"""

from pathlib import Path

import httpx
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from sae_hacking.devices import command_line
from sae_hacking.errors import UserInputError
from sae_hacking.highlight.config import ClientConfig
from sae_hacking.highlight.render import result_html, result_rich
from sae_hacking.highlight.schemas import HighlightResult, ServerInfo
from sae_hacking.io.atomic import atomic_write_json, atomic_write_text
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config


def _refusal(response: httpx.Response) -> UserInputError:
    try:
        body = response.json()
        message = str(body["error"])
        problems = [str(p) for p in body.get("problems", [])]
    except (ValueError, KeyError, TypeError):
        message, problems = response.text[:200] or response.reason_phrase, []
    detail = "; ".join([message, *problems])
    return UserInputError("server", f"refused the request (HTTP {response.status_code}): {detail}")


def _server_info(response: httpx.Response, server_url: str) -> ServerInfo:
    try:
        return ServerInfo.model_validate(response.json())
    except (ValueError, ValidationError) as error:
        raise UserInputError(
            "--server-url", f"{server_url} answers /api/info, but not as a prompt server does"
        ) from error


def fetch(config: ClientConfig) -> HighlightResult:
    """Ask the server; connection failures and refusals become one-line errors."""
    try:
        with httpx.Client(base_url=config.server_url, timeout=config.timeout) as http:
            release, sae_id = config.sae_release, config.sae_id
            if release is None or sae_id is None:
                response = http.get("/api/info")
                if response.status_code != 200:
                    raise _refusal(response)
                info = _server_info(response, config.server_url)
                release, sae_id = info.default_sae_release, info.default_sae_id
            response = http.post(
                "/api/highlight",
                json={
                    "prompt": config.prompt,
                    "sae_release": release,
                    "sae_id": sae_id,
                    "latents": list(config.feature_idx),
                    "top_k": config.top_k,
                },
            )
    except httpx.TransportError as error:
        raise UserInputError(
            "--server-url",
            f"cannot reach {config.server_url} ({type(error).__name__}); start the server with "
            "`uv run src/sae_hacking/prompt_server.py` or pass its address",
        ) from error
    if response.status_code != 200:
        raise _refusal(response)
    try:
        return HighlightResult.model_validate(response.json())
    except (ValueError, ValidationError) as error:
        raise UserInputError(
            "--server-url", f"the answer from {config.server_url} is not a prompt server's"
        ) from error


def run(config: ClientConfig, console: Console | None = None) -> Path:
    """Fetch the highlight, write JSON and HTML into a fresh run directory, print it coloured."""
    # Fetched first: a refused or unreachable request leaves no empty run directory behind.
    result = fetch(config)
    run_dir = make_run_dir(config.output_dir or default_output_dir(), "prompt_client")
    write_config(run_dir, config, command_line())
    atomic_write_json(run_dir / "highlight.json", result.model_dump())
    html_path = run_dir / "highlight.html"
    atomic_write_text(html_path, result_html(result, config.prompt))
    console = console or Console()
    console.print(result_rich(result))
    console.print(Text.assemble("wrote ", (str(html_path), "bold")))
    return run_dir

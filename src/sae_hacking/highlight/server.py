"""``prompt_server``'s work: load the model once, then serve the highlight app on a loopback address.

Unlike the other scripts, the server makes no run directory: it writes no files at all (only Hugging
Face's download cache fills when an SAE is first fetched), whatever a client sends.
"""

import re
from typing import Any

import torch
import uvicorn
from rich.console import Console
from rich.markup import escape
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.config import ConfigError
from sae_hacking.devices import resolve_device
from sae_hacking.highlight.app import create_app
from sae_hacking.highlight.config import DEFAULT_PROMPT_TOKENS, ServerConfig
from sae_hacking.highlight.highlighter import ModelHighlighter
from sae_hacking.llm.models import load_model, parse_dtype, prompt_length
from sae_hacking.llm.saes import TINY_RELEASE, check_pairing, load_sae, tiny_sae

console = Console(stderr=True)
# A sae-lens release name, or a Hugging Face repo id (owner/name); never a path like /x, ./x or ../x.
RELEASE_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?")


def prompt_token_limit(config: ServerConfig) -> int:
    """``--max-tokens-in-prompt``, or 1024 capped at the model's context."""
    return prompt_length(config.max_tokens_in_prompt, DEFAULT_PROMPT_TOKENS, config.model)


def check_release_name(release: str) -> None:
    """Refuse a release that names a place on this machine: clients pick SAEs, not files."""
    if release != TINY_RELEASE and not RELEASE_NAME.fullmatch(release):
        raise ConfigError(
            "sae_release",
            f"'{release}' is neither a sae-lens release nor a Hugging Face repo id; "
            "the server never loads SAEs from paths",
        )


def registry_sae(
    model: HookedSAETransformer, release: str, sae_id: str, device: torch.device, dtype: str
) -> SAE[Any]:
    """An SAE by release and id only: ``tiny`` or sae-lens's registry, never a path a client names."""
    check_release_name(release)
    sae = (
        tiny_sae(model, sae_id, device)
        if release == TINY_RELEASE
        else load_sae(release, sae_id, device, dtype)
    )
    check_pairing(model.cfg, sae)
    return sae.to(dtype=parse_dtype(dtype))


def build_highlighter(config: ServerConfig) -> ModelHighlighter:
    """Load the model and the default SAE (so a bad default fails now, not at the first request)."""
    device = resolve_device(config.device)
    token_limit = prompt_token_limit(config)
    console.print(
        f"loading model [bold]{escape(config.model)}[/] on {device} ({escape(config.dtype)})"
    )
    model = load_model(config.model, device, parse_dtype(config.dtype))
    highlighter = ModelHighlighter(
        model,
        config.model,
        lambda release, sae_id: registry_sae(model, release, sae_id, device, config.dtype),
        config.default_sae,
        config.sae_cache_size,
        token_limit,
    )
    console.print(f"loading SAE [bold]{escape('/'.join(config.default_sae))}[/]")
    highlighter.saes.get(config.default_sae)
    return highlighter


def url_of(host: str, port: int) -> str:
    """The page's address, with IPv6 hosts in brackets."""
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(config: ServerConfig) -> None:
    """Serve until interrupted."""
    app = create_app(build_highlighter(config))
    console.print(f"serving the prompt highlighter at [bold]{url_of(config.host, config.port)}[/]")
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")

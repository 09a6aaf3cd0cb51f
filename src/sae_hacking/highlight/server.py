"""``prompt_server``'s work: load the model once, then serve the highlight app on a loopback address.

Unlike the other scripts, the server makes no run directory: it writes no files at all (only Hugging
Face's download cache fills when an SAE is first fetched), whatever a client sends.
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import torch
import uvicorn
from rich.console import Console
from rich.markup import escape
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.devices import resolve_device
from sae_hacking.errors import UserInputError
from sae_hacking.highlight.app import create_app
from sae_hacking.highlight.cache import SaeKey
from sae_hacking.highlight.highlighter import ModelHighlighter
from sae_hacking.llm.models import DEFAULT_MODEL, TINY_MODEL, load_model, model_config, parse_dtype
from sae_hacking.llm.saes import (
    DEFAULT_ABLATOR_ID,
    DEFAULT_RELEASE,
    TINY_ABLATOR_ID,
    TINY_RELEASE,
    check_pairing,
    load_sae,
    tiny_sae,
)

console = Console(stderr=True)
DEFAULT_MAX_PROMPT_TOKENS = 1024
# A sae-lens release name, or a Hugging Face repo id (owner/name); never a path like /x, ./x or ../x.
RELEASE_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*)?")


def default_sae(model: str) -> SaeKey:
    """The SAE the page starts with: the original's Gemma Scope layer-20 SAE, or the tiny stand-in."""
    return (
        (TINY_RELEASE, TINY_ABLATOR_ID)
        if model == TINY_MODEL
        else (DEFAULT_RELEASE, DEFAULT_ABLATOR_ID)
    )


def check_loopback(host: str, flag: str = "--host") -> None:
    """Refuse any address but this machine's: the server has no authentication."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise UserInputError(
            flag,
            f"'{host}' is not a loopback address and the server has no authentication; bind to "
            "127.0.0.1 and reach it from elsewhere through an SSH tunnel (ssh -L 8000:127.0.0.1:8000 host)",
        )


@dataclass(frozen=True)
class ServerConfig:
    """What ``prompt_server`` was asked to do."""

    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "float32"
    host: str = "127.0.0.1"
    port: int = 8000
    max_prompt_tokens: int | None = None
    sae_cache_size: int = 2
    sae_release: str | None = None
    sae_id: str | None = None

    def __post_init__(self) -> None:
        check_loopback(self.host)
        if not 1 <= self.port <= 65535:
            raise UserInputError("--port", f"{self.port} is not a TCP port; use 1-65535")
        if self.sae_cache_size < 1:
            raise UserInputError("--sae-cache-size", "must be at least 1 (the SAE in use)")
        parse_dtype(self.dtype)
        n_ctx = model_config(self.model).n_ctx
        if self.max_prompt_tokens is not None and not 1 <= self.max_prompt_tokens <= n_ctx:
            raise UserInputError(
                "--max-prompt-tokens",
                f"{self.max_prompt_tokens} is outside 1-{n_ctx}, the context of '{self.model}'",
            )
        if (self.sae_release is None) != (self.sae_id is None):
            raise UserInputError("--sae-id", "give --sae-release and --sae-id together, or neither")

    @property
    def prompt_token_limit(self) -> int:
        """``--max-prompt-tokens``, or 1024 capped at the model's context."""
        if self.max_prompt_tokens is not None:
            return self.max_prompt_tokens
        return min(DEFAULT_MAX_PROMPT_TOKENS, model_config(self.model).n_ctx)

    @property
    def default_sae(self) -> SaeKey:
        if self.sae_release is not None and self.sae_id is not None:
            return (self.sae_release, self.sae_id)
        return default_sae(self.model)


def check_release_name(release: str) -> None:
    """Refuse a release that names a place on this machine: clients pick SAEs, not files."""
    if release != TINY_RELEASE and not RELEASE_NAME.fullmatch(release):
        raise UserInputError(
            "--sae-release",
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
        config.prompt_token_limit,
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

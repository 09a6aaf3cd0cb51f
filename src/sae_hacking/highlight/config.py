"""The options of prompt_server.py and prompt_client.py, each declared once."""

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sae_hacking.config import (
    ConfigError,
    between,
    check_options,
    device_option,
    dtype_option,
    each,
    non_negative,
    option,
    output_dir_option,
    positive,
)
from sae_hacking.highlight.limits import MAX_LATENTS, MAX_PROMPT_CHARS, MAX_TOP_K
from sae_hacking.llm.options import (
    DEFAULT_ABLATOR_ID,
    DEFAULT_RELEASE,
    TINY_ABLATOR_ID,
    TINY_MODEL,
    TINY_RELEASE,
    max_tokens_in_prompt_option,
    model_option,
    sae_id_option,
    sae_release_option,
)

DEFAULT_PROMPT_TOKENS = 1024
DEFAULT_SERVER_URL = "http://127.0.0.1:8000"


def loopback(host: str) -> str | None:
    """Refuse any address but this machine's: the server has no authentication."""
    try:
        is_loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if is_loopback:
        return None
    return (
        f"'{host}' is not a loopback address and the server has no authentication; bind to "
        "127.0.0.1 and reach it from elsewhere through an SSH tunnel "
        "(ssh -L 8000:127.0.0.1:8000 host)"
    )


def release_and_id_together(release: str | None, sae_id: str | None, default: str) -> None:
    if (release is None) != (sae_id is None):
        raise ConfigError(
            "sae_id", f"give --sae-release and --sae-id together, or neither ({default})"
        )


@dataclass(frozen=True)
class ServerConfig:
    """Load the model and serve the prompt highlighter until interrupted."""

    model: str = model_option()
    device: str = device_option()
    dtype: str = dtype_option()
    host: str = option("127.0.0.1", "loopback address to bind (no authentication)", check=loopback)
    port: int = option(8000, "TCP port", check=between(1, 65535))
    # Longer prompts are refused, not truncated: a client sees every token it sent.
    max_tokens_in_prompt: int | None = max_tokens_in_prompt_option(
        DEFAULT_PROMPT_TOKENS,
        "refuse prompts longer than this many tokens, BOS included",
        aliases=("--max-prompt-tokens",),
    )
    sae_cache_size: int = option(2, "SAEs kept loaded at once", check=positive)
    sae_release: str | None = sae_release_option(help="the page's default SAE release")
    sae_id: str | None = sae_id_option(help="the page's default SAE id")

    def __post_init__(self) -> None:
        check_options(self)
        release_and_id_together(self.sae_release, self.sae_id, "the model's default")

    @property
    def default_sae(self) -> tuple[str, str]:
        """The SAE the page starts with: the original's Gemma Scope layer-20 SAE, or the tiny one."""
        if self.sae_release is not None and self.sae_id is not None:
            return (self.sae_release, self.sae_id)
        if self.model == TINY_MODEL:
            return (TINY_RELEASE, TINY_ABLATOR_ID)
        return (DEFAULT_RELEASE, DEFAULT_ABLATOR_ID)


def prompt_text(prompt: str) -> str | None:
    if not prompt:
        return "is empty; give the text to highlight"
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"is {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}"
    return None


def latent_list(latents: tuple[int, ...]) -> str | None:
    if len(latents) > MAX_LATENTS:
        return f"{len(latents)} latents; ask for at most {MAX_LATENTS}"
    if len(set(latents)) != len(latents):
        return "a latent is given twice; give each once"
    return each(non_negative)(latents)


def http_url(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    return f"'{url}' is not an http(s) address, e.g. {DEFAULT_SERVER_URL}"


@dataclass(frozen=True)
class ClientConfig:
    """Highlight one prompt and save it as a self-contained HTML file."""

    prompt: str = option("", "the text to highlight", check=prompt_text, default_text="required")
    sae_release: str | None = option(None, "sae-lens release", default_text="the server's default")
    sae_id: str | None = option(
        None, "SAE id within the release", default_text="the server's default"
    )
    feature_idx: tuple[int, ...] = option(
        (),
        "latent ids: repeat the flag or give a comma list",
        check=latent_list,
        default_text="the top latents",
    )
    top_k: int = option(
        10, "how many top latents, when no --feature-idx", check=between(1, MAX_TOP_K)
    )
    server_url: str = option(DEFAULT_SERVER_URL, "address of prompt_server", check=http_url)
    output_dir: Path | None = output_dir_option()
    timeout: float = option(600.0, "seconds to wait (the first SAE may download)", check=positive)

    def __post_init__(self) -> None:
        check_options(self)
        release_and_id_together(self.sae_release, self.sae_id, "the server's default")

"""What the app needs from a highlighter, and how a highlighter says no."""

from typing import Protocol, runtime_checkable

from sae_hacking.highlight.schemas import HighlightRequest, HighlightResult, ServerInfo


class HighlightError(Exception):
    """A request the highlighter cannot answer, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@runtime_checkable
class Highlighter(Protocol):
    """Turns a prompt, an SAE and latent ids into per-token activations."""

    def info(self) -> ServerInfo:
        """The model and defaults, for the page's form."""
        ...

    def highlight(self, request: HighlightRequest) -> HighlightResult:
        """Activations of the requested latents (or the top ones) on every token of the prompt."""
        ...

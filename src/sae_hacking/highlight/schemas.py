"""What the highlight API accepts and answers, with every size bounded."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from sae_hacking.highlight.limits import (
    MAX_LATENT_ID,
    MAX_LATENTS,
    MAX_NAME_CHARS,
    MAX_PROMPT_CHARS,
    MAX_TOP_K,
)

# Release and id names as sae-lens spells them: no control characters, no spaces at the ends.
NAME_PATTERN = r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?$"

# Strict: "3" or 3.0 in JSON is a malformed request, not a latent.
LatentId = Annotated[StrictInt, Field(ge=0, le=MAX_LATENT_ID)]


class HighlightRequest(BaseModel):
    """A prompt, the SAE to read it with, and the latents to show (none: the prompt's top latents)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    sae_release: str = Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=NAME_PATTERN)
    sae_id: str = Field(min_length=1, max_length=MAX_NAME_CHARS, pattern=NAME_PATTERN)
    latents: list[LatentId] = Field(default_factory=list, max_length=MAX_LATENTS)
    top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)

    @field_validator("latents")
    @classmethod
    def latents_are_distinct(cls, latents: list[int]) -> list[int]:
        if len(set(latents)) != len(latents):
            raise ValueError("latent ids repeat; give each once")
        return latents


class LatentTrace(BaseModel):
    """One latent's activation at every token of the prompt."""

    latent: int
    activations: list[float]
    max_activation: float
    neuronpedia_url: str | None


class TopLatent(BaseModel):
    """A latent that fires strongly somewhere on the prompt."""

    latent: int
    max_activation: float
    neuronpedia_url: str | None


class HighlightResult(BaseModel):
    """Tokens of the prompt and the chosen (or top) latents' activations on them."""

    model: str
    sae_release: str
    sae_id: str
    hook_name: str
    sae_width: int
    tokens: list[str]
    # How many leading tokens the model added (BOS); they are shown but never ranked or scaled by.
    special_prefix: int
    traces: list[LatentTrace]
    top_latents: list[TopLatent] | None


class ServerInfo(BaseModel):
    """What the page needs to fill its form: the model and the default SAE."""

    model: str
    default_sae_release: str
    default_sae_id: str
    max_prompt_chars: int
    max_prompt_tokens: int
    max_latents: int
    max_top_k: int

    @classmethod
    def for_model(
        cls, model: str, default_sae: tuple[str, str], max_prompt_tokens: int
    ) -> "ServerInfo":
        """The info of a server running ``model``, with this module's request bounds."""
        return cls(
            model=model,
            default_sae_release=default_sae[0],
            default_sae_id=default_sae[1],
            max_prompt_chars=MAX_PROMPT_CHARS,
            max_prompt_tokens=max_prompt_tokens,
            max_latents=MAX_LATENTS,
            max_top_k=MAX_TOP_K,
        )


class ErrorBody(BaseModel):
    """Every error answer: one sentence, and per-field problems where the request was malformed."""

    error: str
    problems: list[str] = Field(default_factory=list)

"""Per-token latent activations of a prompt from a loaded model and cached SAEs."""

import math
from collections.abc import Callable
from typing import Any

import torch
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from sae_lens import SAE, HookedSAETransformer
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.highlight.cache import LruCache, SaeKey
from sae_hacking.highlight.protocol import HighlightError
from sae_hacking.highlight.schemas import (
    HighlightRequest,
    HighlightResult,
    LatentTrace,
    ServerInfo,
    TopLatent,
)
from sae_hacking.llm.models import stop_layer
from sae_hacking.neuronpedia import neuronpedia_url


@jaxtyped(typechecker=beartype)
def latent_activations(
    model: HookedSAETransformer, sae: SAE[Any], tokens_1S: Int[Tensor, "1 S"]
) -> Float[Tensor, "S E"]:
    """The SAE's post-activation latents at each position, running the model only as far as its hook."""
    hook_name = sae.cfg.metadata.hook_name
    acts_name = f"{hook_name}.hook_sae_acts_post"
    with torch.no_grad():
        _, cache = model.run_with_cache_with_saes(
            tokens_1S,
            saes=[sae],
            use_error_term=True,
            names_filter=[acts_name],
            stop_at_layer=stop_layer(hook_name),
        )
    return cache[acts_name][0]


@jaxtyped(typechecker=beartype)
def top_latents(
    acts_SE: Float[Tensor, "S E"], skip: int, k: int
) -> tuple[Float[Tensor, " K"], Int[Tensor, " K"]]:
    """The ``k`` latents with the largest peak after the first ``skip`` positions, those that fire at all."""
    body_SE = acts_SE[skip:]
    if body_SE.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.long, device=acts_SE.device)
        return acts_SE.new_zeros(0), empty
    peak_E = body_SE.max(dim=0).values
    values_K, idx_K = peak_E.topk(min(k, peak_E.shape[0]))
    fires_K = values_K > 0
    return values_K[fires_K], idx_K[fires_K]


def finite_floats(values: Tensor, what: str) -> list[float]:
    """Values as JSON-safe floats; a NaN or infinity is the model's failure, reported as such."""
    floats = values.detach().float().cpu().tolist()
    if not all(math.isfinite(value) for value in floats):
        raise HighlightError(500, f"the {what} contain NaN or infinity; try --dtype float32")
    return floats


class ModelHighlighter:
    """A loaded model plus a bounded cache of SAEs. Not thread-safe: the app serializes calls."""

    def __init__(
        self,
        model: HookedSAETransformer,
        model_name: str,
        load_sae: Callable[[str, str], SAE[Any]],
        default_sae: SaeKey,
        sae_cache_size: int,
        max_prompt_tokens: int,
    ) -> None:
        self.model = model
        self.model_name = model_name
        self.default_sae = default_sae
        self.max_prompt_tokens = max_prompt_tokens
        self.saes: LruCache[SAE[Any]] = LruCache(sae_cache_size, lambda key: load_sae(*key))

    def info(self) -> ServerInfo:
        return ServerInfo.for_model(self.model_name, self.default_sae, self.max_prompt_tokens)

    def _sae(self, release: str, sae_id: str) -> SAE[Any]:
        try:
            return self.saes.get((release, sae_id))
        except UserInputError as error:
            # The loaders speak in flags (--sae-id); the API's fields are sae_release and sae_id.
            field = error.flag.lstrip("-").replace("-", "_")
            raise HighlightError(422, f"{field}: {error.problem}") from error

    def highlight(self, request: HighlightRequest) -> HighlightResult:
        sae = self._sae(request.sae_release, request.sae_id)
        width = sae.cfg.d_sae
        for latent in request.latents:
            if latent >= width:
                raise HighlightError(
                    422,
                    f"latent {latent} is out of range: this SAE has {width} latents (0-{width - 1})",
                )
        # truncate=False: a prompt past the model's context is refused below, never silently cut.
        tokens_1S = self.model.to_tokens(request.prompt, prepend_bos=True, truncate=False)
        if tokens_1S.shape[1] > self.max_prompt_tokens:
            raise HighlightError(
                413,
                f"the prompt is {tokens_1S.shape[1]} tokens; this server takes at most {self.max_prompt_tokens}",
            )
        bos = self.model.tokenizer.bos_token_id if self.model.tokenizer is not None else None
        special_prefix = int(bos is not None and int(tokens_1S[0, 0]) == bos)
        acts_SE = latent_activations(self.model, sae, tokens_1S)
        neuronpedia_id = sae.cfg.metadata.neuronpedia_id
        top: list[TopLatent] | None = None
        latents = list(request.latents)
        if not latents:
            values_K, idx_K = top_latents(acts_SE, special_prefix, request.top_k)
            latents = [int(i) for i in idx_K.tolist()]
            top = [
                TopLatent(
                    latent=latent,
                    max_activation=value,
                    neuronpedia_url=neuronpedia_url(neuronpedia_id, latent),
                )
                for latent, value in zip(
                    latents, finite_floats(values_K, "top activations"), strict=True
                )
            ]
        traces = []
        for latent in latents:
            values = finite_floats(acts_SE[:, latent], f"activations of latent {latent}")
            body = values[special_prefix:] or [0.0]
            traces.append(
                LatentTrace(
                    latent=latent,
                    activations=values,
                    max_activation=max(body),
                    neuronpedia_url=neuronpedia_url(neuronpedia_id, latent),
                )
            )
        return HighlightResult(
            model=self.model_name,
            sae_release=request.sae_release,
            sae_id=request.sae_id,
            hook_name=sae.cfg.metadata.hook_name,
            sae_width=width,
            tokens=[str(t) for t in self.model.to_str_tokens(tokens_1S[0])],
            special_prefix=special_prefix,
            traces=traces,
            top_latents=top,
        )

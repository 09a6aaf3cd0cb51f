"""The tiny model and a highlighter around it, built once for the highlight tests."""

from typing import Any

import pytest
import torch
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.highlight.highlighter import ModelHighlighter
from sae_hacking.highlight.server import registry_sae
from sae_hacking.llm import TINY_ABLATOR_ID, TINY_RELEASE, tiny_model, tiny_sae

TINY_DEFAULT = (TINY_RELEASE, TINY_ABLATOR_ID)


@pytest.fixture(scope="session")
def tiny() -> HookedSAETransformer:
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_ablator(tiny: HookedSAETransformer) -> SAE[Any]:
    return tiny_sae(tiny, TINY_ABLATOR_ID)


def make_highlighter(model: HookedSAETransformer, cache_size: int = 2) -> ModelHighlighter:
    return ModelHighlighter(
        model,
        "tiny",
        lambda release, sae_id: registry_sae(
            model, release, sae_id, torch.device("cpu"), "float32"
        ),
        TINY_DEFAULT,
        sae_cache_size=cache_size,
        max_prompt_tokens=64,
    )


@pytest.fixture(scope="session")
def tiny_highlighter(tiny: HookedSAETransformer) -> ModelHighlighter:
    return make_highlighter(tiny)

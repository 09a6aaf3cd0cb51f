"""Shared, read-only language-model stand-ins for the llm tests (built once per session)."""

from typing import Any

import pytest
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.llm import TINY_ABLATOR_ID, tiny_model, tiny_sae


@pytest.fixture(scope="session")
def tiny() -> HookedSAETransformer:
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_ablator(tiny: HookedSAETransformer) -> SAE[Any]:
    return tiny_sae(tiny, TINY_ABLATOR_ID)

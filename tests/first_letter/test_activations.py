"""Word activations read with the forward pass stopped at the hook equal a full cached forward."""

import random

import pytest
import torch

from sae_hacking.first_letter.activations import activations_at_hook, tokenize
from sae_hacking.first_letter.config import TEMPLATE
from sae_hacking.first_letter.vocab import build_prompts
from sae_hacking.llm.models import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.mark.parametrize(
    "hook_name",
    [
        "blocks.0.hook_resid_pre",
        "blocks.2.hook_resid_pre",
        "blocks.2.hook_attn_out",
        "blocks.2.hook_resid_post",
    ],
)
def test_stopping_at_the_hook_reads_what_a_full_forward_caches(model, hook_name: str) -> None:
    prompts = build_prompts(["snake", "stone", "garden", "story"], TEMPLATE, 2, random.Random(0))
    batch = tokenize(model.tokenizer, prompts, TEMPLATE)
    with torch.no_grad():
        _, cache = model.run_with_cache(
            batch.tokens_BS, attention_mask=batch.mask_BS, names_filter=[hook_name]
        )
        got = activations_at_hook(model, batch.tokens_BS, batch.mask_BS, hook_name)
    torch.testing.assert_close(got, cache[hook_name], atol=0, rtol=0)
    assert not any(point.fwd_hooks for point in model.hook_dict.values())

"""Exact per-latent ablation: the fast residual-stream path equals a hooked full forward."""

import pytest
import torch

from sae_hacking.first_letter.activations import tokenize
from sae_hacking.first_letter.config import TEMPLATE
from sae_hacking.first_letter.exact_ablation import ablated_metrics, logit_difference
from sae_hacking.first_letter.vocab import build_prompts
from sae_hacking.llm.models import tiny_model


def test_logit_difference_is_own_letter_minus_mean_of_the_others() -> None:
    logits_BV = torch.tensor([[0.0, 5.0, 1.0, 3.0, 9.0]])
    letter_ids_C = torch.tensor([1, 2, 3])
    assert logit_difference(logits_BV, torch.tensor([0]), letter_ids_C).tolist() == [3.0]


@pytest.mark.parametrize("hook_name", ["blocks.2.hook_resid_post", "blocks.2.hook_resid_pre"])
def test_the_stream_path_equals_the_hooked_forward(hook_name: str) -> None:
    import random

    model = tiny_model()
    words = ["snake", "stone", "garden", "story", "summer", "storm"]
    prompts = build_prompts(words, TEMPLATE, 3, random.Random(0))
    batch = tokenize(model.tokenizer, prompts, TEMPLATE)
    _, cache = model.run_with_cache(
        batch.tokens_BS, attention_mask=batch.mask_BS, names_filter=[hook_name]
    )
    generator = torch.Generator().manual_seed(0)
    delta_BM = torch.randn(len(words), model.cfg.d_model, generator=generator)
    letters_B = torch.tensor([p.letter for p in prompts])
    letter_ids_C = torch.arange(30, 56)
    args = (
        model,
        hook_name,
        batch.tokens_BS,
        batch.mask_BS,
        batch.position_B,
        delta_BM,
        letters_B,
        letter_ids_C,
    )
    fast = ablated_metrics(*args, stream_KSM=cache[hook_name])
    hooked = ablated_metrics(*args)
    torch.testing.assert_close(fast, hooked, atol=1e-4, rtol=1e-4)
    unchanged = ablated_metrics(*args[:5], torch.zeros_like(delta_BM), *args[6:])
    assert not torch.allclose(fast, unchanged)  # the deltas matter

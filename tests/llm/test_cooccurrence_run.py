import pytest
import torch
from sae_lens import HookedSAETransformer

from sae_hacking.cooccurrence.run import hook_acts
from sae_hacking.llm import iter_token_batches
from sae_hacking.llm.tokenizer import TINY_TEXT


@pytest.mark.parametrize(
    "hook_name", ["blocks.3.hook_resid_post", "blocks.1.hook_mlp_out", "blocks.2.hook_resid_pre"]
)
def test_hook_acts_equal_the_cache_of_a_full_run(
    tiny: HookedSAETransformer, hook_name: str
) -> None:
    texts = [line for line in TINY_TEXT.splitlines() if line.strip()][:5]
    assert tiny.tokenizer is not None
    (batch,) = iter_token_batches(texts, tiny.tokenizer, 5, 20)
    with torch.inference_mode():
        _, cache = tiny.run_with_cache(
            batch.tokens_BS, attention_mask=batch.attention_mask_BS, names_filter=[hook_name]
        )
    acts = hook_acts(tiny, hook_name, batch)
    assert torch.equal(acts, cache[hook_name])

"""The original toolkit's selective ablation, kept as the one slow, obvious reference.

The benchmark times it (benchmarks/ablation.py) and the tests check the batched path against it
(tests/llm/test_ablation.py); it lives here, outside the package, because nothing runs it for results.
"""

from collections.abc import Callable
from typing import Any

import torch
from sae_lens import SAE, HookedSAETransformer
from torch import Tensor
from transformer_lens.hook_points import HookPoint

READER_HOOKS = {
    "latents": "hook_sae_acts_post",
    "preactivations": "hook_sae_acts_pre",
    "activations": "hook_sae_input",
}


def zeroing(latent: int) -> Callable[..., Tensor]:
    """A hook that zeroes one latent at every position, as the original did."""

    def zero(tensor: Tensor, *, hook: HookPoint) -> Tensor:
        del hook
        tensor[:, :, latent] = 0
        return tensor

    return zero


def reference_effects(
    model: HookedSAETransformer,
    ablator: SAE[Any],
    reader: SAE[Any],
    tokens_BS: Tensor,
    mask_BS: Tensor,
    counted_BS: Tensor,
    k: int,
    effect_space: str = "latents",
) -> tuple[list[list[int]], dict[int, Tensor]]:
    """The original algorithm, prompt by prompt: hooks on hook_sae_acts_post, error terms kept.

    Bugs of the original fixed in the same way as the fast path: the top-k sums only counted
    tokens, latents that never fired are not ablated, and the mask is passed explicitly. The
    reader is read at the SAE hook of ``effect_space``: its latents (the original), its
    pre-activations, or its input (the reader hook's activations).
    """
    ablator_point = f"{ablator.cfg.metadata.hook_name}.hook_sae_acts_post"
    reader_hook = READER_HOOKS[effect_space]
    reader_point = f"{reader.cfg.metadata.hook_name}.{reader_hook}"
    chosen: list[list[int]] = []
    effects: dict[int, Tensor] = {}
    for b in range(tokens_BS.shape[0]):
        tokens_1S, mask_1S = tokens_BS[b : b + 1], mask_BS[b : b + 1]
        last = int(mask_1S[0].nonzero().max())
        model.reset_hooks()
        model.reset_saes()
        _, cache = model.run_with_cache_with_saes(
            tokens_1S, saes=[ablator], use_error_term=True, attention_mask=mask_1S
        )
        summed_E = (cache[ablator_point][0] * counted_BS[b, :, None]).sum(0)
        top = [int(i) for i in summed_E.topk(k).indices if summed_E[i] > 0]
        chosen.append(top)
        _, cache = model.run_with_cache_with_saes(
            tokens_1S, saes=[reader], use_error_term=True, attention_mask=mask_1S
        )
        baseline_E = cache[reader_point][0, last]
        model.add_sae(ablator, use_error_term=True)
        for latent in top:
            model.add_hook(ablator_point, zeroing(latent), "fwd")
            _, cache = model.run_with_cache_with_saes(
                tokens_1S, saes=[reader], use_error_term=True, attention_mask=mask_1S
            )
            effect_E = baseline_E - cache[reader_point][0, last]
            effects[latent] = effects.get(latent, torch.zeros_like(effect_E)) + effect_E
            model.reset_hooks()
        model.reset_saes()
    return chosen, effects

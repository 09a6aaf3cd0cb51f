"""The ablated forward, computed only where it can change what the reader sees.

Attention is causal, so positions before the first one where an ablated latent fired keep their
clean values in every block: their keys and values come from the clean pass, and only the suffix
from that position on is recomputed. The reader is read at each prompt's last real token, so the
last attention on the way computes keys and values for the suffix but a query for that token
only, and anything after it (the reader block's MLP) runs on that token alone.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import HookedSAETransformer
from torch import Tensor

from sae_hacking.ablation.gemma_blocks import (
    BlockWeights,
    KeysValues,
    Rotary,
    allowed_keys,
    attention_out,
    block_weights,
    keys_values,
    mlp_out,
    position_ids,
    rotary,
)
from sae_hacking.ablation.sites import AblationPlan

Step = tuple[Literal["attn", "mlp"], int]


def steps_between(plan: AblationPlan) -> list[Step]:
    """The attention and MLP sublayers from the ablated point up to the reader's, in order."""
    if plan.ablator.kind == "attn_out":
        first: Step = ("mlp", plan.ablator.layer)
    else:
        first = ("attn", plan.start_layer)
    reader = plan.reader
    if reader.kind == "resid_pre":
        last: Step = ("mlp", reader.layer - 1)
    elif reader.kind == "attn_out":
        last = ("attn", reader.layer)
    else:
        last = ("mlp", reader.layer)
    order = {"attn": 0, "mlp": 1}
    every = [(kind, b) for b in range(first[1], last[1] + 1) for kind in ("attn", "mlp")]
    key = lambda step: (step[1], order[step[0]])  # noqa: E731
    return [s for s in every if key(first) <= key(s) <= key(last)]  # pyright: ignore[reportReturnType]


def clean_hooks(plan: AblationPlan) -> list[str]:
    """Clean activations the suffix forward needs: the stream entering each attention it runs."""
    names = [f"blocks.{b}.hook_resid_pre" for kind, b in steps_between(plan) if kind == "attn"]
    if plan.ablator.kind == "attn_out":
        names += [plan.ablator.name, f"blocks.{plan.ablator.layer}.hook_resid_pre"]
    return sorted(set(names))


@dataclass(frozen=True)
class SuffixForward:
    """Weights, clean keys and values, and positions shared by every chunk of one token batch."""

    plan: AblationPlan
    steps: list[Step]
    weights: dict[int, BlockWeights]
    clean_kv: dict[int, KeysValues]
    positions_BS: Int[Tensor, "B S"]
    key_real_BS: Bool[Tensor, "B S"]


def prepare(
    model: HookedSAETransformer,
    plan: AblationPlan,
    clean: dict[str, Tensor],
    attention_mask_BS: Int[Tensor, "B S"],
) -> SuffixForward:
    """Lay out the blocks' weights and compute the clean keys and values once per token batch."""
    steps = steps_between(plan)
    weights = {b: block_weights(model, b) for b in sorted({b for _, b in steps})}
    positions_BS = position_ids(attention_mask_BS)
    clean_kv = {
        b: keys_values(
            weights[b], clean[f"blocks.{b}.hook_resid_pre"], rotary(weights[b], positions_BS)
        )
        for kind, b in steps
        if kind == "attn"
    }
    return SuffixForward(plan, steps, weights, clean_kv, positions_BS, attention_mask_BS.bool())


def _at(stream_KSM: Tensor, index_K: Tensor) -> Tensor:
    """Each row's position ``index_K``, keeping a length-1 position axis."""
    rows_K = torch.arange(stream_KSM.shape[0], device=stream_KSM.device)
    return stream_KSM[rows_K, index_K][:, None]


def reader_input(
    forward: SuffixForward,
    prompt_K: Int[Tensor, " K"],
    start_KSM: Float[Tensor, "K S M"],
    first: int,
    last_K: Int[Tensor, " K"],
) -> Float[Tensor, "K M"]:
    """The reader hook's value at each row's last real token.

    ``start_KSM`` is the ablated stream entering the first step, at positions ``first`` onwards;
    every earlier position is clean. ``last_K`` indexes the full sequence.
    """
    steps = forward.steps
    attn_steps = [i for i, (kind, _) in enumerate(steps) if kind == "attn"]
    final_attn = attn_steps[-1] if attn_steps else -1
    n_pos = forward.positions_BS.shape[1]
    positions_KS = forward.positions_BS[prompt_K, first:]
    key_real_KS = forward.key_real_BS[prompt_K]
    query_pos_KS = torch.arange(first, n_pos, device=start_KSM.device).expand(len(prompt_K), -1)
    last_in_suffix_K = last_K - first
    allowed: dict[int | None, Tensor] = {}
    # Blocks share rotary tables unless a model gives local layers their own base.
    factors: dict[int, Rotary] = {}
    stream = start_KSM if final_attn >= 0 else _at(start_KSM, last_in_suffix_K)
    output = stream
    for i, (kind, b) in enumerate(steps):
        w = forward.weights[b]
        if kind == "mlp":
            output = mlp_out(w, stream)
            stream = stream + output
            continue
        table = w.rotary_sin.data_ptr()
        if table not in factors:
            factors[table] = rotary(w, positions_KS)
        kv = keys_values(w, stream, factors[table]).after(forward.clean_kv[b].rows(prompt_K, first))
        if i < final_attn:
            if w.window not in allowed:
                allowed[w.window] = allowed_keys(query_pos_KS, key_real_KS, w.window)
            output = attention_out(w, stream, factors[table], kv, allowed[w.window])
        else:
            stream = _at(stream, last_in_suffix_K)
            last_allowed = allowed_keys(last_K[:, None], key_real_KS, w.window)
            output = attention_out(w, stream, factors[table].at(last_in_suffix_K), kv, last_allowed)
        stream = stream + output
    # The stream is down to the last token here: gathered at the final attention, or at the start.
    reader_is_output = forward.plan.reader.kind in ("attn_out", "mlp_out")
    return (output if reader_is_output else stream)[:, 0]

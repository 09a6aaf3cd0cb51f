"""Batched selective ablation: one clean pass, then many prompts' ablations as one partial forward.

The original ran one full forward per ablated latent (K+2 forwards a prompt). Here a clean pass
runs to the reader's block, and every ablation of a chunk of prompts runs together from the
ablator's block to the reader's, with the prompts' attention masks (left padding, rotary offsets).
See benchmarks/ablation.py for the speed-up.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from sae_lens import SAE, HookedSAETransformer
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from sae_hacking.ablation import suffix as ablation_suffix
from sae_hacking.ablation.config import EFFECT_SPACES
from sae_hacking.ablation.gemma_blocks import unsupported_reason
from sae_hacking.ablation.sites import AblationPlan
from sae_hacking.core.ablation import (
    AblationChoice,
    ablation_deltas,
    choose_ablations,
    decoder_directions,
    last_real_positions,
)
from sae_hacking.errors import UserInputError

SUPPORTED_ARCHITECTURES = (
    "standard",
    "jumprelu",
    "topk",
    "batchtopk",
    "gated",
    "matryoshka_batchtopk",
)


def check_linear_decoder(sae: SAE[Any], flag: str) -> None:
    """Refuse SAEs whose decode is not affine in the latents (so an ablation is not a fixed shift)."""
    architecture = sae.cfg.architecture()
    if architecture not in SUPPORTED_ARCHITECTURES:
        raise UserInputError(
            flag,
            f"'{architecture}' SAEs are not supported; use one of {', '.join(SUPPORTED_ARCHITECTURES)}",
        )
    if sae.cfg.normalize_activations in ("constant_norm_rescale", "layer_norm"):
        raise UserInputError(
            flag,
            f"the SAE normalizes activations at run time ({sae.cfg.normalize_activations}); "
            "ablations need a fixed decoder",
        )


def read_effect_space(reader: SAE[Any], acts_BM: Float[Tensor, "B M"], space: str) -> Tensor:
    """What an ablation's effect is measured in (``EFFECT_SPACES``): the reader SAE's latents (the
    original), its pre-activations (sae-lens's ``hook_sae_acts_pre``, before the threshold or
    top-k cuts them), or the reader hook's activations themselves (width d_model).

    A reader SAE's own sparsity cuts a parent's and its absorber's effects onto different reader
    latents; the pre-activations and the activations are not cut (toy hunt, README).
    """
    if space == "latents":
        return reader.encode(acts_BM).float()
    if space == "activations":
        return acts_BM.float()
    if space == "preactivations":
        captured: list[Tensor] = []

        def keep(acts: Tensor, hook: HookPoint) -> None:
            del hook
            captured.append(acts)

        with reader.hooks(fwd_hooks=[("hook_sae_acts_pre", keep)]):
            reader.encode(acts_BM)
        return captured[-1].float()
    raise ValueError(f"unknown effect space '{space}'; use one of {', '.join(EFFECT_SPACES)}")


def effect_width(reader: SAE[Any], space: str) -> int:
    """The width of an effect row in ``space``."""
    return int(reader.cfg.d_in if space == "activations" else reader.cfg.d_sae)


@dataclass(frozen=True)
class CleanPass:
    """What the ablations of one token batch need from the clean model."""

    ablator_acts_BSE: Float[Tensor, "B S E"]
    start_stream_BSM: Float[Tensor, "B S M"]
    reader_acts_BY: Float[Tensor, "B Y"]
    last_B: Int[Tensor, " B"]
    streams: dict[str, Tensor]


@dataclass(frozen=True)
class AblationChunk:
    """Effects of a chunk of ablations: which ablator latent each row ablated, and clean - ablated."""

    latents_K: Int[Tensor, " K"]
    effects_KY: Float[Tensor, "K Y"]


def _rescales(sae: SAE[Any]) -> bool:
    return bool(getattr(sae.cfg, "rescale_acts_by_decoder_norm", False))


def _at_last(acts_BSM: Tensor, last_B: Tensor) -> Tensor:
    return acts_BSM[torch.arange(acts_BSM.shape[0], device=acts_BSM.device), last_B]


@torch.no_grad()
def clean_pass(
    model: HookedSAETransformer,
    plan: AblationPlan,
    ablator: SAE[Any],
    reader: SAE[Any],
    tokens_BS: Int[Tensor, "B S"],
    attention_mask_BS: Int[Tensor, "B S"],
    extra_hooks: tuple[str, ...] = (),
    effect_space: str = "latents",
) -> CleanPass:
    """Run the clean model to the reader's block, caching the hooks the ablations need."""
    cache: dict[str, Tensor] = {}

    def keep(acts: Tensor, hook: HookPoint) -> None:
        assert hook.name is not None
        cache[hook.name] = acts

    names = {plan.ablator.name, plan.start_stream_hook, *extra_hooks}
    if not plan.reader_is_stream:
        names.add(plan.reader.name)
    with model.hooks(fwd_hooks=[(name, keep) for name in sorted(names)]):
        output = model(tokens_BS, attention_mask=attention_mask_BS, stop_at_layer=plan.stop_layer)
    last_B = last_real_positions(attention_mask_BS)
    reader_in_BSM = output if plan.reader_is_stream else cache[plan.reader.name]
    return CleanPass(
        ablator_acts_BSE=ablator.encode(cache[plan.ablator.name]).float(),
        start_stream_BSM=cache[plan.start_stream_hook],
        reader_acts_BY=read_effect_space(reader, _at_last(reader_in_BSM, last_B), effect_space),
        last_B=last_B,
        streams={name: cache[name] for name in extra_hooks},
    )


@torch.no_grad()
def ablated_reader_acts(
    model: HookedSAETransformer,
    plan: AblationPlan,
    reader: SAE[Any],
    stream_BSM: Float[Tensor, "B S M"],
    deltas_BSM: Float[Tensor, "B S M"],
    attention_mask_BS: Int[Tensor, "B S"],
    last_B: Int[Tensor, " B"],
    effect_space: str = "latents",
) -> Float[Tensor, "B Y"]:
    """The reader, read in ``effect_space``, at each row's last real token after subtracting
    ``deltas`` at the ablator."""
    captured: dict[str, Tensor] = {}
    hooks: list[tuple[str | Callable[..., Any], Callable[..., Any]]] = []
    if plan.shifts_stream:
        stream_BSM = stream_BSM - deltas_BSM
    else:

        def subtract(acts: Tensor, hook: HookPoint) -> Tensor:
            return acts - deltas_BSM

        hooks.append((plan.ablator.name, subtract))
    if not plan.reader_is_stream:

        def keep(acts: Tensor, hook: HookPoint) -> None:
            captured["reader"] = _at_last(acts, last_B)

        hooks.append((plan.reader.name, keep))
    if plan.stop_layer > plan.start_layer:
        with model.hooks(fwd_hooks=hooks):
            output = model(
                stream_BSM,
                start_at_layer=plan.start_layer,
                stop_at_layer=plan.stop_layer,
                attention_mask=attention_mask_BS,
            )
    else:
        # The reader is the stream the ablation shifted (mlp_out[L] -> resid_post[L]): no block to run.
        output = stream_BSM
    reader_in_BM = _at_last(output, last_B) if plan.reader_is_stream else captured["reader"]
    return read_effect_space(reader, reader_in_BM, effect_space)


def ablation_rows(choice: AblationChoice) -> tuple[Int[Tensor, " K"], Int[Tensor, " K"]]:
    """(prompt, latent) of every ablation to run, prompt by prompt, in top-k order."""
    take_BK = choice.valid_BK & choice.chosen_B[:, None]
    prompt_K, slot_K = take_BK.nonzero(as_tuple=True)
    return prompt_K, choice.latents_BK[prompt_K, slot_K]


def first_firing(acts_KS: Float[Tensor, "K S"], real_KS: Bool[Tensor, "K S"]) -> Int[Tensor, " K"]:
    """Each row's first real position where the ablated latent fired (the last position if none).

    Pads are never attended to, so what an ablation does there cannot reach the reader.
    """
    positions_S = torch.arange(acts_KS.shape[1], device=acts_KS.device)
    fired_KS = (acts_KS != 0) & real_KS
    return torch.where(fired_KS, positions_S, acts_KS.shape[1] - 1).amin(dim=1)


@torch.no_grad()
def batched_ablation_effects(
    model: HookedSAETransformer,
    plan: AblationPlan,
    ablator: SAE[Any],
    reader: SAE[Any],
    tokens_BS: Int[Tensor, "B S"],
    attention_mask_BS: Int[Tensor, "B S"],
    counted_BS: Bool[Tensor, "B S"],
    k: int,
    ablatable_E: Bool[Tensor, " E"],
    selected_D: Int[Tensor, " D"],
    max_batch_ablations: int,
    transformer_lens_blocks: bool = False,
    effect_space: str = "latents",
    firing_thresholds_E: Float[Tensor, " E"] | None = None,
) -> tuple[AblationChoice, Iterator[AblationChunk]]:
    """Choose each prompt's ablations and yield their effects in chunks of at most ``max_batch_ablations``.

    Chunks mix prompts: the batched forward's cost grows with rows, not with prompts, so several
    prompts' ablations fill one batch (K=100 on one CPU thread: see benchmarks/ablation.py). On
    Gemma-2-shaped models the ablated forward recomputes only positions from the first one where
    the latent fired (rows sorted by it, so a chunk shares its clean prefix) and only the reader's
    token in the last block (ablation/suffix.py); ``transformer_lens_blocks`` or any other
    architecture runs transformer-lens's blocks over every position instead. Effects are clean -
    ablated reader values in ``effect_space`` (``read_effect_space``).
    """
    suffix = not transformer_lens_blocks and unsupported_reason(model.cfg) is None
    extra = tuple(ablation_suffix.clean_hooks(plan)) if suffix else ()
    clean = clean_pass(
        model, plan, ablator, reader, tokens_BS, attention_mask_BS, extra, effect_space
    )
    choice = choose_ablations(
        clean.ablator_acts_BSE,
        counted_BS,
        k,
        ablatable_E.to(tokens_BS.device),
        selected_D,
        firing_thresholds_E,
    )
    prompt_X, latent_X = ablation_rows(choice)
    positions_S = torch.arange(tokens_BS.shape[1], device=tokens_BS.device)
    acts_XS = clean.ablator_acts_BSE[prompt_X[:, None], positions_S[None, :], latent_X[:, None]]
    first_X = first_firing(acts_XS, attention_mask_BS[prompt_X].bool())
    forward: ablation_suffix.SuffixForward | None = None
    if suffix:
        order_X = torch.argsort(first_X, stable=True)
        prompt_X, latent_X, acts_XS, first_X = (
            prompt_X[order_X],
            latent_X[order_X],
            acts_XS[order_X],
            first_X[order_X],
        )
        forward = ablation_suffix.prepare(model, plan, clean.streams, attention_mask_BS)
    directions_EM = ablator.W_dec.float()
    rescale = _rescales(ablator)

    def chunks() -> Iterator[AblationChunk]:
        for begin in range(0, prompt_X.shape[0], max_batch_ablations):
            rows = slice(begin, begin + max_batch_ablations)
            prompt_K, latent_K, acts_KS = prompt_X[rows], latent_X[rows], acts_XS[rows]
            directions_KM = decoder_directions(directions_EM, latent_K, rescale)
            last_K = clean.last_B[prompt_K]
            if forward is not None:
                first = int(first_X[rows].min())
                reader_in_KM = ablation_suffix.reader_input(
                    forward,
                    prompt_K,
                    _ablated_start(plan, clean, prompt_K, acts_KS, directions_KM, first),
                    first,
                    last_K,
                )
                ablated_KY = read_effect_space(reader, reader_in_KM, effect_space)
            else:
                stream_KSM = clean.start_stream_BSM[prompt_K]
                deltas_KSM = ablation_deltas(acts_KS, directions_KM).to(stream_KSM.dtype)
                ablated_KY = ablated_reader_acts(
                    model,
                    plan,
                    reader,
                    stream_KSM,
                    deltas_KSM,
                    attention_mask_BS[prompt_K],
                    last_K,
                    effect_space,
                )
            yield AblationChunk(latent_K, clean.reader_acts_BY[prompt_K] - ablated_KY)

    return choice, chunks()


def _ablated_start(
    plan: AblationPlan,
    clean: CleanPass,
    prompt_K: Int[Tensor, " K"],
    acts_KS: Float[Tensor, "K S"],
    directions_KM: Float[Tensor, "K M"],
    first: int,
) -> Tensor:
    """The ablated stream entering the suffix forward's first step, from position ``first`` on."""
    stream_KSM = clean.start_stream_BSM[prompt_K, first:]
    deltas_KSM = ablation_deltas(acts_KS[:, first:], directions_KM).to(stream_KSM.dtype)
    if plan.shifts_stream:
        return stream_KSM - deltas_KSM
    # An attn_out ablation starts at that block's MLP: resid_mid = resid_pre + (attn_out - delta).
    attn_out_KSM = clean.streams[plan.ablator.name][prompt_K, first:]
    return stream_KSM + (attn_out_KSM - deltas_KSM)

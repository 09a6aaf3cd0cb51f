"""The paper's absorption criterion, with exact per-latent ablation instead of attribution.

"A is for Absorption" (its ``FeatureAbsorptionCalculator``) calls a probe true positive absorbed
when the letter's main latents are silent at the word, and among the latents firing there the one
whose ablation moves the metric most (by magnitude) lowers it, beats the runner-up by at least
``ablation_delta`` in magnitude, and has decoder cosine >= ``cosine`` with the probe. The metric is
the logit of the word's letter (" A" .. " Z") minus the mean logit of the other 25 at the last
token. The paper estimated each latent's effect with integrated-gradients attribution; here each
firing latent is removed (its activation times its decoder row subtracted at the word, the SAE's
error term kept) and the rest of the model is run: one batched forward from the hook per chunk of
(word, latent) rows, from the next block on for residual hooks.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.hook_points import HookPoint

from sae_hacking.ablation.sites import parse_site
from sae_hacking.first_letter.activations import tokenize
from sae_hacking.first_letter.saes import FoldedSae
from sae_hacking.first_letter.vocab import LETTERS, Prompt, answer

SILENT = 1e-8


def letter_token_ids(tokenizer: Any) -> list[int] | None:
    """The token of each answer " A" .. " Z", or None if any answer is not a single token."""
    ids = []
    for letter in LETTERS:
        pieces = tokenizer(answer(letter), add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            return None
        ids.append(int(pieces[0]))
    return ids


def logit_difference(
    logits_BV: Float[Tensor, "B V"], letters_B: Int[Tensor, " B"], letter_ids_C: Int[Tensor, " C"]
) -> Float[Tensor, " B"]:
    """Logit of each row's letter minus the mean logit of the other letters."""
    letter_logits_BC = logits_BV[:, letter_ids_C]
    own_B = letter_logits_BC.gather(1, letters_B[:, None]).squeeze(1)
    others_B = (letter_logits_BC.sum(1) - own_B) / (letter_ids_C.shape[0] - 1)
    return own_B - others_B


@dataclass(frozen=True)
class AblationVerdicts:
    """Per word: whether the paper's criterion calls it absorbed, and by which latent."""

    absorbed_T: Bool[Tensor, " T"]
    top_latent_T: Int[Tensor, " T"]  # -1 where no latent fired
    top_effect_T: Float[Tensor, " T"]


def _start_layer(hook_name: str) -> int | None:
    """The block a residual-stream hook's value enters, or None for other hooks."""
    try:
        site = parse_site(hook_name, "--sae-ids")
    except Exception:
        return None
    if site.kind == "resid_pre":
        return site.layer
    if site.kind == "resid_post":
        return site.layer + 1
    return None


@torch.no_grad()
def ablated_metrics(
    model: Any,
    hook_name: str,
    tokens_KS: Int[Tensor, "K S"],
    mask_KS: Int[Tensor, "K S"],
    position_K: Int[Tensor, " K"],
    delta_KM: Float[Tensor, "K M"],
    letters_K: Int[Tensor, " K"],
    letter_ids_C: Int[Tensor, " C"],
    stream_KSM: Float[Tensor, "K S M"] | None = None,
) -> Float[Tensor, " K"]:
    """The metric of each row with ``delta`` subtracted from the hook at the row's word position.

    With ``stream_KSM`` (the clean hook values, residual hooks only) the model runs from the next
    block on; without it, the whole model runs with the subtraction hooked in.
    """
    rows_K = torch.arange(tokens_KS.shape[0], device=tokens_KS.device)
    start = _start_layer(hook_name)
    if stream_KSM is not None and start is not None:
        stream_KSM = stream_KSM.clone()
        stream_KSM[rows_K, position_K] -= delta_KM.to(stream_KSM.dtype)
        logits_KSV = model(stream_KSM, start_at_layer=start, attention_mask=mask_KS)
    else:

        def subtract(acts: Tensor, hook: HookPoint) -> Tensor:
            acts = acts.clone()
            shape = acts.shape
            flat = acts.reshape(shape[0], shape[1], -1)
            flat[rows_K, position_K] -= delta_KM.to(acts.dtype)
            return flat.reshape(shape)

        logits_KSV = model.run_with_hooks(
            tokens_KS, attention_mask=mask_KS, fwd_hooks=[(hook_name, subtract)]
        )
    return logit_difference(logits_KSV[:, -1].float(), letters_K, letter_ids_C)


@torch.no_grad()
def paper_criterion(
    model: Any,
    sae: FoldedSae,
    prompts: Sequence[Prompt],
    template: str,
    hook_name: str,
    main: list[int],
    cosine_E: Float[Tensor, " E"],
    letter_ids: list[int],
    cosine_threshold: float,
    ablation_delta: float,
    max_rows: int = 256,
) -> AblationVerdicts:
    """Apply the criterion to each prompt (one letter's probe true positives)."""
    device = model.cfg.device
    letter_ids_C = torch.tensor(letter_ids, device=device)
    t = len(prompts)
    absorbed_T = torch.zeros(t, dtype=torch.bool)
    top_latent_T = torch.full((t,), -1, dtype=torch.long)
    top_effect_T = torch.zeros(t)
    fast = _start_layer(hook_name) is not None
    decoder_EM = sae.decoder_EM
    for begin in range(0, t, max(1, max_rows // 8)):
        chunk = prompts[begin : begin + max(1, max_rows // 8)]
        batch = tokenize(model.tokenizer, chunk, template)
        tokens_BS, mask_BS = batch.tokens_BS.to(device), batch.mask_BS.to(device)
        position_B = batch.position_B.to(device)
        letters_B = torch.tensor([p.letter for p in chunk], device=device)
        logits_BSV, cache = model.run_with_cache(
            tokens_BS, attention_mask=mask_BS, names_filter=[hook_name]
        )
        clean_B = logit_difference(logits_BSV[:, -1].float(), letters_B, letter_ids_C)
        hook_BSM = cache[hook_name]
        hook_BSM = hook_BSM.reshape(*hook_BSM.shape[:2], -1)
        rows_B = torch.arange(len(chunk), device=device)
        latents_BE = sae.encode(hook_BSM[rows_B, position_B])
        word_K, latent_K = (latents_BE > 0).nonzero(as_tuple=True)
        effect_K = torch.empty(word_K.shape[0], device=device)
        for start in range(0, word_K.shape[0], max_rows):
            w_R, l_R = word_K[start : start + max_rows], latent_K[start : start + max_rows]
            delta_RM = latents_BE[w_R, l_R, None] * decoder_EM[l_R]
            effect_K[start : start + max_rows] = (
                ablated_metrics(
                    model,
                    hook_name,
                    tokens_BS[w_R],
                    mask_BS[w_R],
                    position_B[w_R],
                    delta_RM,
                    letters_B[w_R],
                    letter_ids_C,
                    hook_BSM[w_R] if fast else None,
                )
                - clean_B[w_R]
            )
        main_silent_B = (
            (latents_BE[:, main] < SILENT).all(1)
            if main
            else torch.ones_like(clean_B, dtype=torch.bool)
        )
        for b in range(len(chunk)):
            mine = word_K == b
            if not mine.any():
                continue
            effects_R, latents_R = effect_K[mine], latent_K[mine]
            order_R = effects_R.abs().argsort(descending=True)
            first = float(effects_R[order_R[0]])
            second = float(effects_R[order_R[1]]) if order_R.shape[0] > 1 else 0.0
            top = int(latents_R[order_R[0]])
            top_latent_T[begin + b] = top
            top_effect_T[begin + b] = first
            absorbed_T[begin + b] = bool(
                main_silent_B[b]
                and first < 0
                and abs(first) - abs(second) >= ablation_delta
                and float(cosine_E[top]) >= cosine_threshold
            )
    return AblationVerdicts(absorbed_T, top_latent_T, top_effect_T)

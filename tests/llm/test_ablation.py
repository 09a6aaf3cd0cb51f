"""The batched ablation against the original algorithm: one full forward per ablated latent."""

from typing import Any

import pytest
import torch
from sae_lens import SAE, HookedSAETransformer
from torch import Tensor

from benchmarks.ablation_reference import reference_effects
from sae_hacking.ablation.batched import (
    batched_ablation_effects,
    check_linear_decoder,
    first_firing,
)
from sae_hacking.ablation.sites import plan_for
from sae_hacking.errors import UserInputError
from sae_hacking.llm import tiny_model, tiny_sae, tokenize_batch
from sae_hacking.llm.tokenizer import TINY_TEXT

K = 6
TEXTS = [
    "The snake slid under the stone wall.",
    "Seven students sat in the second row; none of them had read the chapter, and the teacher sighed.",
    "Rain fell all night.",
]


def fast_effects(
    model: HookedSAETransformer,
    ablator: SAE[Any],
    reader: SAE[Any],
    tokens_BS: Tensor,
    mask_BS: Tensor,
    counted_BS: Tensor,
    k: int,
    max_batch: int,
    transformer_lens_blocks: bool = False,
    effect_space: str = "latents",
) -> tuple[list[list[int]], dict[int, Tensor]]:
    plan = plan_for(ablator.cfg.metadata.hook_name, reader.cfg.metadata.hook_name)  # pyright: ignore[reportArgumentType]
    choice, chunks = batched_ablation_effects(
        model,
        plan,
        ablator,
        reader,
        tokens_BS,
        mask_BS,
        counted_BS,
        k,
        torch.ones(ablator.cfg.d_sae, dtype=torch.bool),
        torch.zeros(0, dtype=torch.long),
        max_batch,
        transformer_lens_blocks=transformer_lens_blocks,
        effect_space=effect_space,
    )
    chosen = [
        [int(i) for i, ok in zip(row, valid, strict=True) if ok]
        for row, valid in zip(choice.latents_BK, choice.valid_BK, strict=True)
    ]
    effects: dict[int, Tensor] = {}
    for chunk in chunks:
        for latent, effect_Y in zip(chunk.latents_K.tolist(), chunk.effects_KY, strict=True):
            effects[latent] = effects.get(latent, torch.zeros_like(effect_Y)) + effect_Y
    return chosen, effects


def assert_effects_match(ref: dict[int, Tensor], fast: dict[int, Tensor]) -> None:
    """Equal up to float noise, except for rare JumpReLU flips.

    The reference subtracts decode(clean) - decode(ablated) inside the SAE; the fast path subtracts
    a_i d_i directly. The two differ by ~1e-7 relative, and a reader latent whose pre-activation
    sits within that of its JumpReLU threshold can fire in one and not the other: that entry then
    differs by the whole threshold. Such flips are allowed in at most 0.5% of the entries.
    """
    assert ref.keys() == fast.keys()
    ref_LD = torch.stack([ref[i] for i in sorted(ref)])
    fast_LD = torch.stack([fast[i] for i in sorted(ref)])
    close_LD = torch.isclose(fast_LD, ref_LD, rtol=1e-3, atol=1e-4)
    assert (~close_LD).sum().item() <= max(1, int(0.005 * close_LD.numel()))
    assert (ref_LD != 0).any()


PAIRINGS = [
    ("blocks.1.hook_resid_post", "blocks.3.hook_resid_post"),
    ("blocks.1.hook_resid_pre", "blocks.2.hook_mlp_out"),
    ("blocks.1.hook_mlp_out", "blocks.2.hook_attn_out"),
    ("blocks.1.hook_attn_out", "blocks.3.hook_resid_pre"),
    ("blocks.2.hook_attn_out", "blocks.2.hook_resid_post"),
    ("blocks.2.hook_mlp_out", "blocks.2.hook_resid_post"),
    ("blocks.0.hook_resid_pre", "blocks.0.hook_mlp_out"),
]


@pytest.mark.parametrize(("ablator_hook", "reader_hook"), PAIRINGS)
def test_batched_ablation_matches_one_forward_per_latent_with_left_padding(
    tiny: HookedSAETransformer, ablator_hook: str, reader_hook: str
) -> None:
    ablator = tiny_sae(tiny, f"{ablator_hook}/jumprelu/256")
    reader = tiny_sae(tiny, f"{reader_hook}/jumprelu/256")
    batch = tokenize_batch(TEXTS, tiny.tokenizer, 64)  # pyright: ignore[reportArgumentType]
    assert (batch.attention_mask_BS == 0).any()  # left padding present
    args = (tiny, ablator, reader, batch.tokens_BS, batch.attention_mask_BS, batch.counted_BS, K)
    ref_chosen, ref = reference_effects(*args)
    fast_chosen, fast = fast_effects(*args, max_batch=4)
    assert [sorted(c) for c in fast_chosen] == [sorted(c) for c in ref_chosen]
    assert_effects_match(ref, fast)


def pairing_inputs(
    model: HookedSAETransformer, ablator_hook: str, reader_hook: str
) -> tuple[HookedSAETransformer, SAE[Any], SAE[Any], Tensor, Tensor, Tensor, int]:
    """Model, random JumpReLU SAEs at both hooks, and the left-padded test prompts."""
    ablator = tiny_sae(model, f"{ablator_hook}/jumprelu/256")
    reader = tiny_sae(model, f"{reader_hook}/jumprelu/256")
    batch = tokenize_batch(TEXTS, model.tokenizer, 64)  # pyright: ignore[reportArgumentType]
    return (model, ablator, reader, batch.tokens_BS, batch.attention_mask_BS, batch.counted_BS, K)


@pytest.mark.parametrize(("ablator_hook", "reader_hook"), [PAIRINGS[0], PAIRINGS[3]])
def test_transformer_lens_blocks_match_one_forward_per_latent(
    tiny: HookedSAETransformer, ablator_hook: str, reader_hook: str
) -> None:
    args = pairing_inputs(tiny, ablator_hook, reader_hook)
    _, ref = reference_effects(*args)
    _, fast = fast_effects(*args, max_batch=4, transformer_lens_blocks=True)
    assert_effects_match(ref, fast)


def test_architecture_without_gemma_blocks_falls_back_and_matches() -> None:
    # transformer-lens computes the tiny model identically under another architecture name, so
    # only the choice of forward changes.
    model = tiny_model()
    model.cfg.original_architecture = "LlamaForCausalLM"
    args = pairing_inputs(model, "blocks.1.hook_resid_post", "blocks.3.hook_mlp_out")
    _, ref = reference_effects(*args)
    _, fast = fast_effects(*args, max_batch=4)
    assert_effects_match(ref, fast)


def test_first_firing_ignores_pads_and_defaults_to_the_last_position() -> None:
    acts_KS = torch.tensor([[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    real_KS = torch.tensor([[False, True, True, True], [True] * 4, [True] * 4])
    assert first_firing(acts_KS, real_KS).tolist() == [2, 3, 3]


def test_topk_reader_and_chunk_size_do_not_change_effects(tiny: HookedSAETransformer) -> None:
    ablator = tiny_sae(tiny, "blocks.1.hook_resid_post/jumprelu/256")
    reader = tiny_sae(tiny, "blocks.2.hook_resid_post/topk/256")
    batch = tokenize_batch(TEXTS, tiny.tokenizer, 64)  # pyright: ignore[reportArgumentType]
    args = (tiny, ablator, reader, batch.tokens_BS, batch.attention_mask_BS, batch.counted_BS, K)
    _, ref = reference_effects(*args)
    _, one = fast_effects(*args, max_batch=1)
    _, many = fast_effects(*args, max_batch=1000)
    assert_effects_match(ref, one)
    assert_effects_match(one, many)


def test_padding_does_not_change_a_prompts_effects(tiny: HookedSAETransformer) -> None:
    ablator = tiny_sae(tiny, "blocks.1.hook_resid_post/jumprelu/256")
    reader = tiny_sae(tiny, "blocks.3.hook_mlp_out/jumprelu/256")
    short = TEXTS[2]
    alone = tokenize_batch([short], tiny.tokenizer, 64)  # pyright: ignore[reportArgumentType]
    padded = tokenize_batch([short, TINY_TEXT.splitlines()[1]], tiny.tokenizer, 64)  # pyright: ignore[reportArgumentType]
    _, a = fast_effects(
        tiny, ablator, reader, alone.tokens_BS, alone.attention_mask_BS, alone.counted_BS, K, 8
    )
    _, p = fast_effects(
        tiny,
        ablator,
        reader,
        padded.tokens_BS[:1],
        padded.attention_mask_BS[:1],
        padded.counted_BS[:1],
        K,
        8,
    )
    assert_effects_match(a, p)


@pytest.mark.parametrize(
    ("ablator_hook", "reader_hook", "flag"),
    [
        ("blocks.3.hook_resid_post", "blocks.2.hook_resid_post", "--reader-sae-id"),
        ("blocks.2.hook_resid_post", "blocks.3.hook_resid_pre", "--reader-sae-id"),
        ("blocks.2.hook_mlp_out", "blocks.2.hook_attn_out", "--reader-sae-id"),
        ("blocks.2.hook_resid_mid", "blocks.3.hook_resid_post", "--ablator-sae-id"),
        ("blocks.2.hook_resid_post", "blocks.3.attn.hook_z", "--reader-sae-id"),
    ],
)
def test_unsupported_or_misordered_hooks_are_refused_naming_the_flag(
    ablator_hook: str, reader_hook: str, flag: str
) -> None:
    with pytest.raises(UserInputError) as error:
        plan_for(ablator_hook, reader_hook)
    assert error.value.flag == flag
    assert "\n" not in str(error.value)


def test_runtime_normalizing_sae_is_refused(tiny: HookedSAETransformer) -> None:
    sae = tiny_sae(tiny, "blocks.1.hook_resid_post/jumprelu/64")
    sae.cfg.normalize_activations = "layer_norm"
    with pytest.raises(UserInputError, match="normalizes"):
        check_linear_decoder(sae, "--ablator-sae-id")


@pytest.mark.parametrize(
    ("space", "ablator_hook", "reader_hook"),
    [("preactivations", *PAIRINGS[2]), ("activations", *PAIRINGS[0])],
)
def test_every_effect_space_matches_one_forward_per_latent(
    tiny: HookedSAETransformer, space: str, ablator_hook: str, reader_hook: str
) -> None:
    args = pairing_inputs(tiny, ablator_hook, reader_hook)
    ref_chosen, ref = reference_effects(*args, effect_space=space)
    reader = args[2]
    width = reader.cfg.d_in if space == "activations" else reader.cfg.d_sae
    for transformer_lens_blocks in (False, True):
        chosen, fast = fast_effects(
            *args, 4, transformer_lens_blocks=transformer_lens_blocks, effect_space=space
        )
        assert [sorted(c) for c in chosen] == [sorted(c) for c in ref_chosen]
        # Neither space passes a threshold, so no JumpReLU flips: equal up to float noise.
        assert ref.keys() == fast.keys()
        for latent, effect_Y in ref.items():
            assert effect_Y.shape == (width,)
            torch.testing.assert_close(fast[latent], effect_Y, rtol=1e-3, atol=1e-4)

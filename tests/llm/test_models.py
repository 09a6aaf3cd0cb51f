import pytest
import torch
from sae_lens import HookedSAETransformer
from transformer_lens import HookedTransformerConfig

from sae_hacking.errors import UserInputError
from sae_hacking.llm import (
    hook_width,
    load_model,
    model_config,
    parse_dtype,
    stop_layer,
    tiny_model,
    tiny_tokenizer,
)
from sae_hacking.llm.models import random_model

HOOK = "blocks.2.hook_resid_post"


def run_to_hook(model: HookedSAETransformer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = tiny_tokenizer()(texts, padding=True, return_tensors="pt")
    _, cache = model.run_with_cache(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        names_filter=[HOOK],
        stop_at_layer=stop_layer(HOOK),
    )
    return cache[HOOK], batch["attention_mask"]


def test_tiny_model_is_the_same_for_the_same_seed_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    first, second = tiny_model(seed=3, n_layers=2), tiny_model(seed=3, n_layers=2)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def test_left_padded_rows_equal_the_same_prompt_run_alone(tiny: HookedSAETransformer) -> None:
    texts = ["The snake slid under the stone wall.", "Rain fell."]
    together_BSM, mask_BS = run_to_hook(tiny, texts)
    for row, text in enumerate(texts):
        alone_1SM, _ = run_to_hook(tiny, [text])
        length = int(mask_BS[row].sum())
        torch.testing.assert_close(together_BSM[row, -length:], alone_1SM[0], atol=1e-4, rtol=1e-4)


def test_stop_at_layer_gives_the_hook_of_a_full_run(tiny: HookedSAETransformer) -> None:
    tokens = tiny_tokenizer()(["Seven students sat in the second row."], return_tensors="pt")[
        "input_ids"
    ]
    _, full = tiny.run_with_cache(tokens, names_filter=[HOOK])
    partial, _ = run_to_hook(tiny, ["Seven students sat in the second row."])
    torch.testing.assert_close(partial, full[HOOK])


def test_tiny_config_is_gemma_2_shaped(tiny: HookedSAETransformer) -> None:
    cfg = tiny.cfg
    assert cfg.normalization_type == "RMS" and cfg.use_normalization_before_and_after
    assert (
        cfg.gated_mlp and cfg.n_key_value_heads is not None and cfg.n_key_value_heads < cfg.n_heads
    )
    assert cfg.d_vocab == len(tiny_tokenizer())
    assert tiny.tokenizer is not None and tiny.tokenizer.padding_side == "left"


def test_hook_width_knows_gemma_hooks_and_refuses_others() -> None:
    cfg = model_config("google/gemma-2-2b")
    assert hook_width(cfg, "blocks.20.hook_resid_post") == 2304
    assert hook_width(cfg, "blocks.20.mlp.hook_post") == 9216
    assert hook_width(cfg, "blocks.20.attn.hook_z") == 2048
    assert hook_width(cfg, "blocks.26.hook_resid_post") is None
    assert hook_width(cfg, "blocks.3.hook_nonsense") is None


def test_unknown_model_name_is_a_one_line_error() -> None:
    with pytest.raises(UserInputError, match="--model: 'gpt-17' is not a transformer-lens model"):
        load_model("gpt-17")


def test_real_model_offline_fails_at_the_download_with_a_hint() -> None:
    with pytest.raises(UserInputError, match=r"cannot load 'google/gemma-2-2b'.*HF_TOKEN"):
        load_model("google/gemma-2-2b")


def test_parse_dtype_refuses_unknown_names() -> None:
    assert parse_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(UserInputError, match="--dtype"):
        parse_dtype("float8")


def test_random_model_name_gives_the_real_shapes_offline_with_no_tokenizer_of_its_own() -> None:
    real = model_config("google/gemma-2-2b")
    shaped = model_config("random:google/gemma-2-2b")
    for field in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "d_vocab", "n_ctx"):
        assert getattr(shaped, field) == getattr(real, field), field
    assert shaped.tokenizer_name is None  # nothing to fetch from the hub
    assert shaped.model_name == "random:gemma-2-2b"


def test_random_model_is_deterministic_runs_and_leaves_global_rng_alone() -> None:
    # A one-layer, narrow cut of the Gemma-2-2b config keeps the test small.
    fields = model_config("random:google/gemma-2-2b").to_dict()
    fields.update(n_layers=1, d_model=64, d_head=16, n_heads=4, n_key_value_heads=2, d_mlp=128)
    fields.update(attn_types=["local"], d_vocab=4096, d_vocab_out=4096, rotary_dim=16)
    cfg = HookedTransformerConfig.from_dict(fields)
    state = torch.random.get_rng_state()
    first, second = random_model(cfg, "cpu", torch.float32), random_model(cfg, "cpu", torch.float32)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    assert first.tokenizer is not None
    tokens = first.to_tokens(["the cat sat"])
    assert int(tokens.max()) < cfg.d_vocab
    logits = first(tokens)
    assert logits.shape == (1, tokens.shape[1], cfg.d_vocab) and torch.isfinite(logits).all()

"""Gemma-2 blocks from a HookedTransformer's weights against transformer-lens's own blocks."""

import pytest
import torch
import torch.nn.functional as F

from sae_hacking.ablation.gemma_blocks import (
    block_forward,
    block_weights,
    gelu_tanh,
    unsupported_reason,
)
from sae_hacking.llm import tiny_model
from sae_hacking.llm.models import tiny_config


def padded_inputs(
    d_model: int, n_pos: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random streams for three prompts, two of them left-padded, longer than the local window."""
    generator = torch.Generator().manual_seed(1)
    resid_BSM = torch.randn(3, n_pos, d_model, generator=generator).to(dtype)
    mask_BS = torch.ones(3, n_pos, dtype=torch.long)
    mask_BS[1, :7] = 0
    mask_BS[2, :20] = 0
    return resid_BSM, mask_BS


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layer", [0, 1], ids=["local", "global"])
def test_block_matches_transformer_lens_block_at_real_positions(
    layer: int, dtype: torch.dtype
) -> None:
    model = tiny_model(dtype=dtype, n_layers=2)
    window = model.cfg.window_size
    assert isinstance(window, int)
    assert model.blocks[layer].attn.attn_type == ("local" if layer == 0 else "global")
    resid_BSM, mask_BS = padded_inputs(model.cfg.d_model, window + 18, dtype)
    with torch.no_grad():
        expected_BSM = model.blocks[layer](resid_BSM, attention_mask=mask_BS)
        got_BSM = block_forward(block_weights(model, layer), resid_BSM, mask_BS)
    real_BS = mask_BS.bool()
    # Pad positions are never attended to; transformer-lens leaves them at NaN-cleaned garbage.
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    torch.testing.assert_close(
        got_BSM[real_BS].float(), expected_BSM[real_BS].float(), atol=tolerance, rtol=tolerance
    )
    assert torch.isfinite(got_BSM).all()


def test_gelu_tanh_matches_torch_within_rounding() -> None:
    x = torch.linspace(-12.0, 12.0, 10_001)
    torch.testing.assert_close(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=2e-6, rtol=1e-5)


def test_tiny_and_gemma_2_configs_are_supported_and_others_named() -> None:
    assert unsupported_reason(tiny_config()) is None
    cfg = tiny_config()
    cfg.use_qk_norm = True
    reason = unsupported_reason(cfg)
    assert reason is not None and "use_qk_norm" in reason and "\n" not in reason
    cfg = tiny_config()
    cfg.original_architecture = "LlamaForCausalLM"
    assert "not Gemma-2" in (unsupported_reason(cfg) or "")

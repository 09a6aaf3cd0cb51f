from pathlib import Path
from typing import Any

import pytest
import torch
from sae_lens import SAE, HookedSAETransformer

from sae_hacking.errors import UserInputError
from sae_hacking.llm import (
    DEFAULT_ABLATOR_ID,
    DEFAULT_RELEASE,
    TINY_ABLATOR_ID,
    check_pairing,
    firing_latents,
    hook_activations,
    load_sae,
    model_config,
    random_sae,
    resolve_sae,
)
from sae_hacking.llm.saes import SaeKind
from sae_hacking.llm.tokenizer import TINY_TEXT

HELD_OUT = [
    "A different text about gardens, rivers, numbers like 1234 and the letter S.",
    "Another held-out prompt: the quick brown fox jumps over the lazy dog.",
]


def test_tiny_jumprelu_sae_is_calibrated_to_a_realistic_l0(
    tiny: HookedSAETransformer, tiny_ablator: SAE[Any]
) -> None:
    acts_TE = tiny_ablator.encode(hook_activations(tiny, HELD_OUT, "blocks.3.hook_resid_post"))
    l0 = (acts_TE > 0).sum(1).float().mean().item()
    assert 8 <= l0 <= 64
    assert (acts_TE > 0).any(0).sum() > 50  # not a handful of latents firing everywhere


def test_tiny_sae_is_the_same_for_the_same_id(
    tiny: HookedSAETransformer, tiny_ablator: SAE[Any]
) -> None:
    again = resolve_sae(tiny, "tiny", TINY_ABLATOR_ID)
    assert torch.equal(again.state_dict()["threshold"], tiny_ablator.state_dict()["threshold"])
    assert again.cfg.metadata.hook_name == "blocks.3.hook_resid_post"


def test_random_topk_sae_fires_at_most_k(tiny: HookedSAETransformer) -> None:
    sample_TM = hook_activations(tiny, TINY_TEXT.splitlines()[:8], "blocks.1.hook_mlp_out")
    sae = random_sae(
        "topk",
        sample_TM,
        128,
        "blocks.1.hook_mlp_out",
        torch.Generator().manual_seed(1),
        target_l0=10.0,
    )
    assert ((sae.encode(sample_TM) > 0).sum(1) <= 10).all()


def test_sae_saved_by_sae_lens_loads_from_its_directory(
    tiny: HookedSAETransformer, tiny_ablator: SAE[Any], tmp_path: Path
) -> None:
    tiny_ablator.save_model(tmp_path)
    loaded = resolve_sae(tiny, str(tmp_path), "")
    assert torch.equal(loaded.W_enc, tiny_ablator.W_enc)
    assert torch.equal(loaded.state_dict()["threshold"], tiny_ablator.state_dict()["threshold"])


def test_sae_of_another_width_is_refused_before_any_work(tiny: HookedSAETransformer) -> None:
    sample_TM = torch.randn(50, 32)
    sae = random_sae("jumprelu", sample_TM, 16, "blocks.3.hook_resid_post", torch.Generator())
    with pytest.raises(UserInputError, match="reads 32 dimensions but 'tiny' is 64 wide"):
        check_pairing(tiny.cfg, sae)


def test_sae_on_a_hook_the_model_lacks_is_refused(tiny: HookedSAETransformer) -> None:
    sae = random_sae(
        "jumprelu", torch.randn(50, 64), 16, "blocks.9.hook_resid_post", torch.Generator()
    )
    with pytest.raises(
        UserInputError, match=r"hook 'blocks.9.hook_resid_post', which model 'tiny'"
    ):
        check_pairing(tiny.cfg, sae)


def test_gemma_scope_sae_pairs_only_with_gemma_width() -> None:
    sae = random_sae(
        "jumprelu", torch.randn(20, 2304), 8, "blocks.20.hook_resid_post", torch.Generator()
    )
    assert check_pairing(model_config("google/gemma-2-2b"), sae) == "blocks.20.hook_resid_post"


def test_unknown_sae_id_in_a_release_is_refused_with_a_suggestion() -> None:
    with pytest.raises(
        UserInputError, match=r"not an SAE of release.*did you mean layer_20/width_65k/canonical"
    ):
        load_sae(DEFAULT_RELEASE, "layer_20/width_65k/canonicl")


def test_unknown_release_is_refused() -> None:
    with pytest.raises(UserInputError, match="--sae-release: 'gemma-scope-2b-pt-rs-canonical'"):
        load_sae("gemma-scope-2b-pt-rs-canonical", DEFAULT_ABLATOR_ID)


def test_real_release_offline_fails_at_the_download_with_a_hint() -> None:
    with pytest.raises(UserInputError, match=r"cannot load .*HF_HUB_OFFLINE"):
        load_sae(DEFAULT_RELEASE, DEFAULT_ABLATOR_ID)


def test_bad_tiny_sae_id_is_refused(tiny: HookedSAETransformer) -> None:
    with pytest.raises(UserInputError, match="not a tiny SAE id"):
        resolve_sae(tiny, "tiny", "blocks.3.hook_resid_post/relu/64")


@pytest.mark.parametrize("kind", ["jumprelu", "topk"])
def test_firing_latents_are_exactly_where_encode_is_positive(kind: SaeKind) -> None:
    generator = torch.Generator().manual_seed(3)
    sample_TM = torch.randn(300, 24, generator=generator)
    sae = random_sae(kind, sample_TM, 96, "blocks.3.hook_resid_post", generator)
    if kind == "jumprelu":
        state = sae.state_dict()
        state["threshold"][:20] = -torch.rand(20, generator=generator)  # only the ReLU decides
        state["b_enc"].copy_(torch.randn(96, generator=generator))
        sae.load_state_dict(state)
    x_TM = torch.randn(500, 24, generator=generator)
    expected_TE = sae.encode(x_TM) > 0
    assert torch.equal(firing_latents(sae, x_TM), expected_TE)
    assert 0 < expected_TE.float().mean() < 0.5

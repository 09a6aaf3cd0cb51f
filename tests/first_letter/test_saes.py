"""Loading the run's SAEs: Gemma Scope by release and id up to the download, local directories."""

from pathlib import Path

import pytest

from sae_hacking.errors import UserInputError
from sae_hacking.first_letter.config import DEFAULT_RELEASE, DEFAULT_SAE_IDS
from sae_hacking.first_letter.saes import load_one, load_saes
from sae_hacking.llm.models import tiny_model
from sae_hacking.llm.saes import tiny_sae


def test_gemma_scope_ids_pass_the_registry_and_stop_at_the_download() -> None:
    with pytest.raises(UserInputError, match="cannot load 'gemma-scope-2b-pt-res-canonical'"):
        load_one(None, DEFAULT_RELEASE, DEFAULT_SAE_IDS[0], "cpu")
    with pytest.raises(UserInputError, match="did you mean"):
        load_one(None, DEFAULT_RELEASE, "layer_12/width_16k/canonicall", "cpu")


def test_saes_in_a_directory_load_by_id_and_fold(tmp_path: Path) -> None:
    model = tiny_model()
    for name in ("a", "b"):
        tiny_sae(
            model, f"blocks.2.hook_resid_post/jumprelu/{64 if name == 'a' else 96}"
        ).save_model(tmp_path / name)
    saes, hook = load_saes(model, str(tmp_path), ("a", "b"), "cpu")
    assert hook == "blocks.2.hook_resid_post"
    assert [s.width for s in saes] == [64, 96]
    for sae in saes:
        norms = sae.decoder_EM.norm(dim=1)
        assert float((norms - 1).abs().max()) < 1e-5

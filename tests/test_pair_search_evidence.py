"""The pair report's evidence: decoder rows read straight from disk."""

from pathlib import Path

import torch

from sae_hacking.llm import TINY_ABLATOR_ID, tiny_model, tiny_sae
from sae_hacking.pair_search.evidence import decoder_rows


def test_decoder_rows_read_from_a_directory_equal_the_loaded_sae(tmp_path: Path) -> None:
    tiny_sae(tiny_model(), TINY_ABLATOR_ID).save_model(tmp_path / "sae")
    latents = [5, 0, 511, 5]
    from_disk = decoder_rows({"release": str(tmp_path / "sae"), "id": "x"}, "tiny", latents)
    loaded = decoder_rows({"release": "tiny", "id": TINY_ABLATOR_ID}, "tiny", latents)
    assert from_disk.shape == (4, 64) and torch.equal(from_disk, loaded)

"""The pair report's evidence: decoder rows read straight from disk, and the truth it marks against."""

import json
from pathlib import Path

import pytest
import torch

from sae_hacking.errors import UserInputError
from sae_hacking.llm import TINY_ABLATOR_ID, tiny_model, tiny_sae
from sae_hacking.pair_search.evidence import decoder_rows, read_truth, score_against


def test_decoder_rows_read_from_a_directory_equal_the_loaded_sae(tmp_path: Path) -> None:
    tiny_sae(tiny_model(), TINY_ABLATOR_ID).save_model(tmp_path / "sae")
    latents = [5, 0, 511, 5]
    from_disk = decoder_rows({"release": str(tmp_path / "sae"), "id": "x"}, "tiny", latents)
    loaded = decoder_rows({"release": "tiny", "id": TINY_ABLATOR_ID}, "tiny", latents)
    assert from_disk.shape == (4, 64) and torch.equal(from_disk, loaded)


def test_truth_pairs_are_unordered_and_scored_by_precision_and_recall(tmp_path: Path) -> None:
    path = tmp_path / "truth.json"
    pairs = [{"letter_latent": 3, "word_latent": 40}, {"letter_latent": 50, "word_latent": 7}]
    path.write_text(json.dumps({"absorbed_pairs": pairs}), encoding="utf-8")
    truth = read_truth(path)
    assert truth == {(3, 40), (7, 50)}
    scored = score_against([(40, 3), (1, 2), (3, 40)], truth)
    assert (scored["reported"], scored["true_reported"]) == (2, 1)
    assert (scored["precision"], scored["recall"]) == (0.5, 0.5)


@pytest.mark.parametrize(
    "text",
    [
        "[",
        "[]",
        '{"absorbed_pairs": {}}',
        '{"absorbed_pairs": [{"letter_latent": -1, "word_latent": 2}]}',
    ],
)
def test_a_truth_file_that_does_not_parse_is_refused_naming_the_flag(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "truth.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserInputError, match="--truth"):
        read_truth(path)

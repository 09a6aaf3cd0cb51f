"""The rotated planted model computes what the planted model computes, with no letter on an axis."""

import copy
from dataclasses import replace

import pytest
import torch

from sae_hacking.first_letter.plant import DEFAULT_PLAN, rotate_residual, words_to_absorb
from sae_hacking.llm.planted import LETTERS, PlantedModel, PlantedSpec, build_planted_model


@pytest.fixture(scope="module")
def planted() -> PlantedModel:
    return build_planted_model(PlantedSpec(words_per_letter=2, d_model=64))


def test_rotating_the_residual_stream_changes_no_logit_and_moves_the_letters_off_the_axes(
    planted: PlantedModel,
) -> None:
    rotated = rotate_residual(replace(planted, model=copy.deepcopy(planted.model)), seed=3)
    first, second = planted.words[0], planted.words[5]
    text = f"\n {first} has the first letter: {first[0].upper()}\n {second} has the first letter:"
    tokens_BS = torch.tensor(planted.tokenizer([text])["input_ids"])
    with torch.no_grad():
        expected = planted.model(tokens_BS)
        got = rotated.model(tokens_BS)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert rotated.letter_dirs_AM.abs().max() < 0.9
    torch.testing.assert_close(
        rotated.letter_dirs_AM @ rotated.letter_dirs_AM.T, torch.eye(26), atol=1e-5, rtol=0
    )
    embedding_M = rotated.model.embed.W_E[rotated.word_token_ids[0]].detach()
    letter_M = rotated.letter_dirs_AM[LETTERS.index(rotated.word_letters[0])]
    assert float(embedding_M @ letter_M) == pytest.approx(planted.spec.letter_norm, abs=1e-4)


def test_the_plan_picks_every_nth_word_of_a_letter(planted: PlantedModel) -> None:
    absorption = words_to_absorb(planted, DEFAULT_PLAN)
    b_words = [w for w in planted.words if w.startswith("b")]
    assert [absorption.get(w) for w in b_words] == [1.0, None]
    assert sum(w.startswith("g") for w in absorption) == 2

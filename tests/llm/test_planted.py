"""The planted model: known features, a working first-letter circuit, exact planted absorption."""

from pathlib import Path

import pytest
import torch

from sae_hacking.llm.models import load_model, model_config
from sae_hacking.llm.planted import (
    LETTERS,
    PlantedModel,
    absorbing_sae,
    build_planted_model,
    save_planted,
)


@pytest.fixture(scope="module")
def planted() -> PlantedModel:
    return build_planted_model()


def prompt(planted: PlantedModel, example: int, query: int) -> str:
    solved = f"{planted.words[example]} has the first letter: {planted.word_letters[example]}"
    return f"{solved}\n{planted.words[query]} has the first letter:"


def test_every_word_is_one_alphabetic_token(planted: PlantedModel) -> None:
    for word, token_id in zip(planted.words, planted.word_token_ids, strict=True):
        ids = planted.tokenizer(word)["input_ids"]
        assert ids == [planted.tokenizer.bos_token_id, token_id]
        assert planted.tokenizer.convert_ids_to_tokens(token_id) == f"▁{word}"
        assert word.isalpha()


def test_the_model_predicts_each_words_first_letter(planted: PlantedModel) -> None:
    n = len(planted.words)
    prompts = [prompt(planted, (i + 11) % n, i) for i in range(n)]
    tokens = planted.tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = planted.model(tokens["input_ids"], attention_mask=tokens["attention_mask"])
    predicted = logits[:, -1].argmax(dim=-1).tolist()
    expected = [planted.letter_token_ids[LETTERS.index(w)] for w in planted.word_letters]
    assert predicted == expected


def test_planted_absorption_moves_the_letter_into_the_word_latent(planted: PlantedModel) -> None:
    full, half = planted.words[0], planted.words[1]
    built = absorbing_sae(planted, {full: 1.0, half: 0.5})
    letter = built.letter_latents[planted.word_letters[0]]
    x_BM = planted.model.W_E[[planted.word_token_ids[0], planted.word_token_ids[1]]]
    x_BM = x_BM + planted.model.W_pos[1]
    acts_BE = built.sae.encode(x_BM)
    norm = planted.spec.letter_norm
    assert acts_BE[0, letter].item() == 0.0  # silenced on the fully absorbing word
    assert acts_BE[1, letter].item() == pytest.approx(0.5 * norm, abs=1e-4)
    assert int((acts_BE > 0).sum()) == 3  # the two word latents and the half letter, nothing else
    # The reconstruction's letter part is intact: the word latent carries the missing share.
    recon_BM = built.sae.decode(acts_BE)
    letter_dir_M = planted.letter_dirs_AM[LETTERS.index(planted.word_letters[0])]
    assert torch.allclose(recon_BM @ letter_dir_M, torch.full((2,), norm), atol=1e-4)
    assert built.absorbed_pairs == [
        (letter, built.word_latents[full], 1.0),
        (letter, built.word_latents[half], 0.5),
    ]


def test_a_saved_planted_model_loads_as_a_model_directory(
    planted: PlantedModel, tmp_path: Path
) -> None:
    save_planted(planted, tmp_path)
    assert model_config(str(tmp_path)).d_model == planted.spec.d_model
    loaded = load_model(str(tmp_path))
    tokens = planted.tokenizer([prompt(planted, 3, 50)], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(loaded(tokens), planted.model(tokens))
    assert loaded.tokenizer is not None
    assert loaded.tokenizer(planted.words[5])["input_ids"] == [
        planted.tokenizer.bos_token_id,
        planted.word_token_ids[5],
    ]


def test_a_damaged_model_directory_is_a_one_line_error(tmp_path: Path) -> None:
    from sae_hacking.errors import UserInputError
    from sae_hacking.llm.planted import MODEL_CONFIG_FILE

    (tmp_path / MODEL_CONFIG_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(UserInputError, match=r"--model: .* is not a readable model config"):
        load_model(str(tmp_path))

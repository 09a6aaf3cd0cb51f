from pathlib import Path

from transformers import AutoTokenizer

from sae_hacking.llm import tiny_tokenizer, train_tiny_tokenizer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tiny_tokenizer"
PROMPTS = ["The snake sat on the wall.", "Zebra ☃ 42", "a"]


def test_committed_fixture_reloads_offline_and_matches_a_fresh_training() -> None:
    committed = AutoTokenizer.from_pretrained(str(FIXTURE))
    fresh = train_tiny_tokenizer()
    assert committed.get_vocab() == fresh.get_vocab()
    assert committed(PROMPTS)["input_ids"] == fresh(PROMPTS)["input_ids"]


def test_tiny_tokenizer_pads_left_and_starts_with_bos() -> None:
    tok = tiny_tokenizer()
    batch = tok(PROMPTS, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert tok.padding_side == "left"
    assert (ids[:, -1] != tok.pad_token_id).all()
    for row, row_mask in zip(ids, mask, strict=True):
        first_real = int(row_mask.argmax())
        assert row[first_real] == tok.bos_token_id
        assert (row[:first_real] == tok.pad_token_id).all()


def test_tiny_tokenizer_round_trips_unseen_characters_through_byte_fallback() -> None:
    tok = tiny_tokenizer()
    for text in PROMPTS:
        assert tok.decode(tok(text)["input_ids"], skip_special_tokens=True) == text

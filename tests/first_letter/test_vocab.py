"""Words, splits and prompts of the first-letter task, and finding the word's token."""

import random

from sae_hacking.first_letter.activations import tokenize
from sae_hacking.first_letter.config import TEMPLATE
from sae_hacking.first_letter.vocab import (
    alphabetic_words,
    build_prompts,
    first_letter,
    is_alphabetic,
    split_words,
)
from sae_hacking.llm.tokenizer import tiny_tokenizer


def test_alphabetic_means_ascii_letters_after_at_most_one_space() -> None:
    assert is_alphabetic("cat") and is_alphabetic(" Cat")
    assert not any(is_alphabetic(t) for t in ("", " ", "  cat", "ca t", "café", "c4t", "<0x41>"))
    assert first_letter(" Zebra") == 25


def test_the_split_shares_no_word_and_prompts_use_their_own_split() -> None:
    words = [f"w{chr(97 + i % 26)}{i}" for i in range(100)]
    train, test = split_words(words, 0.8, random.Random(0))
    assert len(train) == 80 and len(test) == 20 and not set(train) & set(test)
    prompts = build_prompts(test, TEMPLATE, 5, random.Random(1))
    for prompt in prompts:
        lines = prompt.text.split("\n")
        assert lines[0] == "" and len(lines) == 7
        assert lines[-1] == TEMPLATE.format(word=prompt.word)
        for line in lines[1:-1]:
            example = line.split(" has the first letter:")[0]
            assert example in test and example != prompt.word
            assert line.endswith(": " + example[0].upper())


def test_the_word_position_holds_the_word_token() -> None:
    tokenizer = tiny_tokenizer()
    words = alphabetic_words(tokenizer)
    assert " the" in words
    prompts = build_prompts(words[100:140], TEMPLATE, 4, random.Random(0))
    batch = tokenize(tokenizer, prompts, TEMPLATE)
    assert batch.found_B.float().mean() > 0.5
    for b in batch.found_B.nonzero().flatten().tolist():
        token_id = int(batch.tokens_BS[b, batch.position_B[b]])
        assert str(tokenizer.decode([token_id])).strip() == prompts[b].word.strip()

"""The words of the task and their prompts: alphabetic tokens, a train/test split, ICL prompts.

As in "A is for Absorption" and SAEBench: every alphabetic token of the tokenizer (one leading
space allowed) is a word; a word's prompt is a few solved examples of the template drawn from its
own split, then the template with the word, e.g. ``\\n cat has the first letter: C\\n dog has the
first letter:``. The activation is read at the word's token.
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sae_hacking.errors import UserInputError

LETTERS = "abcdefghijklmnopqrstuvwxyz"
SEPARATOR = "\n"


def is_alphabetic(text: str) -> bool:
    """True for ASCII letters with at most one leading space (SAEBench's ``get_alpha_tokens``)."""
    word = text[1:] if text.startswith(" ") else text
    return len(word) > 0 and all(c in LETTERS or c in LETTERS.upper() for c in word)


def token_text(tokenizer: Any, token: str) -> str:
    """A vocabulary entry as text; a SentencePiece leading ``▁`` always reads as a space."""
    text = tokenizer.convert_tokens_to_string([token])
    if token.startswith("▁") and not text.startswith(" "):
        text = " " + text
    return text


def alphabetic_words(tokenizer: Any) -> list[str]:
    """Every alphabetic token of the tokenizer as text, in vocabulary id order."""
    words = []
    for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        text = token_text(tokenizer, token)
        if is_alphabetic(text):
            words.append(text)
    return list(dict.fromkeys(words))


def first_letter(word: str) -> int:
    """The index (0-25) of a word's first letter."""
    return LETTERS.index(word.strip()[0].lower())


def answer(word: str) -> str:
    """What follows the template for a solved example: a space and the capital first letter."""
    return " " + word.strip()[0].upper()


@dataclass(frozen=True)
class Prompt:
    """One word's prompt and the index of its first letter."""

    word: str
    text: str
    letter: int


def split_words(
    words: Sequence[str], train_fraction: float, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Shuffle, then the first ``train_fraction`` train and the rest test: no word in both."""
    shuffled = rng.sample(list(words), len(words))
    cut = int(len(shuffled) * train_fraction)
    return shuffled[:cut], shuffled[cut:]


def icl_prompt(
    word: str, examples: Sequence[str], template: str, n_examples: int, rng: random.Random
) -> Prompt:
    """``n_examples`` solved examples (never the word itself) then the word's own template."""
    pool = [e for e in examples if e != word]
    chosen = rng.sample(pool, min(n_examples, len(pool)))
    solved = [template.format(word=e) + answer(e) for e in chosen]
    text = SEPARATOR + SEPARATOR.join([*solved, template.format(word=word)])
    return Prompt(word, text, first_letter(word))


def build_prompts(
    words: Sequence[str], template: str, n_examples: int, rng: random.Random
) -> list[Prompt]:
    """One prompt per word, its examples drawn from the same words (its own split)."""
    return [icl_prompt(w, words, template, n_examples, rng) for w in words]


def task_words(tokenizer: Any, max_words: int | None, rng: random.Random) -> list[str]:
    """The alphabetic words, a random subset of ``max_words`` if given; an error if there are none."""
    words = alphabetic_words(tokenizer)
    if len(words) < 2:
        raise UserInputError(
            "--model",
            f"the tokenizer has {len(words)} alphabetic tokens; the first-letter task needs words",
        )
    if max_words is not None and len(words) > max_words:
        words = rng.sample(words, max_words)
    return words

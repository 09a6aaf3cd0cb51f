"""A small Gemma-style tokenizer, trained in-process, for the offline ``tiny`` model.

No package ships a tokenizer file, and Gemma's own needs the hub. A byte-fallback BPE with Gemma's
normalizer and special-token ids trains here in well under a second and behaves like Gemma's
(left padding, a BOS token first), so every script can run offline.
"""

import functools
import json

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import GemmaTokenizer

TINY_VOCAB_SIZE = 1024
SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
BYTE_TOKENS = tuple(f"<0x{value:02X}>" for value in range(256))

TINY_TEXT = """\
The snake slid under the stone wall and waited for the sun to warm the garden.
She started the story with a short sentence, then spent six pages on the summer storm.
Seven students sat in the second row; none of them had read the assigned chapter.
A small boat sailed south along the coast, past the lighthouse and the old fish market.
The scientist measured the signal twice, because the first reading seemed too strong.
In 1998 the city opened a new station, and by 2004 it served 30,000 riders a day.
Dogs bark, cats purr, birds sing, and the neighbour's parrot repeats everything it hears.
Paris is the capital of France; Berlin is the capital of Germany; Rome is the capital of Italy.
He wrote the function in Python: def add(a, b): return a + b, and the tests passed.
Water boils at 100 degrees Celsius at sea level, but at a lower temperature on a mountain.
The committee will meet on Monday, Wednesday and Friday until the budget is approved.
Her grandmother kept bees, grew tomatoes, and never once missed the Sunday market.
Light travels faster than sound, which is why we see lightning before we hear thunder.
The model predicts the next token from the tokens before it, one position at a time.
A sparse autoencoder writes each activation as a sum of a few directions from a large dictionary.
Some latents fire on the letter S at the start of a word; others fire on whole words like snake.
When a child feature absorbs its parent, the parent latent stays silent where it should fire.
The train to Oxford leaves at 9:15 from platform 4, and the return ticket costs 23 pounds.
Mathematics asks what must be true; physics asks what is true; engineering asks what will work.
The library closes early on holidays, so please return your books before four o'clock.
Quietly, the orchestra tuned their instruments while the audience searched for their seats.
Rain fell all night, and in the morning the river had risen above the wooden bridge.
"Where are you going?" she asked. "To the shop," he said, "we need bread, milk and eggs."
The recipe needs two cups of flour, one egg, a pinch of salt and a spoon of sugar.
Astronomers found a planet that orbits its star every eleven days at a distance of 0.05 AU.
Every morning the baker opens at six, and by seven the first loaves are already sold.
The old computer had 640 kilobytes of memory, which was once thought to be enough.
Children learn languages by listening, copying, guessing and being gently corrected.
The museum shows paintings, sculptures, maps, coins and a skeleton of a large whale.
Snow covered the hills, the roads were closed, and the school sent everyone home at noon.
"""


def train_tiny_tokenizer(
    text: str = TINY_TEXT, vocab_size: int = TINY_VOCAB_SIZE
) -> GemmaTokenizer:
    """Train a byte-fallback BPE on ``text`` and wrap it as a left-padding, BOS-adding GemmaTokenizer."""
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Gemma's layout: spaces become "▁" and stay attached to the following word piece.
    bpe.normalizer = normalizers.Replace(" ", "▁")
    bpe.pre_tokenizer = pre_tokenizers.Split(pattern="▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[*SPECIAL_TOKENS, *BYTE_TOKENS],
        show_progress=False,
    )
    bpe.train_from_iterator(text.splitlines(), trainer=trainer)
    state = json.loads(bpe.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    merges = [tuple(pair) for pair in state["model"]["merges"]]
    # transformer-lens reads name_or_path from a tokenizer's init kwargs; give it one. transformers
    # annotates merges as strings, but the tokenizers backend it hands them to wants pairs.
    return GemmaTokenizer(
        vocab=vocab,
        merges=merges,  # pyright: ignore[reportArgumentType]
        add_bos_token=True,
        padding_side="left",
        name_or_path="tiny",
    )


@functools.cache
def tiny_tokenizer() -> GemmaTokenizer:
    """The tokenizer of the ``tiny`` model (trained once per process; the same as the test fixture)."""
    return train_tiny_tokenizer()

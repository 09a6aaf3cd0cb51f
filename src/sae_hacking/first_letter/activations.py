"""Prompts through the model: token batches with the word's position, and the hook's activation there."""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from rich.progress import Progress
from torch import Tensor

from sae_hacking.first_letter.vocab import Prompt, token_text
from sae_hacking.llm.models import stop_layer


@dataclass(frozen=True)
class TokenBatch:
    """Left-padded prompts, each word's position, and whether that position holds the word."""

    tokens_BS: Int[Tensor, "B S"]
    mask_BS: Int[Tensor, "B S"]
    position_B: Int[Tensor, " B"]
    found_B: Bool[Tensor, " B"]


def tokenize(tokenizer: Any, prompts: Sequence[Prompt], template: str) -> TokenBatch:
    """Tokenize with left padding and find each word's token (the last token of the text up to it).

    A word the tokenizer merges with its neighbours has no token of its own: ``found_B`` is False.
    """
    suffix = template.split("{word}", 1)[1]
    texts = [p.text for p in prompts]
    prefixes = [t[: len(t) - len(suffix)] if suffix else t for t in texts]
    full = tokenizer(texts, padding=True, return_tensors="pt")
    heads = tokenizer(prefixes)["input_ids"]
    tokens_BS = full["input_ids"]
    mask_BS = full["attention_mask"]
    width = tokens_BS.shape[1]
    lengths_B = mask_BS.sum(1)
    positions, found = [], []
    for b, (prompt, head) in enumerate(zip(prompts, heads, strict=True)):
        offset = width - int(lengths_B[b])
        position = offset + len(head) - 1
        row = tokens_BS[b, offset:].tolist()
        same_start = row[: len(head)] == head
        word = tokenizer.convert_ids_to_tokens(int(tokens_BS[b, position]))
        positions.append(position)
        found.append(same_start and token_text(tokenizer, word) == prompt.word)
    return TokenBatch(
        tokens_BS, mask_BS, torch.tensor(positions, dtype=torch.long), torch.tensor(found)
    )


def batches(prompts: Sequence[Prompt], size: int) -> Iterator[tuple[int, Sequence[Prompt]]]:
    for start in range(0, len(prompts), size):
        yield start, prompts[start : start + size]


class _HookReached(Exception):
    """Raised by the reading hook: nothing after it in the forward pass is needed."""


def activations_at_hook(
    model: Any, tokens_BS: Tensor, mask_BS: Tensor, hook_name: str
) -> Float[Tensor, "B S ..."]:
    """The hook's activation, the forward pass stopped right there (not at the end of its block).

    ``stop_at_layer`` alone still runs the rest of the hook's block: all of block L for
    ``blocks.L.hook_resid_pre``, which on the planted model is the whole forward pass.
    """
    store: list[Tensor] = []

    def read(acts: Tensor, hook: Any) -> None:
        store.append(acts)
        raise _HookReached

    with contextlib.suppress(_HookReached):
        model.run_with_hooks(
            tokens_BS,
            attention_mask=mask_BS,
            fwd_hooks=[(hook_name, read)],
            stop_at_layer=stop_layer(hook_name),
        )
    return store[0]


@torch.no_grad()
def word_activations(
    model: Any,
    prompts: Sequence[Prompt],
    template: str,
    hook_name: str,
    batch_size: int,
    progress: Progress | None = None,
) -> tuple[Float[Tensor, "N M"], Bool[Tensor, " N"]]:
    """The hook's activation at each prompt's word (float32, on the model's device), and which words were found.

    The model runs only as far as the hook.
    """
    device = model.cfg.device
    acts, found = [], []
    task = None if progress is None else progress.add_task("forward passes", total=len(prompts))
    for _, chunk in batches(prompts, batch_size):
        batch = tokenize(model.tokenizer, chunk, template)
        acts_BSM = activations_at_hook(
            model, batch.tokens_BS.to(device), batch.mask_BS.to(device), hook_name
        )
        acts_BSM = acts_BSM.reshape(*acts_BSM.shape[:2], -1)
        rows_B = torch.arange(len(chunk), device=acts_BSM.device)
        acts.append(acts_BSM[rows_B, batch.position_B.to(acts_BSM.device)].float())
        found.append(batch.found_B)
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))
    return torch.cat(acts), torch.cat(found)

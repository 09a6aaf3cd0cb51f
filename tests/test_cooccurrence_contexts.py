"""Top contexts per latent: the vectorised running top-k against a Python loop over tokens."""

import torch

from sae_hacking.cooccurrence.contexts import (
    CONTEXT_AFTER,
    CONTEXT_BEFORE,
    NONE,
    TopContexts,
    batch_top,
    merge_top,
)

Entry = tuple[float, int, int, list[int]]


def random_batch(
    generator: torch.Generator, prompts: int, length: int, width: int, first_prompt: int
) -> dict[str, torch.Tensor]:
    """A left-padded batch with BOS uncounted, and activations of few distinct values (many ties)."""
    real_B = torch.randint(1, length + 1, (prompts,), generator=generator)
    columns_S = torch.arange(length)
    attention_mask_BS = (columns_S[None, :] >= (length - real_B)[:, None]).long()
    tokens_BS = torch.randint(5, 50, (prompts, length), generator=generator)
    tokens_BS = torch.where(attention_mask_BS.bool(), tokens_BS, 0)
    counted_BS = attention_mask_BS.bool() & (columns_S[None, :] != (length - real_B)[:, None])
    tokens = int(counted_BS.sum())
    active_TE = torch.rand(tokens, width, generator=generator) < 0.3
    activations_TE = torch.randint(1, 4, (tokens, width), generator=generator).float()
    # Where a latent does not fire its "activation" is anything (the JumpReLU pre-activation).
    activations_TE = torch.where(active_TE, activations_TE, -activations_TE)
    return {
        "activations_TE": activations_TE,
        "active_TE": active_TE,
        "tokens_BS": tokens_BS,
        "attention_mask_BS": attention_mask_BS,
        "counted_BS": counted_BS,
        "prompt_B": first_prompt + torch.arange(prompts),
    }


def reference_entries(batch: dict[str, torch.Tensor]) -> dict[int, list[Entry]]:
    """Every firing of every latent, one token at a time."""
    entries: dict[int, list[Entry]] = {}
    tokens_BS, mask_BS = batch["tokens_BS"], batch["attention_mask_BS"]
    t = 0
    for b in range(tokens_BS.shape[0]):
        pad = int((mask_BS[b] == 0).sum())
        for s in range(tokens_BS.shape[1]):
            if not batch["counted_BS"][b, s]:
                continue
            window = [
                int(tokens_BS[b, c]) if pad <= c < tokens_BS.shape[1] else NONE
                for c in range(s - CONTEXT_BEFORE, s + CONTEXT_AFTER + 1)
            ]
            for e in range(batch["active_TE"].shape[1]):
                if batch["active_TE"][t, e]:
                    value = float(batch["activations_TE"][t, e])
                    entries.setdefault(e, []).append(
                        (value, int(batch["prompt_B"][b]), s - pad, window)
                    )
            t += 1
    return entries


def reference_top(entries: dict[int, list[Entry]], k: int) -> dict[int, list[Entry]]:
    return {e: sorted(found, key=lambda x: (-x[0], x[1], x[2]))[:k] for e, found in entries.items()}


def as_entries(top: TopContexts) -> dict[int, list[Entry]]:
    found: dict[int, list[Entry]] = {}
    for e in range(top.prompts_EK.shape[0]):
        for slot in range(top.k):
            if int(top.prompts_EK[e, slot]) == NONE:
                assert float(top.activations_EK[e, slot]) == 0.0
                continue
            found.setdefault(e, []).append(
                (
                    float(top.activations_EK[e, slot]),
                    int(top.prompts_EK[e, slot]),
                    int(top.positions_EK[e, slot]),
                    top.tokens_EKZ[e, slot].tolist(),
                )
            )
    return found


def test_one_batch_matches_a_python_loop_over_tokens_with_ties() -> None:
    generator = torch.Generator().manual_seed(0)
    for k in (1, 3, 7):
        batch = random_batch(generator, prompts=6, length=13, width=9, first_prompt=4)
        top = batch_top(**batch, k=k)
        assert as_entries(top) == reference_top(reference_entries(batch), k)


def test_merging_batches_in_any_order_keeps_the_top_of_all() -> None:
    generator = torch.Generator().manual_seed(1)
    width, k = 11, 4
    batches = [
        random_batch(generator, prompts=3, length=10, width=width, first_prompt=3 * i)
        for i in range(6)
    ]
    everything: dict[int, list[Entry]] = {}
    for batch in batches:
        for e, found in reference_entries(batch).items():
            everything.setdefault(e, []).extend(found)
    expected = reference_top(everything, k)
    for order in (list(range(6)), [5, 2, 0, 4, 1, 3]):
        for floored in (False, True):
            top = TopContexts.empty(width, k)
            for i in order:
                floor_E = top.floor_E() if floored else None
                top = merge_top(top, batch_top(**batches[i], k=k, floor_E=floor_E))
            assert as_entries(top) == expected
    # Rank-style: two running sets merged at the end, as rank 0 does at a checkpoint.
    halves = []
    for part in (batches[::2], batches[1::2]):
        top = TopContexts.empty(width, k)
        for batch in part:
            top = merge_top(top, batch_top(**batch, k=k))
        halves.append(top)
    assert as_entries(merge_top(halves[1], halves[0])) == expected


def test_no_firing_keeps_every_slot_empty() -> None:
    batch = random_batch(torch.Generator().manual_seed(2), 2, 5, 4, 0)
    batch["active_TE"] = torch.zeros_like(batch["active_TE"])
    top = batch_top(**batch, k=2)
    assert as_entries(top) == {}
    assert bool((top.tokens_EKZ == NONE).all())
    assert as_entries(merge_top(top, TopContexts.empty(4, 2))) == {}


def test_offset_prompts_moves_only_filled_slots() -> None:
    batch = random_batch(torch.Generator().manual_seed(3), 3, 6, 5, 0)
    top = batch_top(**batch, k=3)
    moved = top.offset_prompts(100)
    filled = top.prompts_EK >= 0
    assert torch.equal(moved.prompts_EK[filled], top.prompts_EK[filled] + 100)
    assert bool((moved.prompts_EK[~filled] == NONE).all())

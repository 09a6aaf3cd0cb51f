"""Each latent's top-activating contexts, kept while counting: a running top-k merged batch by batch.

A context is (activation, prompt index in the corpus, token position in the prompt with BOS at 0)
plus the token ids of a window around the token. The order is total: activation descending,
then prompt ascending, then position ascending. So the kept contexts are the top k of everything
seen whatever the batching, the ranks, the checkpoints or the merge order: the same rule as the
counts (see cooccurrence/run.py), with "union then top k" in place of "sum".

Everything is vectorised over latents: one stable sort of a batch's active entries picks each
latent's best k of the batch, and merging two sets of at most k per latent is a sort of at most
2k entries per latent. No step loops over latents in Python.
"""

from dataclasses import dataclass

import torch
from beartype import beartype
from jaxtyping import Bool, Float, Int, jaxtyped
from torch import Tensor

from sae_hacking.core.cooccurrence import active_entries

CONTEXT_BEFORE = 8
CONTEXT_AFTER = 2
CONTEXT_WIDTH = CONTEXT_BEFORE + 1 + CONTEXT_AFTER
# Marks an empty slot (prompt) and a window position outside the prompt (token).
NONE = -1
KEYS = ("top_activations", "top_prompts", "top_positions", "top_tokens")


@dataclass(frozen=True)
class TopContexts:
    """Per latent its best ``k`` contexts so far, best first; empty slots have prompt -1."""

    activations_EK: Float[Tensor, "E K"]
    prompts_EK: Int[Tensor, "E K"]
    positions_EK: Int[Tensor, "E K"]
    tokens_EKZ: Int[Tensor, "E K Z"]

    @property
    def k(self) -> int:
        return int(self.prompts_EK.shape[1])

    @staticmethod
    def empty(width: int, k: int, device: torch.device | str = "cpu") -> "TopContexts":
        return TopContexts(
            torch.zeros(width, k, device=device),
            torch.full((width, k), NONE, dtype=torch.int64, device=device),
            torch.full((width, k), NONE, dtype=torch.int64, device=device),
            torch.full((width, k, CONTEXT_WIDTH), NONE, dtype=torch.int64, device=device),
        )

    def tensors(self) -> dict[str, Tensor]:
        """The tensors as saved, under ``KEYS``."""
        fields = (self.activations_EK, self.prompts_EK, self.positions_EK, self.tokens_EKZ)
        return dict(zip(KEYS, fields, strict=True))

    @staticmethod
    def of(tensors: dict[str, Tensor]) -> "TopContexts":
        return TopContexts(*(tensors[key] for key in KEYS))

    def to(self, device: torch.device | str) -> "TopContexts":
        return TopContexts.of({key: t.to(device) for key, t in self.tensors().items()})

    def floor_E(self) -> Float[Tensor, " E"]:
        """Each latent's k-th best activation so far, 0 while it has fewer than k: a context
        below it cannot enter."""
        full_E = self.prompts_EK[:, -1] >= 0
        return torch.where(full_E, self.activations_EK[:, -1], 0.0)

    def offset_prompts(self, offset: int) -> "TopContexts":
        """The same contexts with prompt indices shifted (runs merged as one concatenated corpus)."""
        prompts_EK = torch.where(self.prompts_EK >= 0, self.prompts_EK + offset, self.prompts_EK)
        return TopContexts(self.activations_EK, prompts_EK, self.positions_EK, self.tokens_EKZ)


def _best_per_latent(
    latent_D: Int[Tensor, " D"], activation_D: Float[Tensor, " D"], k: int
) -> tuple[Tensor, Tensor]:
    """Which entries are among their latent's best ``k`` (indices, latent by latent, best first)
    and their ranks, given entries listed in tie-break order (earlier wins a tie). Activations
    must be positive."""
    # A positive float's bit pattern orders like the float: one int64 key sorts latent ascending,
    # then activation descending; the stable sort keeps the listed order among equal activations.
    bits_D = activation_D.float().view(torch.int32).long()
    order_D = torch.sort((latent_D.long() << 32) - bits_D, stable=True).indices
    sorted_D = latent_D.index_select(0, order_D)
    place_D = torch.arange(sorted_D.shape[0], device=sorted_D.device)
    starts_D = torch.ones_like(sorted_D, dtype=torch.bool)
    starts_D[1:] = sorted_D[1:] != sorted_D[:-1]
    rank_D = place_D - torch.cummax(torch.where(starts_D, place_D, 0), 0).values
    keep_D = rank_D < k
    return order_D[keep_D], rank_D[keep_D]


def _dense(
    width: int,
    k: int,
    latent_D: Tensor,
    rank_D: Tensor,
    activation_D: Tensor,
    prompt_D: Tensor,
    position_D: Tensor,
    tokens_DZ: Tensor,
) -> TopContexts:
    top = TopContexts.empty(width, k, latent_D.device)
    top.activations_EK[latent_D, rank_D] = activation_D.float()
    top.prompts_EK[latent_D, rank_D] = prompt_D.long()
    top.positions_EK[latent_D, rank_D] = position_D.long()
    top.tokens_EKZ[latent_D, rank_D] = tokens_DZ.long()
    return top


def merge_top(first: TopContexts, second: TopContexts) -> TopContexts:
    """The best ``k`` contexts per latent of both (the same ``k`` and width)."""
    k = first.k
    # An entry of ``second`` below all k of ``first``'s cannot enter, so only the latents where
    # one may are merged: after the first batches of a run, few per batch.
    entering_EK = (second.prompts_EK >= 0) & (second.activations_EK >= first.floor_E()[:, None])
    rows_L = entering_EK.any(dim=1).nonzero().squeeze(1)
    if rows_L.shape[0] == 0:
        return first
    both = [
        torch.cat([a.index_select(0, rows_L), b.index_select(0, rows_L)], dim=1)
        for a, b in zip(first.tensors().values(), second.tensors().values(), strict=True)
    ]
    activations_LD, prompts_LD, positions_LD, tokens_LDZ = both
    filled_LD = torch.cat([first.prompts_EK[rows_L] >= 0, entering_EK[rows_L]], dim=1)
    row_LD, slot_LD = torch.meshgrid(
        torch.arange(rows_L.shape[0], device=rows_L.device),
        torch.arange(2 * k, device=rows_L.device),
        indexing="ij",
    )
    row_D, slot_D = row_LD[filled_LD], slot_LD[filled_LD]
    prompt_D, position_D = prompts_LD[filled_LD], positions_LD[filled_LD]
    # Stable sorts from the least significant key: position, then prompt, so that entries are
    # listed in tie-break order for _best_per_latent.
    order_D = torch.sort(position_D, stable=True).indices
    order_D = order_D[torch.sort(prompt_D[order_D], stable=True).indices]
    row_D, slot_D = row_D[order_D], slot_D[order_D]
    activation_D = activations_LD[row_D, slot_D]
    kept_D, rank_D = _best_per_latent(row_D, activation_D, k)
    row_D, slot_D = row_D[kept_D], slot_D[kept_D]
    merged = _dense(
        rows_L.shape[0],
        k,
        row_D,
        rank_D,
        activation_D[kept_D],
        prompts_LD[row_D, slot_D],
        positions_LD[row_D, slot_D],
        tokens_LDZ[row_D, slot_D],
    )
    out = {key: t.clone() for key, t in first.tensors().items()}
    for key, rows in merged.tensors().items():
        out[key][rows_L] = rows
    return TopContexts.of(out)


@jaxtyped(typechecker=beartype)
def batch_top(
    activations_TE: Float[Tensor, "T E"],
    active_TE: Bool[Tensor, "T E"],
    tokens_BS: Int[Tensor, "B S"],
    attention_mask_BS: Int[Tensor, "B S"],
    counted_BS: Bool[Tensor, "B S"],
    prompt_B: Int[Tensor, " B"],
    k: int,
    floor_E: Float[Tensor, " E"] | None = None,
) -> TopContexts:
    """Each latent's best ``k`` contexts among a batch's counted tokens (``T`` = the counted
    positions of the left-padded batch in row-major order, ``prompt_B`` each row's corpus index),
    leaving out activations below ``floor_E`` (those that cannot enter the running top k)."""
    token_D, latent_D = active_entries(active_TE)
    activation_D = activations_TE[token_D, latent_D]
    if floor_E is not None:
        may_enter_D = activation_D >= floor_E.index_select(0, latent_D)
        token_D, latent_D = token_D[may_enter_D], latent_D[may_enter_D]
        activation_D = activation_D[may_enter_D]
    # Active entries come token by token, so ties already stand in (prompt, position) order.
    kept_D, rank_D = _best_per_latent(latent_D, activation_D, k)
    token_D, latent_D = token_D[kept_D], latent_D[kept_D]
    row_T, column_T = counted_BS.nonzero(as_tuple=True)
    row_D, column_D = row_T[token_D], column_T[token_D]
    length = tokens_BS.shape[1]
    padding_B = length - attention_mask_BS.sum(dim=1)
    offsets_Z = torch.arange(-CONTEXT_BEFORE, CONTEXT_AFTER + 1, device=tokens_BS.device)
    column_DZ = column_D[:, None] + offsets_Z
    inside_DZ = (column_DZ >= padding_B[row_D, None]) & (column_DZ < length)
    window_DZ = tokens_BS[row_D[:, None], column_DZ.clamp(0, length - 1)]
    return _dense(
        active_TE.shape[1],
        k,
        latent_D,
        rank_D,
        activation_D[kept_D],
        prompt_B[row_D],
        column_D - padding_B[row_D],
        torch.where(inside_DZ, window_DZ, NONE),
    )

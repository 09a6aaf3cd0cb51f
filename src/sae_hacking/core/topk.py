"""Top-k sparse codes kept sparse as ``(acts_BK, idx_BK)``; dense ``_BE`` only where needed."""

import torch.nn.functional as F
from beartype import beartype
from jaxtyping import Float, Int, jaxtyped
from torch import Tensor


@jaxtyped(typechecker=beartype)
def topk_encode(
    pre_BE: Float[Tensor, "B E"], k: int
) -> tuple[Float[Tensor, "B K"], Int[Tensor, "B K"]]:
    """Keep the k largest pre-activations of each row, ReLU'd (a kept negative value becomes 0)."""
    vals_BK, idx_BK = pre_BE.topk(k, dim=-1, sorted=False)
    return F.relu(vals_BK), idx_BK


@jaxtyped(typechecker=beartype)
def topk_decode(
    acts_BK: Float[Tensor, "B K"],
    idx_BK: Int[Tensor, "B K"],
    W_dec_EM: Float[Tensor, "E M"],
    b_dec_M: Float[Tensor, " M"],
) -> Float[Tensor, "B M"]:
    """Sum of the chosen decoder rows weighted by their activations, without a dense B x E code."""
    # embedding_bag gathers and sums in one kernel and differentiates in both weights and acts.
    return F.embedding_bag(idx_BK, W_dec_EM, per_sample_weights=acts_BK, mode="sum") + b_dec_M


@jaxtyped(typechecker=beartype)
def densify(
    acts_BK: Float[Tensor, "B K"], idx_BK: Int[Tensor, "B K"], width: int
) -> Float[Tensor, "B E"]:
    """Scatter a sparse code into a dense B x width tensor."""
    dense_BE = acts_BK.new_zeros(acts_BK.shape[0], width)
    return dense_BE.scatter(1, idx_BK, acts_BK)

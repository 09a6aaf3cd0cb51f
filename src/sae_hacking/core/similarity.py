"""Cosine similarities between sets of directions."""

from beartype import beartype
from jaxtyping import Float, jaxtyped
from torch import Tensor


@jaxtyped(typechecker=beartype)
def unit_rows(x_DM: Float[Tensor, "D M"], eps: float = 1e-12) -> Float[Tensor, "D M"]:
    """Rows scaled to unit norm; an all-zero row stays zero."""
    return x_DM / x_DM.norm(dim=-1, keepdim=True).clamp_min(eps)


@jaxtyped(typechecker=beartype)
def cosine_matrix(a_NM: Float[Tensor, "N M"], b_EM: Float[Tensor, "E M"]) -> Float[Tensor, "N E"]:
    """Cosine similarity of every row of ``a`` with every row of ``b``."""
    return unit_rows(a_NM) @ unit_rows(b_EM).T

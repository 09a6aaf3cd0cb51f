"""Does an SAE tell siblings apart? Metrics for true features grouped under known parents.

A plain top-k SAE on the perturbed-children data learns one latent per parent: every child's best
latent is then its parent's latent, at cosine ~0.93, so MMCS looks fine while these metrics read 0.
"""

from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.toy.protocol import SiblingStructure


def sibling_split_rate(best_latent_N: Int[Tensor, " N"], parent_of_N: Int[Tensor, " N"]) -> float:
    """Fraction of parents whose children all have different best-matching latents.

    Features without a parent (``parent_of_N == -1``) belong to no sibling group.
    """
    parent_of_N = parent_of_N.cpu()
    best_latent_N = best_latent_N.cpu()
    parents = [a for a in parent_of_N.unique().tolist() if a >= 0]
    groups = [best_latent_N[parent_of_N == a] for a in parents]
    groups = [group for group in groups if group.numel() > 1]
    if not groups:
        return float("nan")
    split = [group.unique().numel() == group.numel() for group in groups]
    return sum(split) / len(split)


def child_specificity_rate(
    directions_DM: Float[Tensor, "D M"],
    best_latent_N: Int[Tensor, " N"],
    features_NM: Float[Tensor, "N M"],
    siblings: SiblingStructure,
) -> float:
    """Fraction of children whose best latent is closer to the child than to the child's parent.

    Only features with a parent count; NaN when there are none.
    """
    child_D = siblings.has_parent_N.cpu().nonzero().squeeze(1)
    if child_D.numel() == 0:
        return float("nan")
    best_DM = directions_DM.detach().float().cpu()[best_latent_N.cpu()[child_D]]
    children_DM = features_NM.detach().float().cpu()[child_D]
    to_child_D = cosine_matrix(children_DM, best_DM).diagonal()
    parent_rows_D = siblings.parent_of_N.cpu()[child_D]
    parents_DM = siblings.parents_AM.detach().float().cpu()[parent_rows_D]
    to_parent_D = cosine_matrix(parents_DM, best_DM).diagonal()
    return (to_child_D > to_parent_D).float().mean().item()


def pair_detection_rate(
    composed_HM: Float[Tensor, "H M"],
    features_NM: Float[Tensor, "N M"],
    parent_of_N: Int[Tensor, " N"],
) -> float:
    """The original's score for a hierarchical SAE: fraction of parent latents whose two children
    point (by highest cosine) at two different features that are siblings of one true parent.

    ``composed_HM`` holds parent + child directions, the children of latent e at rows 2e and 2e+1.
    """
    cos_NH = cosine_matrix(features_NM.detach().float(), composed_HM.detach().float()).cpu()
    nearest_E2 = cos_NH.argmax(dim=0).view(-1, 2)
    parent_E2 = parent_of_N.cpu()[nearest_E2]
    success_E = (nearest_E2[:, 0] != nearest_E2[:, 1]) & (parent_E2[:, 0] == parent_E2[:, 1])
    return success_E.float().mean().item()


def parent_recovery(
    directions_DM: Float[Tensor, "D M"], siblings: SiblingStructure
) -> Float[Tensor, " A"]:
    """Each true parent's best cosine to any direction (how visible the shared part is)."""
    cos_AD = cosine_matrix(siblings.parents_AM.detach().float(), directions_DM.detach().float())
    return cos_AD.max(dim=1).values.cpu()

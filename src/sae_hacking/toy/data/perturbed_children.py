"""The original toolkit's data: unit parent directions, each seen through one of two perturbed children.

Every sample activates exactly ``k`` distinct parents. Each active parent contributes
``parent + perturbation`` for one of its two children, chosen uniformly; perturbations are random
directions of a fixed norm. The true features are the ``2A`` child vectors, siblings adjacent
(feature ``2a + c`` is child ``c`` of parent ``a``).
"""

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.similarity import unit_rows
from sae_hacking.toy.protocol import SiblingStructure

CHILDREN_PER_PARENT = 2
# Up to this k, k sequential draws beat one top-k over A uniforms (torch's CPU top-k costs about
# 0.5 us a row: 40% of a training step at k=2, measured with the torch profiler).
SEQUENTIAL_DRAW_MAX_K = 8


def distinct_draws(
    batch_size: int, population: int, k: int, generator: torch.Generator
) -> Int[Tensor, "B K"]:
    """``k`` distinct integers from ``[0, population)`` per row, uniformly (a uniform k-subset).

    Draw j is uniform over the ``population - j`` values not yet taken: a uniform index into
    them, shifted past every taken value at or below it (taken values visited in ascending order).
    """
    device = generator.device
    taken_BD = torch.empty(batch_size, 0, dtype=torch.long, device=device)
    for j in range(k):
        draw_B = torch.randint(0, population - j, (batch_size,), generator=generator, device=device)
        for taken_B in taken_BD.sort(dim=1).values.unbind(dim=1):
            draw_B = draw_B + (draw_B >= taken_B).long()
        taken_BD = torch.cat([taken_BD, draw_B[:, None]], dim=1)
    return taken_BD


class PerturbedChildren:
    """A ``FeatureSource`` with ``HasSiblings``: parents with two perturbed children each."""

    def __init__(
        self,
        parents_AM: Float[Tensor, "A M"],
        perturbations_A2M: Float[Tensor, "A 2 M"],
        dataset_k: int,
    ) -> None:
        if not 1 <= dataset_k <= parents_AM.shape[0]:
            raise ValueError(f"dataset_k={dataset_k} must lie in [1, {parents_AM.shape[0]}]")
        self.parents_AM = parents_AM
        self.perturbations_A2M = perturbations_A2M
        self.dataset_k = dataset_k
        self._features_NM = (parents_AM[:, None, :] + perturbations_A2M).flatten(0, 1)
        num_parents = parents_AM.shape[0]
        self._parent_of_N = torch.arange(num_parents, device=parents_AM.device).repeat_interleave(
            CHILDREN_PER_PARENT
        )

    @classmethod
    def random(
        cls,
        num_parents: int,
        model_dim: int,
        perturbation_size: float,
        dataset_k: int,
        generator: torch.Generator,
    ) -> "PerturbedChildren":
        """Random unit parents and random perturbations of norm ``perturbation_size``.

        Everything is drawn on the generator's device, so data never crosses to the host.
        """
        device = generator.device
        parents_AM = unit_rows(
            torch.randn(num_parents, model_dim, generator=generator, device=device)
        )
        raw_A2M = torch.randn(
            num_parents, CHILDREN_PER_PARENT, model_dim, generator=generator, device=device
        )
        perturbations_A2M = perturbation_size * raw_A2M / raw_A2M.norm(dim=-1, keepdim=True)
        return cls(parents_AM, perturbations_A2M, dataset_k)

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        """The child vectors ``parent + perturbation``, siblings adjacent."""
        return self._features_NM

    @property
    def siblings(self) -> SiblingStructure:
        return SiblingStructure(self.parents_AM, self._parent_of_N)

    def sample_indices(self, batch_size: int, generator: torch.Generator) -> Int[Tensor, "B K"]:
        """Which child features fire in each sample: ``k`` distinct parents, one child each."""
        device = self.parents_AM.device
        num_parents = self.parents_AM.shape[0]
        if self.dataset_k <= SEQUENTIAL_DRAW_MAX_K:
            parent_BK = distinct_draws(batch_size, num_parents, self.dataset_k, generator)
        else:
            # The k largest of A uniform draws are a uniform k-subset.
            noise_BA = torch.rand(batch_size, num_parents, generator=generator, device=device)
            parent_BK = noise_BA.topk(self.dataset_k, dim=-1, sorted=False).indices
        child_BK = torch.randint(
            0, CHILDREN_PER_PARENT, parent_BK.shape, generator=generator, device=device
        )
        return parent_BK * CHILDREN_PER_PARENT + child_BK

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        """Activations and the (binary) magnitudes of the child features that made them."""
        feature_BK = self.sample_indices(batch_size, generator)
        x_BM = F.embedding_bag(feature_BK, self._features_NM, mode="sum")
        magnitudes_BN = x_BM.new_zeros(batch_size, self._features_NM.shape[0])
        magnitudes_BN.scatter_(1, feature_BK, 1.0)
        return x_BM, magnitudes_BN

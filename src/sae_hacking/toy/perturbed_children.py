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
        # The k largest of A uniform draws are a uniform k-subset, without a Python loop.
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

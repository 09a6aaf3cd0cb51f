"""The interfaces the toy trainer, the toy SAEs, the data sources and the metrics agree on.

Required: ``FeatureSource`` (data) and ``ToySAE`` (model). Optional, checked with ``isinstance``:
``HasSiblings`` (a source that knows which true features share a parent), ``HasComposedDirections``
(an SAE whose unit of meaning is a sum of decoder rows, such as parent + child) and ``AfterStep``
(an SAE that must fix up its weights after each optimizer step).
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@runtime_checkable
class FeatureSource(Protocol):
    """Synthetic data whose true feature directions are known."""

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        """The true feature directions, one per row (the ground truth the metrics score against)."""
        ...

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        """A batch of activations and the true feature magnitudes that made them, on the source's device."""
        ...


@dataclass(frozen=True)
class SiblingStructure:
    """Which true features are siblings: ``parent_of_N[n]`` is the parent row of feature ``n``.

    ``parent_of_N[n] == -1`` marks a feature with no parent (a tree's root, or a feature whose
    ancestors are all hidden gates); such a feature is nobody's sibling and no child.
    """

    parents_AM: Float[Tensor, "A M"]
    parent_of_N: Int[Tensor, " N"]

    @property
    def has_parent_N(self) -> Bool[Tensor, " N"]:
        """The features that are children of some parent row."""
        return self.parent_of_N >= 0


@runtime_checkable
class HasSiblings(Protocol):
    """A source whose true features come in sibling groups under known parent directions."""

    @property
    def siblings(self) -> SiblingStructure: ...


@dataclass(frozen=True)
class LossParts:
    """A training loss and its named parts, for logging (parts are detached)."""

    total: Float[Tensor, ""]
    parts: dict[str, float | Tensor]


@runtime_checkable
class ToySAE(Protocol):
    """What the toy trainer and the metrics need of an SAE (an ``nn.Module``)."""

    width: int

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        """Latent activations as a dense matrix, for metrics and plots."""
        ...

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        """The SAE's reconstruction of a batch (for FVU and plots)."""
        ...

    def decoder_directions(self) -> Float[Tensor, "E M"]:
        """Each latent's decoder direction (rows of W_dec)."""
        ...

    def encoder_directions(self) -> Float[Tensor, "E M"]:
        """Each latent's encoder direction (columns of W_enc, as rows)."""
        ...

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        """The training loss on one batch, reconstruction plus whatever the architecture adds."""
        ...


@runtime_checkable
class HasComposedDirections(Protocol):
    """An SAE whose outputs are sums of decoder rows (parent + child), scored as such.

    Ground-truth metrics compare these directions, not the raw decoder rows, with the true
    features: a child row of a hierarchical SAE is only an offset from its parent.
    """

    def composed_directions(self) -> Float[Tensor, "G M"]: ...


@runtime_checkable
class AfterStep(Protocol):
    """An SAE that constrains its weights after each optimizer step (e.g. unit decoder rows)."""

    def after_step(self) -> None: ...

"""The two interfaces the toy trainer, the toy SAEs, the data sources and the metrics agree on."""

from dataclasses import dataclass
from typing import Protocol

import torch
from jaxtyping import Float
from torch import Tensor


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
class LossParts:
    """A training loss and its named parts, for logging (parts are detached)."""

    total: Float[Tensor, ""]
    parts: dict[str, float | Tensor]


class ToySAE(Protocol):
    """What the toy trainer and the metrics need of an SAE (an ``nn.Module``)."""

    width: int

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        """Latent activations as a dense matrix, for metrics and plots."""
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

"""The toy stand-in for the language model downstream of the ablator: a fixed map and its reader.

The map sends the activation space to a reader space, ``y = relu(W x - offset)``: with ``W`` the
true feature directions it is a readout of the true features (each reader dimension is one true
feature's activation, so the effect of an ablation on it is what the ablation did to that
feature), with ``W`` a random Gaussian matrix it is a random layer whose reader dimensions mix
features. The ReLU is what makes an ablation's effect depend on context: a shift along a feature
that is off in the sample moves nothing, as a shift below a language model's attention or MLP
threshold moves nothing downstream.

The reader turns the reader space into the vectors whose clean - ablated differences are compared:
the reader space itself (the true-feature readout), or a top-k SAE trained on it (as Gemma Scope's
reader SAE reads a later layer), read in one of ``EFFECT_SPACES``.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from sae_hacking.core.similarity import unit_rows
from sae_hacking.toy.experiments.hunt.config import DOWNSTREAM_KINDS, EFFECT_SPACES
from sae_hacking.toy.protocol import FeatureSource, LossParts, ToySAE
from sae_hacking.toy.saes.topk import TopKSAE


@dataclass(frozen=True)
class Downstream:
    """``y = relu(W x - offset)``, fixed (no training)."""

    W_DM: Float[Tensor, "D M"]
    offset: float

    @property
    def width(self) -> int:
        return int(self.W_DM.shape[0])

    def __call__(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B D"]:
        return torch.relu(x_BM @ self.W_DM.T - self.offset)


def build_downstream(
    kind: str,
    features_NM: Float[Tensor, "N M"],
    parent_N: Int[Tensor, " N"],
    width: int,
    offset: float,
    generator: torch.Generator,
) -> Downstream:
    """The readout of the true features, of the parent features only (those with a read-out
    child), or a random layer of ``width`` unit rows."""
    if kind == "readout":
        return Downstream(features_NM.clone(), offset)
    if kind == "parents":
        parents = parent_N[parent_N >= 0].unique()
        return Downstream(features_NM[parents].clone(), offset)
    if kind == "random":
        raw_DM = torch.randn(
            width, features_NM.shape[1], generator=generator, device=generator.device
        )
        return Downstream(unit_rows(raw_DM), offset)
    raise ValueError(f"unknown downstream '{kind}'; use one of {', '.join(DOWNSTREAM_KINDS)}")


class ReaderSpaceSource:
    """A ``FeatureSource`` over the reader space, for training a reader SAE with the toy trainer.

    Its ``features_NM`` are the true directions pushed through the map's linear part: a nominal
    truth for the trainer's logged metrics only (the ReLU bends the real one).
    """

    def __init__(self, source: FeatureSource, downstream: Downstream) -> None:
        self.source = source
        self.downstream = downstream
        self._features_NM = unit_rows(source.features_NM @ downstream.W_DM.T)

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self._features_NM

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        x_BM, acts_BN = self.source.sample(batch_size, generator)
        return self.downstream(x_BM), acts_BN


@dataclass(frozen=True)
class Reader:
    """What the hunt reads downstream: the reader space itself, or a top-k SAE on it.

    Through an SAE, an ablation's effect can be read in four spaces (``EFFECT_SPACES``): the SAE's
    latents (the original's choice), its pre-activations (before top-k and ReLU), the reader
    hook's activations themselves, or the SAE's reconstruction (latents projected through its
    decoder). Without an SAE every space is the reader space.
    """

    sae: TopKSAE | None

    def width(self, downstream: Downstream, space: str) -> int:
        if self.sae is None or space in ("activations", "reconstruction"):
            return downstream.width
        return self.sae.width

    @torch.no_grad()
    def __call__(self, y_BD: Float[Tensor, "B D"], space: str = "latents") -> Tensor:
        if self.sae is None or space == "activations":
            return y_BD
        if space == "latents":
            return self.sae.encode_dense(y_BD)
        if space == "preactivations":
            return self.sae.preactivations(y_BD)
        if space == "reconstruction":
            return self.sae.reconstruct(y_BD)
        raise ValueError(f"unknown effect space '{space}'; use one of {', '.join(EFFECT_SPACES)}")


class FiringThreshold(nn.Module):
    """An ablator SAE whose latents count as firing only above ``threshold`` (a JumpReLU-like gate).

    A toy top-k SAE absorbs only partly: where a child latent fires, the parent's latent still
    fires, at about 0.2-0.4 of a unit feature instead of 0.9 (measured on the 5 x 3 tree), so the
    two co-occur on most child tokens and a co-occurrence bar of 0 rejects every absorbed pair.
    Gemma Scope's JumpReLU ablators zero such weak activations; this gate does the same for the
    toy SAE, for every step and for the ground truth alike. ``threshold = 0`` is the raw SAE.
    The right bar depends on the ablator's activation scale. On the 5 x 3 tree at 0.5 the parent
    latent still fired (between 0.5 and 0.7) on 0.1-21% of an absorbing child latent's firings on
    5 of 8 seeds, so those true pairs failed a co-occurrence bar of 0 (recall 0.85 on such seeds),
    and 0.7 fixes it; on the default 25 x 3 tree (top-8, 128 dimensions) 0.5 finds all 73 pairs
    while at 0.7 most parent latents never fire (recall 0.14). A bar of 0.6 or 0.75 of each
    latent's median firing activation did worse than either on the 5 x 3 tree (recall 0.31-0.93);
    for per-latent Otsu bars (``--fit-thresholds otsu``) see the README.
    """

    def __init__(self, sae: ToySAE, threshold: float | Float[Tensor, " E"]) -> None:
        super().__init__()
        if not isinstance(sae, nn.Module):
            raise TypeError("the ablator must be an nn.Module")
        self.sae = sae
        self.width = sae.width
        # One bar for every latent, or one per latent (``core.thresholds.otsu_thresholds``).
        self.threshold = threshold

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        acts_BE = self.sae.encode_dense(x_BM)
        return acts_BE * (acts_BE > self.threshold)

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        acts_BE = self.sae.encode_dense(x_BM)
        gated_out_BE = acts_BE * (acts_BE <= self.threshold)
        return self.sae.reconstruct(x_BM) - gated_out_BE @ self.sae.decoder_directions()

    def decoder_directions(self) -> Float[Tensor, "E M"]:
        return self.sae.decoder_directions()

    def encoder_directions(self) -> Float[Tensor, "E M"]:
        return self.sae.encoder_directions()

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        return self.sae.loss(x_BM)

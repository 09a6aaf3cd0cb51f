"""The original toolkit's hierarchical top-k SAE: every parent latent owns two child latents.

Parents are chosen by top-k. A child can fire only where its parent fired; of a parent's two
children only the one with the larger pre-activation is kept (ReLU'd). The reconstruction is the
parent's decoder row plus the winning child's row, each scaled by its activation.

Trained from a random start with children on, the children become whole-feature detectors and
each parent latent only gates two arbitrary features (measured: parent cosine ~0.6 to the true
parents, pair detection 0-0.07). So the loss first trains the parents alone, as a plain top-k SAE,
for ``child_warmup_samples`` samples: the parents settle on the true parents, and only then do
the children learn the offsets that tell siblings apart (pair detection 0.77-0.80 over three
seeds at the default run, 0.87 at the original's settings).
The warm-up touches only the training loss; ``encode``/``reconstruct`` always use the children.

The ``G = 3E`` latents share one encoder and one decoder matrix: rows ``[0, E)`` are parents and
row ``E + 2e + c`` is child ``c`` of parent ``e``, so one matmul encodes all of them and one
``embedding_bag`` decodes parents and children together.
"""

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from sae_hacking.core.similarity import unit_rows
from sae_hacking.core.topk import densify, topk_decode, topk_encode
from sae_hacking.toy.protocol import LossParts
from sae_hacking.toy.saes.auxk import AuxKSettings, reconstruction_loss_with_auxk
from sae_hacking.toy.saes.topk import random_unit_rows, reconstruction_error

CHILDREN = 2


@dataclass(frozen=True)
class HierarchicalShape:
    """Everything needed to rebuild a ``HierarchicalTopKSAE`` (stored in checkpoints)."""

    model_dim: int
    num_parents: int
    k: int
    child_init_norm: float = 0.4
    aux_k: int = 0
    aux_coefficient: float = 1 / 32
    dead_after_steps: int = 200
    # Off by default: with exactly k features per sample and exactly k latents per code, a
    # decoder bias b is free to drift, every row absorbing -b/k (measured: parent cosine 0.8
    # with it, 0.96 without, on the perturbed-children data).
    decoder_bias: bool = False
    # Samples the loss sees with children off (about a quarter of the default 8.2M-sample run).
    child_warmup_samples: int = 2_000_000

    def auxk_settings(self) -> AuxKSettings:
        return AuxKSettings(self.aux_k, self.aux_coefficient, self.dead_after_steps)


@dataclass(frozen=True)
class HierarchicalCode:
    """One batch's sparse code: K parents and, for each, its winning child (row index into G)."""

    parent_acts_BK: Float[Tensor, "B K"]
    parent_idx_BK: Int[Tensor, "B K"]
    child_acts_BK: Float[Tensor, "B K"]
    child_idx_BK: Int[Tensor, "B K"]
    parent_pre_BE: Float[Tensor, "B E"]


def opposed_children(
    parents_EM: Float[Tensor, "E M"], norm: float, generator: torch.Generator
) -> Float[Tensor, "H M"]:
    """Children ``+v`` and ``-v`` per parent, ``v`` random and orthogonal to the parent.

    With independent random children the one leaning more towards its parent wins every sample
    and its sibling never gets a gradient; opposed children split the parent's inputs in half
    from the first step (measured: pair detection 0.07 with independent init, see the tests).
    """
    raw_EM = random_unit_rows(parents_EM.shape[0], parents_EM.shape[1], 1.0, generator)
    unit_EM = unit_rows(parents_EM)
    raw_EM = raw_EM - (raw_EM * unit_EM).sum(-1, keepdim=True) * unit_EM
    v_EM = norm * unit_rows(raw_EM)
    return torch.stack([v_EM, -v_EM], dim=1).flatten(0, 1)


class HierarchicalTopKSAE(nn.Module):
    """Top-k parents, each with two mutually exclusive children that fire only with it."""

    def __init__(self, shape: HierarchicalShape, generator: torch.Generator) -> None:
        super().__init__()
        if not 1 <= shape.k <= shape.num_parents:
            raise ValueError(f"k={shape.k} must lie in [1, num_parents={shape.num_parents}]")
        self.shape = shape
        self.num_parents = shape.num_parents
        self.width = (1 + CHILDREN) * shape.num_parents
        self.k = shape.k
        device = generator.device
        parents_EM = random_unit_rows(shape.num_parents, shape.model_dim, 1.0, generator)
        children_HM = opposed_children(parents_EM, shape.child_init_norm, generator)
        W_dec_GM = torch.cat([parents_EM, children_HM])
        self.W_dec_GM = nn.Parameter(W_dec_GM)
        self.W_enc_MG = nn.Parameter(W_dec_GM.T.clone())
        self.b_enc_G = nn.Parameter(torch.zeros(self.width, device=device))
        self.b_dec_M = nn.Parameter(
            torch.zeros(shape.model_dim, device=device), requires_grad=shape.decoder_bias
        )
        self.register_buffer(
            "steps_since_fired_E",
            torch.zeros(shape.num_parents, dtype=torch.int64, device=device),
        )
        # A buffer, so a checkpoint resumes the warm-up exactly where it stopped.
        self.register_buffer("samples_trained", torch.zeros((), dtype=torch.int64, device=device))

    def hyperparameters(self) -> dict[str, Any]:
        return asdict(self.shape)

    def encode(self, x_BM: Float[Tensor, "B M"]) -> HierarchicalCode:
        num_parents = self.num_parents
        pre_BG = torch.addmm(self.b_enc_G, x_BM - self.b_dec_M, self.W_enc_MG)
        parent_pre_BE = pre_BG[:, :num_parents]
        parent_acts_BK, parent_idx_BK = topk_encode(parent_pre_BE, self.k)
        pairs_BE2 = pre_BG[:, num_parents:].unflatten(1, (num_parents, CHILDREN))
        gather_BK2 = parent_idx_BK[:, :, None].expand(-1, -1, CHILDREN)
        child_pre_BK2 = pairs_BE2.gather(1, gather_BK2)
        child_pre_BK, which_BK = child_pre_BK2.max(dim=-1)
        # A parent kept by top-k but ReLU'd to zero did not fire, so neither may its children.
        child_acts_BK = F.relu(child_pre_BK) * (parent_acts_BK > 0)
        child_idx_BK = num_parents + CHILDREN * parent_idx_BK + which_BK
        return HierarchicalCode(
            parent_acts_BK, parent_idx_BK, child_acts_BK, child_idx_BK, parent_pre_BE
        )

    def decode(self, code: HierarchicalCode) -> Float[Tensor, "B M"]:
        acts_BD = torch.cat([code.parent_acts_BK, code.child_acts_BK], dim=1)
        idx_BD = torch.cat([code.parent_idx_BK, code.child_idx_BK], dim=1)
        return topk_decode(acts_BD, idx_BD, self.W_dec_GM, self.b_dec_M)

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B G"]:
        """Dense code over all G latents: parents first, then children (``E + 2e + c``)."""
        code = self.encode(x_BM)
        acts_BD = torch.cat([code.parent_acts_BK, code.child_acts_BK], dim=1)
        idx_BD = torch.cat([code.parent_idx_BK, code.child_idx_BK], dim=1)
        # Parent and child indices never collide, so a plain scatter is exact.
        return densify(acts_BD, idx_BD, self.width)

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        return self.decode(self.encode(x_BM))

    def decoder_directions(self) -> Float[Tensor, "G M"]:
        return self.W_dec_GM

    def encoder_directions(self) -> Float[Tensor, "G M"]:
        return self.W_enc_MG.T

    def composed_directions(self) -> Float[Tensor, "H M"]:
        """What parent ``e`` with child ``c`` writes, at row ``2e + c``: parent row + child row."""
        parents_EM = self.W_dec_GM[: self.num_parents]
        return parents_EM.repeat_interleave(CHILDREN, dim=0) + self.W_dec_GM[self.num_parents :]

    def children_on(self) -> Float[Tensor, ""]:
        """1 once the parents' warm-up is over, else 0 (a tensor: no host sync per step)."""
        samples_trained: Tensor = self.samples_trained  # pyright: ignore[reportAssignmentType]
        return (samples_trained >= self.shape.child_warmup_samples).float()

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        code = self.encode(x_BM)
        if self.training:
            code = replace(code, child_acts_BK=code.child_acts_BK * self.children_on())
            samples_trained: Tensor = self.samples_trained  # pyright: ignore[reportAssignmentType]
            samples_trained.add_(x_BM.shape[0])
        recon_BM = self.decode(code)
        mse = reconstruction_error(recon_BM, x_BM)
        steps_since_fired_E: Tensor = self.steps_since_fired_E  # pyright: ignore[reportAssignmentType]
        # AuxK revives parents; a dead child has a live parent and keeps competing with its sibling.
        return reconstruction_loss_with_auxk(
            mse,
            code.parent_pre_BE,
            x_BM - recon_BM,
            (code.parent_acts_BK, code.parent_idx_BK),
            steps_since_fired_E,
            self.W_dec_GM[: self.num_parents],
            self.shape.auxk_settings(),
        )

    @torch.no_grad()
    def load_hierarchy(
        self, parents_DM: Float[Tensor, "D M"], offsets_D2M: Float[Tensor, "D 2 M"]
    ) -> None:
        """Set the first D parents' rows to given parents and their children's rows to offsets."""
        rows = min(parents_DM.shape[0], self.num_parents)
        self.W_dec_GM[:rows] = parents_DM[:rows]
        start = self.num_parents
        self.W_dec_GM[start : start + CHILDREN * rows] = offsets_D2M[:rows].flatten(0, 1)
        self.W_enc_MG.copy_(self.W_dec_GM.T)

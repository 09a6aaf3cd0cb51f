"""A sampler for sae-lens ``SyntheticModel``s whose every tensor has a shape fixed by the batch size.

``SyntheticSource`` draws children only under parents that fired, so its sizes depend on the data:
each step waits for the device to say how many entries there are (``nonzero``), which stalls a GPU
and rules out CUDA graphs. Here a batch is a fixed number of slots per sample:
- the features outside the trees fire densely (as in ``SyntheticSource``) and the first
  ``free_cap`` that fired, in feature order, fill the free slots. More than ``free_cap`` in one
  sample is an overflow: the extra features are dropped and counted (``overflow()``); the cap is
  set from a calibration draw with a wide margin, so at the presets none is seen;
- every tree root has a slot of its own (exact);
- each tree level gets, per slot of the level above, one slot where all parents at that level have
  mutually exclusive children (one child at most survives: exact), else one per child (exact).

The rules are ``SyntheticSource``'s (sae-lens 6.54's); only the bookkeeping differs. Empty slots hold
feature 0 with value 0, so decoding all slots with one ``embedding_bag`` is exact.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.toy.data.synthetic import Entries, SparseBatch, SyntheticSource, take

if TYPE_CHECKING:
    from sae_lens.synthetic import SyntheticModel

# Calibration of the free-slot cap: the most fired free features seen in this many samples, times
# the margin, plus a constant (a correlated Bernoulli sum's tail is thin: 1.5x the max over 65k
# samples is many standard deviations further out).
CALIBRATION_SAMPLES = 65_536
CAP_MARGIN = 1.5
CAP_EXTRA = 8


@dataclass(frozen=True)
class SlotBatch:
    """A batch as fixed slots per sample: feature ids and values (0 where a slot is empty)."""

    x_BM: Float[Tensor, "B M"]
    features_BO: Int[Tensor, "B O"]
    values_BO: Float[Tensor, "B O"]

    def dense(self, num_features: int) -> Float[Tensor, "B N"]:
        """The true feature magnitudes as a dense matrix (empty slots add 0 to feature 0)."""
        dense_BN = self.x_BM.new_zeros(self.x_BM.shape[0], num_features)
        return dense_BN.scatter_add_(1, self.features_BO, self.values_BO)

    def sparse(self, num_features: int) -> Float[Tensor, "B N"]:
        """The true magnitudes as a sparse COO tensor of fixed size (empty slots are explicit 0s)."""
        batch, slots = self.features_BO.shape
        rows_BO = torch.arange(batch, device=self.x_BM.device)[:, None].expand(batch, slots)
        indices_2J = torch.stack([rows_BO.flatten(), self.features_BO.flatten()])
        shape = (batch, num_features)
        return torch.sparse_coo_tensor(
            indices_2J, self.values_BO.flatten(), shape, check_invariants=False
        )


class FixedShapeSource(SyntheticSource):
    """``SyntheticSource``'s distribution with no data-dependent shape and no host sync per batch.

    ``free_cap`` (default: calibrated) bounds the fired loose features kept per sample. A
    ``generator`` of None draws from torch's global generator (what ``torch.compile`` can trace).
    """

    def __init__(
        self, model: "SyntheticModel", device: torch.device, free_cap: int | None = None
    ) -> None:
        super().__init__(model, device)
        hierarchy = self.hierarchy
        is_root_N = (hierarchy.parent_of_N < 0) & (hierarchy.group_of_N >= 0)
        self.roots_A = is_root_N.nonzero().squeeze(1)
        self.loose_L = ((hierarchy.parent_of_N < 0) & ~is_root_N).nonzero().squeeze(1)
        # Column len(loose) of the padded tables is the empty slot: feature 0, magnitude 0.
        self.padded_loose_L = torch.cat([self.loose_L, self.loose_L.new_zeros(1)])
        loose_L4 = self.free_params(self.loose_L)
        self.padded_loose_L4 = torch.cat([loose_L4, loose_L4.new_zeros(1, 4)])
        self.root_A4 = self.free_params(self.roots_A)
        self.factor_loose_UL: Tensor | None = None
        self.factor_roots_UA: Tensor | None = None
        if self.factor_NU is not None:
            self.factor_loose_UL = self.factor_NU[self.loose_L].T.contiguous()
            self.factor_roots_UA = self.factor_NU[self.roots_A].T.contiguous()
        self.exclusive_levels = exclusive_levels(
            hierarchy.parent_of_N, hierarchy.parent_of_G, hierarchy.exclusive_G, hierarchy.depth
        )
        # Dropped loose features and all fired loose features, summed on the device.
        self.dropped = torch.zeros((), dtype=torch.int64, device=device)
        self.fired = torch.zeros((), dtype=torch.int64, device=device)
        self.free_cap = free_cap or self.calibrated_cap()

    @torch.no_grad()
    def calibrated_cap(self) -> int:
        generator = torch.Generator(self.device).manual_seed(0)
        most = 0
        for _ in range(CALIBRATION_SAMPLES // 8192):
            eps_BU = self.factor_draw(8192, generator)
            fire_BL = self.fire(
                eps_BU, self.padded_loose_L4[:-1], self.factor_loose_UL, 8192, generator
            )
            most = max(most, int(fire_BL.sum(1).max()))
        return int(CAP_MARGIN * most) + CAP_EXTRA

    def overflow(self) -> dict[str, int]:
        """Loose features dropped for want of a slot, and all that fired, since construction."""
        return {"dropped": int(self.dropped), "fired": int(self.fired)}

    def sample_slots(self, batch_size: int, generator: torch.Generator | None) -> SlotBatch:
        """A batch as fixed slots: ``free_cap`` loose, one per root, then each tree level's."""
        device = self.device
        loose = len(self.loose_L)
        eps_BU = self.factor_draw(batch_size, generator)
        fire_BL = self.fire(
            eps_BU, self.padded_loose_L4[:-1], self.factor_loose_UL, batch_size, generator
        )
        fire_BA = self.fire(eps_BU, self.root_A4, self.factor_roots_UA, batch_size, generator)
        cap = self.free_cap
        count_B = fire_BL.sum(1)
        self.fired.add_(count_B.sum())
        self.dropped.add_((count_B - cap).clamp_min(0).sum())
        # The first `cap` fired loose features, by a running count; the rest land in column `cap`,
        # dropped.
        position_BL = fire_BL.cumsum(1) - 1
        target_BL = torch.where(fire_BL & (position_BL < cap), position_BL, cap)
        column_BL = torch.arange(loose, device=device).expand(batch_size, loose)
        slot_BO = torch.full((batch_size, cap + 1), loose, device=device, dtype=torch.long)
        slot_BO = slot_BO.scatter_(1, target_BL, column_BL)[:, :cap]
        loose_BO4 = take(self.padded_loose_L4, slot_BO)
        normal_BO = torch.randn(slot_BO.shape, generator=generator, device=device)
        loose_value_BO = torch.relu(loose_BO4[..., 0] + loose_BO4[..., 1] * normal_BO)
        roots = len(self.roots_A)
        normal_BA = torch.randn(batch_size, roots, generator=generator, device=device)
        root_value_BA = torch.relu(self.root_A4[:, 0] + self.root_A4[:, 1] * normal_BA) * fire_BA
        rows_BA = torch.arange(batch_size, device=device)[:, None].expand(batch_size, roots)
        level = Entries(
            rows_BA,
            self.roots_A.expand(batch_size, roots),
            root_value_BA,
            self.tables.group_of_N[self.roots_A].expand(batch_size, roots),
            self.root_A4[:, 0].expand(batch_size, roots),
        )
        features = [take(self.padded_loose_L, slot_BO), level.features_J]
        values = [loose_value_BO, root_value_BA]
        gauss_BC = self.children_draw(eps_BU)
        for exclusive in self.exclusive_levels:
            level = self.next_level(level, gauss_BC, exclusive, generator)
            features.append(level.features_J)
            values.append(level.values_J)
        features_BO = torch.cat(features, dim=1)
        values_BO = torch.cat(values, dim=1)
        x_BM = F.embedding_bag(features_BO, self.W_NM, mode="sum", per_sample_weights=values_BO)
        return SlotBatch(x_BM + self.bias_M, features_BO, values_BO)

    def next_level(
        self,
        parents: Entries,
        gauss_BC: Float[Tensor, "B C"] | None,
        exclusive: bool,
        generator: torch.Generator | None,
    ) -> Entries:
        """The children of a level's slots: one slot per parent slot where every parent at the
        level has exclusive children (its winner, or empty), else one per child."""
        kids = self.draw_children(parents.rows_J, parents, gauss_BC, generator)
        if exclusive:
            winner_BO1 = kids.winner_D1

            def pick(t: Tensor) -> Tensor:
                return t.gather(2, winner_BO1).squeeze(2)

            return Entries(
                parents.rows_J,
                pick(kids.kids_DK),
                pick(kids.values_DK),
                pick(kids.groups_DK),
                pick(kids.means_DK),
            )
        batch, slots, width = kids.kids_DK.shape
        rows_BOD = parents.rows_J[:, :, None].expand(batch, slots, width)
        parts = (rows_BOD, kids.kids_DK, kids.values_DK, kids.groups_DK, kids.means_DK)
        return Entries(*(t.reshape(batch, -1) for t in parts))

    def sample_sparse(self, batch_size: int, generator: torch.Generator | None) -> SparseBatch:
        """The active entries alone (variable size: for scoring, not the training loop)."""
        batch = self.sample_slots(batch_size, generator)
        rows_BO = torch.arange(batch_size, device=self.device)[:, None].expand_as(batch.features_BO)
        active_BO = batch.values_BO > 0
        return SparseBatch(
            batch.x_BM, rows_BO[active_BO], batch.features_BO[active_BO], batch.values_BO[active_BO]
        )

    def sample(
        self, batch_size: int, generator: torch.Generator | None
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        """Activations and true magnitudes (a sparse COO tensor of fixed size)."""
        batch = self.sample_slots(batch_size, generator)
        return batch.x_BM, batch.sparse(self.num_features)


def exclusive_levels(
    parent_of_N: Int[Tensor, " N"],
    parent_of_G: Int[Tensor, " G"],
    exclusive_G: Bool[Tensor, " G"],
    depth: int,
) -> list[bool]:
    """For each tree level, whether every parent at that level has mutually exclusive children."""
    level_of_N = torch.zeros_like(parent_of_N)
    for _ in range(depth):
        level_of_N = torch.where(parent_of_N >= 0, level_of_N[parent_of_N.clamp_min(0)] + 1, 0)
    level_G = level_of_N[parent_of_G]
    return [bool(exclusive_G[level_G == level].all()) for level in range(depth)]

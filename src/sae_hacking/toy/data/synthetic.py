"""A fast sampler for any sae-lens ``SyntheticModel``, drawing from the same distribution.

sae-lens draws every feature of every sample (a dense B x N Gaussian copula), then walks the
hierarchy over dense columns and decodes with a dense B x N matmul. Here only what can fire is
drawn: the features without a parent (roots and features outside the trees) densely, then, level by
level, only the children of parents that fired. Given the copula's low-rank factor draw, features
fire independently, so drawing a child only where its parent is active is the same distribution
(tested against sae-lens in ``tests/toy/test_synthetic_source.py``). The batch is decoded from its
active entries with one ``embedding_bag``.

The rules copied from sae-lens 6.54 (``synthetic/activation_generator.py``, ``hierarchy/modifier.py``):
a feature fires where ``eps . factor_n + eta_n sqrt(diag_n) > Phi^-1(1 - p_n)`` (or with
probability ``p_n`` without correlation); its magnitude is ``relu(mean_n + std_n z)``; a feature is
active when its value is above zero; a child of an inactive parent is zeroed, a child of an active
parent is multiplied by ``parent value / parent mean`` where the parent scales its children; among
the active children of a mutually exclusive parent one, chosen uniformly, survives.
"""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.toy.protocol import SiblingStructure
from sae_hacking.toy.sparse_index import compressed_rows, flat_nonzero

# ``fire_flat``: below the z whose Phi is CUT_BYTES / 256, only a first random byte under
# CUT_BYTES can fire (4: on synth-sae-bench-1k about 6% of the entries are left to settle).
CUT_BYTES = 4

if TYPE_CHECKING:
    from sae_lens.synthetic import SyntheticModel
    from sae_lens.synthetic.hierarchy import HierarchyNode


@dataclass(frozen=True)
class Hierarchy:
    """The trees as tensors: each parent's children in a padded row, by level.

    ``parent_of_N[n]`` is feature n's parent feature (-1 for none); ``children_GD[g]`` the children
    of parent group g (-1 pads), ``group_of_N[n]`` feature n's group as a parent (-1 for a leaf);
    ``exclusive_G`` / ``rescale_G`` the group's parent flags; ``depth`` the number of child levels.
    """

    parent_of_N: Int[Tensor, " N"]
    group_of_N: Int[Tensor, " N"]
    parent_of_G: Int[Tensor, " G"]
    children_GD: Int[Tensor, "G D"]
    exclusive_G: Bool[Tensor, " G"]
    rescale_G: Bool[Tensor, " G"]
    depth: int

    @staticmethod
    def from_roots(roots: "list[HierarchyNode]", num_features: int) -> "Hierarchy":
        parent_of = [-1] * num_features
        groups: list[tuple[int, list[int], bool, bool]] = []
        depth = 0
        stack = [(root, 0) for root in roots]
        while stack:
            node, level = stack.pop()
            if node.feature_index is None:
                raise UserInputError(
                    "--model", "hierarchies with feature-less (organising) nodes are not supported"
                )
            if not node.children:
                continue
            kids = [child.feature_index for child in node.children]
            if any(kid is None for kid in kids):
                raise UserInputError(
                    "--model", "hierarchies with feature-less (organising) nodes are not supported"
                )
            for kid in kids:
                parent_of[kid] = node.feature_index  # pyright: ignore[reportCallIssue, reportArgumentType]
            groups.append(
                (
                    node.feature_index,
                    kids,  # pyright: ignore[reportArgumentType]
                    bool(node.mutually_exclusive_children),
                    bool(node.scale_children_by_parent),
                )
            )
            depth = max(depth, level + 1)
            stack.extend((child, level + 1) for child in node.children)
        width = max((len(kids) for _, kids, _, _ in groups), default=1)
        group_of = [-1] * num_features
        children = torch.full((len(groups), width), -1, dtype=torch.long)
        for g, (parent, kids, _, _) in enumerate(groups):
            group_of[parent] = g
            children[g, : len(kids)] = torch.tensor(kids)
        return Hierarchy(
            parent_of_N=torch.tensor(parent_of, dtype=torch.long),
            group_of_N=torch.tensor(group_of, dtype=torch.long),
            parent_of_G=torch.tensor([p for p, _, _, _ in groups], dtype=torch.long),
            children_GD=children,
            exclusive_G=torch.tensor([e for _, _, e, _ in groups], dtype=torch.bool),
            rescale_G=torch.tensor([r for _, _, _, r in groups], dtype=torch.bool),
            depth=depth,
        )

    def to(self, device: torch.device) -> "Hierarchy":
        return Hierarchy(
            self.parent_of_N.to(device),
            self.group_of_N.to(device),
            self.parent_of_G.to(device),
            self.children_GD.to(device),
            self.exclusive_G.to(device),
            self.rescale_G.to(device),
            self.depth,
        )


@dataclass(frozen=True)
class SparseBatch:
    """One batch: the activations and the active (sample, feature, value) entries behind them."""

    x_BM: Float[Tensor, "B M"]
    rows_J: Int[Tensor, " J"]
    features_J: Int[Tensor, " J"]
    values_J: Float[Tensor, " J"]

    def sparse(self, num_features: int) -> Float[Tensor, "B N"]:
        """The true feature magnitudes as a sparse COO tensor."""
        indices_2J = torch.stack([self.rows_J, self.features_J])
        shape = (self.x_BM.shape[0], num_features)
        return torch.sparse_coo_tensor(indices_2J, self.values_J, shape, check_invariants=False)

    def dense(self, num_features: int) -> Float[Tensor, "B N"]:
        """The true feature magnitudes as a dense matrix."""
        dense_BN = self.x_BM.new_zeros(self.x_BM.shape[0], num_features)
        dense_BN[self.rows_J, self.features_J] = self.values_J
        return dense_BN


@dataclass(frozen=True)
class Entries:
    """Active (sample, feature) entries, with each feature's group as a parent and mean magnitude.

    The fixed-shape sampler uses the same record with 2-d tensors (one row per sample) where an
    entry of value 0 is an empty slot.
    """

    rows_J: Int[Tensor, "..."]
    features_J: Int[Tensor, "..."]
    values_J: Float[Tensor, "..."]
    groups_J: Int[Tensor, "..."]
    means_J: Float[Tensor, "..."]

    def select(self, index_P: Int[Tensor, " P"]) -> "Entries":
        return Entries(
            self.rows_J.index_select(0, index_P),
            self.features_J.index_select(0, index_P),
            self.values_J.index_select(0, index_P),
            self.groups_J.index_select(0, index_P),
            self.means_J.index_select(0, index_P),
        )


@dataclass(frozen=True)
class Candidates:
    """Every child of some parent entries (shape: the parents' x D): ids, groups, mean magnitudes,
    values (0 unless kept), which are kept, and the uniformly chosen winner among active siblings."""

    kids_DK: Int[Tensor, "..."]
    groups_DK: Int[Tensor, "..."]
    means_DK: Float[Tensor, "..."]
    values_DK: Float[Tensor, "..."]
    keep_DK: Bool[Tensor, "..."]
    winner_D1: Int[Tensor, "..."]


@dataclass(frozen=True)
class ChildTables:
    """Per group of children, everything drawing them reads, in one table per dtype.

    ``params_GDP[g, d]`` holds child d's mean magnitude, std, threshold (or firing probability),
    copula noise scale, and 1 if the child exists; ``ids_GD3[g, d]`` its feature id, its own group
    and its column among the children (where its copula draw is). The last group, ``empty_group``,
    has no children: it stands for leaves and empty slots.
    """

    params_GDP: Float[Tensor, "G D P"]
    ids_GD3: Int[Tensor, "G D 3"]
    group_of_N: Int[Tensor, " N"]
    rescale_G: Bool[Tensor, " G"]
    exclusive_G: Bool[Tensor, " G"]
    empty_group: int

    @staticmethod
    def build(source: "SyntheticSource") -> "ChildTables":
        hierarchy = source.hierarchy
        groups, width = hierarchy.children_GD.shape
        children_GD = hierarchy.children_GD
        no_kids_1D = children_GD.new_full((1, width), -1)
        kids_GD = torch.cat([children_GD, no_kids_1D]).clamp_min(0)
        real_GD = torch.cat([children_GD, no_kids_1D]) >= 0
        group_of_N = torch.where(hierarchy.group_of_N >= 0, hierarchy.group_of_N, groups)
        params_GD4 = source.free_params(kids_GD.flatten()).view(groups + 1, width, 4)
        column_GD = source.column_of_N[kids_GD].clamp_min(0)
        no = torch.zeros(1, dtype=torch.bool, device=children_GD.device)
        return ChildTables(
            params_GDP=torch.cat([params_GD4, real_GD[..., None].float()], dim=-1),
            ids_GD3=torch.stack([kids_GD, group_of_N[kids_GD], column_GD], dim=-1),
            group_of_N=group_of_N,
            rescale_G=torch.cat([hierarchy.rescale_G, no]),
            exclusive_G=torch.cat([hierarchy.exclusive_G, no]),
            empty_group=groups,
        )


def take(table_GD: Tensor, index_BO: Tensor) -> Tensor:
    """``table[index]`` for an index of any shape, through ``index_select`` (on the CPU several
    times faster than advanced indexing)."""
    rows = table_GD.index_select(0, index_BO.flatten())
    return rows.view(*index_BO.shape, *table_GD.shape[1:])


class SyntheticSource:
    """A ``FeatureSource`` (and ``HasSiblings``) drawing a sae-lens ``SyntheticModel``'s data."""

    def __init__(self, model: "SyntheticModel", device: torch.device) -> None:
        generator = model.activation_generator
        if generator.correlation_matrix is not None:
            raise UserInputError("--model", "full-rank correlation matrices are not supported")
        if generator.modify_activations is not None and model.hierarchy is None:
            raise UserInputError("--model", "custom activation modifiers are not supported")
        self.device = device
        self.num_features = int(model.cfg.num_features)
        self.probs_N = generator.firing_probabilities.to(device, torch.float32)
        self.mean_N = generator.mean_firing_magnitudes.to(device, torch.float32)
        self.std_N = generator.std_firing_magnitudes.to(device, torch.float32)
        self.W_NM = model.feature_dict.feature_vectors.detach().to(device, torch.float32)
        self.bias_M = model.feature_dict.bias.detach().to(device, torch.float32)
        self.factor_NU: Tensor | None = None
        if generator.low_rank_correlation is not None:
            factor_NU, diag_sqrt_N = generator.low_rank_correlation
            self.factor_NU = factor_NU.to(device, torch.float32)
            self.diag_sqrt_N = diag_sqrt_N.to(device, torch.float32)
            thresholds = generator.correlation_thresholds
            assert thresholds is not None
            self.thresholds_N = thresholds.to(device, torch.float32)
        roots = list(model.hierarchy.roots) if model.hierarchy is not None else []
        self.hierarchy = Hierarchy.from_roots(roots, self.num_features).to(device)
        has_parent_N = self.hierarchy.parent_of_N >= 0
        self.free_F = (~has_parent_N).nonzero().squeeze(1)
        self.free_F4 = self.free_params(self.free_F)
        # Children's copula draws come from one matmul per batch, read back by column.
        self.children_C = has_parent_N.nonzero().squeeze(1)
        self.column_of_N = torch.full_like(self.hierarchy.parent_of_N, -1)
        self.column_of_N[self.children_C] = torch.arange(len(self.children_C), device=device)
        self.factor_free_UF: Tensor | None = None
        self.factor_children_UC: Tensor | None = None
        if self.factor_NU is not None:
            self.factor_free_UF = self.factor_NU[self.free_F].T.contiguous()
            # z = (g - t) / s for ``fire_flat`` as one addmm.
            noise_scale_F = self.free_F4[:, 3]
            self.factor_free_scaled_UF = (self.factor_free_UF / noise_scale_F).contiguous()
            self.offset_free_F = -self.free_F4[:, 2] / noise_scale_F
            # Rounded down, so that z < z_cut surely means Phi(z) < CUT_BYTES / 256 in float.
            self.z_cut = (
                float(torch.special.ndtri(torch.tensor(CUT_BYTES / 256, dtype=torch.float64)))
                - 1e-4
            )
            if len(self.children_C):
                self.factor_children_UC = self.factor_NU[self.children_C].T.contiguous()
        self.tables = ChildTables.build(self)

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self.W_NM

    @property
    def parent_N(self) -> Int[Tensor, " N"]:
        """Each feature's parent feature, -1 for none (as ``TreeSource.parent_N``)."""
        return self.hierarchy.parent_of_N

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"f{n}" for n in range(self.num_features))

    @property
    def siblings(self) -> SiblingStructure:
        """Parents are the features with children, in feature order."""
        parent_of_N = self.hierarchy.parent_of_N
        parents_A = self.hierarchy.parent_of_G.sort().values
        row_of_parent = torch.full_like(parent_of_N, -1)
        row_of_parent[parents_A] = torch.arange(len(parents_A), device=parents_A.device)
        rows_N = torch.where(parent_of_N >= 0, row_of_parent[parent_of_N.clamp_min(0)], -1)
        return SiblingStructure(self.W_NM[parents_A], rows_N)

    def sample_sparse(self, batch_size: int, generator: torch.Generator | None) -> SparseBatch:
        """A batch as its active entries and the activations they make."""
        batch = self.draw(batch_size, generator)
        alive_J = (batch.values_J > 0).nonzero().squeeze(1)
        return SparseBatch(
            batch.x_BM,
            batch.rows_J.index_select(0, alive_J),
            batch.features_J.index_select(0, alive_J),
            batch.values_J.index_select(0, alive_J),
        )

    def draw(self, batch_size: int, generator: torch.Generator | None) -> SparseBatch:
        """A batch whose entries may include some of value 0 (a magnitude ReLU'd to 0).

        Entries of value 0 decode to nothing and have no children: filtering them once, for
        ``sample_sparse``, rather than at every level, saves the sampler a fifth of its ops.
        """
        device = self.device
        eps_BU = self.factor_draw(batch_size, generator)
        flat_J = self.fire_flat(eps_BU, batch_size, generator)
        width = len(self.free_F)
        rows_J = flat_J.div(width, rounding_mode="floor")
        cols_J = flat_J - rows_J * width
        features_J = self.free_F.index_select(0, cols_J)
        params_J4 = self.free_F4.index_select(0, cols_J)
        normal_J = torch.randn(cols_J.shape, generator=generator, device=device)
        values_J = torch.relu(params_J4[:, 0] + params_J4[:, 1] * normal_J)
        free = Entries(
            rows_J,
            features_J,
            values_J,
            self.tables.group_of_N.index_select(0, features_J),
            params_J4[:, 0],
        )
        parts = [free]
        # Only roots among the free features have children; below them every entry may.
        entries = free.select((free.groups_J != self.tables.empty_group).nonzero().squeeze(1))
        gauss_BC = self.children_draw(eps_BU)
        for _ in range(self.hierarchy.depth):
            entries = self.children_of(entries, gauss_BC, generator)
            parts.append(entries)
        # Each level's entries come sorted by sample, so each decodes as one embedding_bag
        # (no J x M intermediate: gathering, scaling and adding the rows cost a fifth of a batch).
        x_BM = self.bias_M.expand(batch_size, -1).clone()
        for part in parts:
            starts_D = compressed_rows(part.rows_J, batch_size)
            x_BM += F.embedding_bag(
                part.features_J,
                self.W_NM,
                starts_D,
                mode="sum",
                per_sample_weights=part.values_J,
                include_last_offset=True,
            )
        rows_J = torch.cat([p.rows_J for p in parts])
        features_J = torch.cat([p.features_J for p in parts])
        values_J = torch.cat([p.values_J for p in parts])
        return SparseBatch(x_BM, rows_J, features_J, values_J)

    def factor_draw(
        self, batch_size: int, generator: torch.Generator | None
    ) -> Float[Tensor, "B U"] | None:
        """The copula's shared low-rank draw (None without correlation)."""
        if self.factor_NU is None:
            return None
        rank = self.factor_NU.shape[1]
        return torch.randn(batch_size, rank, generator=generator, device=self.device)

    def fire(
        self,
        eps_BU: Float[Tensor, "B U"] | None,
        params_D4: Float[Tensor, "D 4"],
        factor_UD: Float[Tensor, "U D"] | None,
        batch_size: int,
        generator: torch.Generator | None,
    ) -> Bool[Tensor, "B D"]:
        """Which of some parentless features fire (their rows of ``free_params``)."""
        shape = (batch_size, params_D4.shape[0])
        if eps_BU is None or factor_UD is None:
            return torch.rand(shape, generator=generator, device=self.device) < params_D4[:, 2]
        gauss_BD = eps_BU @ factor_UD
        noise_BD = torch.randn(shape, generator=generator, device=self.device)
        return gauss_BD.addcmul_(noise_BD, params_D4[:, 3]) > params_D4[:, 2]

    def fire_flat(
        self,
        eps_BU: Float[Tensor, "B U"] | None,
        batch_size: int,
        generator: torch.Generator | None,
    ) -> Int[Tensor, " J"]:
        """Which parentless features fire, as flat indices into batch x ``free_F``, ascending.

        With the copula a feature fires iff ``g + s n > t``, n ~ N(0, 1): given g, with
        probability Phi(z), z = (g - t) / s, so iff a uniform u < Phi(z). Drawing u's first byte
        k (u = (k + v) / 256) settles most entries with no normal draw and no Phi: where
        z < z_cut, Phi(z) < CUT_BYTES / 256, so only k < CUT_BYTES can fire. The few entries left
        (z >= z_cut or k small) are settled exactly by drawing v. One random byte an entry costs
        about an eighth of a normal on torch's CPU generator (``fire`` is the plain form).
        """
        if eps_BU is None or self.factor_free_UF is None:
            return flat_nonzero(
                self.fire(eps_BU, self.free_F4, self.factor_free_UF, batch_size, generator)
            )
        z_BF = torch.addmm(self.offset_free_F, eps_BU, self.factor_free_scaled_UF)
        count = z_BF.numel()
        words = torch.empty((count + 7) // 8, dtype=torch.int64, device=self.device)
        words.random_(-(2**63), None, generator=generator)  # all 64 bits
        byte_BF = words.view(torch.uint8)[:count].view_as(z_BF)
        maybe_J = flat_nonzero((byte_BF < CUT_BYTES) | (z_BF >= self.z_cut))
        uniform_J = torch.rand(maybe_J.shape, generator=generator, device=self.device)
        uniform_J = uniform_J.add_(byte_BF.view(-1).index_select(0, maybe_J)).mul_(1 / 256)
        fires_J = uniform_J < torch.special.ndtr(z_BF.view(-1).index_select(0, maybe_J))
        return maybe_J.masked_select(fires_J)

    def children_draw(self, eps_BU: Float[Tensor, "B U"] | None) -> Float[Tensor, "B C"] | None:
        """Every child's copula factor draw, from one matmul per batch (read back by column)."""
        if eps_BU is None or self.factor_children_UC is None:
            return None
        return eps_BU @ self.factor_children_UC

    def free_params(self, chosen_D: Int[Tensor, " D"]) -> Float[Tensor, "D 4"]:
        """Per feature: magnitude mean and std, threshold (or firing probability), noise scale."""
        if self.factor_NU is None:
            firing = [self.probs_N[chosen_D], torch.zeros_like(self.probs_N[chosen_D])]
        else:
            firing = [self.thresholds_N[chosen_D], self.diag_sqrt_N[chosen_D]]
        return torch.stack([self.mean_N[chosen_D], self.std_N[chosen_D], *firing], dim=1)

    def draw_children(
        self,
        rows_D: Int[Tensor, "..."],
        parents: "Entries",
        gauss_BC: Float[Tensor, "B C"] | None,
        generator: torch.Generator | None,
    ) -> "Candidates":
        """Every child of the given parent entries, each kept or not, in the parents' shape x D.

        Parents whose value is 0 (empty) or that are leaves point at the empty group.
        """
        device = self.device
        tables = self.tables
        group_D = torch.where(parents.values_J > 0, parents.groups_J, tables.empty_group)
        params_DKP = take(tables.params_GDP, group_D)
        kids_DK, kid_group_DK, column_DK = take(tables.ids_GD3, group_D).unbind(-1)
        shape = kids_DK.shape
        mean_DK, std_DK, threshold_DK, noise_scale_DK, real_DK = params_DKP.unbind(-1)
        # One draw for the copula noise, the magnitude and the sibling race (iid normals: the
        # largest among the active siblings is a uniform choice).
        noise_DK, normal_DK, keys_DK = torch.randn(
            (3, *shape), generator=generator, device=device
        ).unbind(0)
        if gauss_BC is not None:
            flat_DK = rows_D[..., None] * gauss_BC.shape[1] + column_DK
            gauss_DK = take(gauss_BC.view(-1), flat_DK)
            fire_DK = gauss_DK.addcmul_(noise_DK, noise_scale_DK) > threshold_DK
        else:  # the threshold column holds the firing probability
            fire_DK = torch.rand(shape, generator=generator, device=device) < threshold_DK
        magnitude_DK = torch.relu(mean_DK + std_DK * normal_DK)
        rescale_D = take(tables.rescale_G, group_D)
        scale_D = torch.where(rescale_D, parents.values_J / parents.means_J, 1.0)
        value_DK = magnitude_DK * scale_D[..., None]
        active_DK = fire_DK & (real_DK > 0) & (value_DK > 0)
        # Exclusive parents keep one active child, chosen uniformly: the largest of iid keys.
        winner_D1 = keys_DK.masked_fill(~active_DK, -math.inf).argmax(dim=-1, keepdim=True)
        is_winner_DK = torch.zeros_like(active_DK).scatter_(-1, winner_D1, True)
        exclusive_D = take(tables.exclusive_G, group_D)
        keep_DK = active_DK & (is_winner_DK | ~exclusive_D[..., None])
        return Candidates(kids_DK, kid_group_DK, mean_DK, value_DK * keep_DK, keep_DK, winner_D1)

    def children_of(
        self,
        parents: "Entries",
        gauss_BC: Float[Tensor, "B C"] | None,
        generator: torch.Generator | None,
    ) -> "Entries":
        """The active children of the given entries (one level down the trees)."""
        kids = self.draw_children(parents.rows_J, parents, gauss_BC, generator)
        keep_Q = kids.keep_DK.flatten().nonzero().squeeze(1)
        width = kids.kids_DK.shape[1]
        return Entries(
            parents.rows_J.index_select(0, keep_Q // width),
            kids.kids_DK.flatten().index_select(0, keep_Q),
            kids.values_DK.flatten().index_select(0, keep_Q),
            kids.groups_DK.flatten().index_select(0, keep_Q),
            kids.means_DK.flatten().index_select(0, keep_Q),
        )

    def sample(
        self, batch_size: int, generator: torch.Generator | None
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        """Activations and true magnitudes, the magnitudes as a sparse COO tensor.

        Sparse because the trainer never reads them and filling a dense B x N matrix every step
        cost about a tenth of a CPU step at 1k features; ``.to_dense()`` where needed.
        """
        batch = self.draw(batch_size, generator)
        return batch.x_BM, batch.sparse(self.num_features)

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

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.toy.protocol import SiblingStructure

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
        # Children's copula draws come from one matmul per batch, read back by column.
        self.children_C = has_parent_N.nonzero().squeeze(1)
        self.column_of_N = torch.full_like(self.hierarchy.parent_of_N, -1)
        self.column_of_N[self.children_C] = torch.arange(len(self.children_C), device=device)

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self.W_NM

    @property
    def siblings(self) -> SiblingStructure:
        """Parents are the features with children, in feature order."""
        parent_of_N = self.hierarchy.parent_of_N
        parents_A = self.hierarchy.parent_of_G.sort().values
        row_of_parent = torch.full_like(parent_of_N, -1)
        row_of_parent[parents_A] = torch.arange(len(parents_A), device=parents_A.device)
        rows_N = torch.where(parent_of_N >= 0, row_of_parent[parent_of_N.clamp_min(0)], -1)
        return SiblingStructure(self.W_NM[parents_A], rows_N)

    def sample_sparse(self, batch_size: int, generator: torch.Generator) -> SparseBatch:
        """A batch as its active entries and the activations they make."""
        device = self.device
        hierarchy = self.hierarchy
        eps_BU = None
        if self.factor_NU is not None:
            eps_BU = torch.randn(
                batch_size, self.factor_NU.shape[1], generator=generator, device=device
            )
        free_F = self.free_F
        if eps_BU is not None:
            gauss_BF = eps_BU @ self.factor_NU[free_F].T  # pyright: ignore[reportOptionalSubscript]
            noise_BF = torch.randn(gauss_BF.shape, generator=generator, device=device)
            fire_BF = (
                gauss_BF.addcmul_(noise_BF, self.diag_sqrt_N[free_F]) > self.thresholds_N[free_F]
            )
        else:
            uniform_BF = torch.rand(batch_size, len(free_F), generator=generator, device=device)
            fire_BF = uniform_BF < self.probs_N[free_F]
        rows_J, cols_J = fire_BF.nonzero(as_tuple=True)
        features_J = free_F[cols_J]
        values_J = self.magnitudes(features_J, generator)
        alive_J = values_J > 0
        rows_J, features_J, values_J = rows_J[alive_J], features_J[alive_J], values_J[alive_J]
        parts = [(rows_J, features_J, values_J)]
        gauss_BC = None
        if eps_BU is not None and len(self.children_C):
            gauss_BC = eps_BU @ self.factor_NU[self.children_C].T  # pyright: ignore[reportOptionalSubscript]
        for _ in range(hierarchy.depth):
            rows_J, features_J, values_J = self.children_of(
                rows_J, features_J, values_J, gauss_BC, generator
            )
            parts.append((rows_J, features_J, values_J))
        rows_J = torch.cat([p[0] for p in parts])
        features_J = torch.cat([p[1] for p in parts])
        values_J = torch.cat([p[2] for p in parts])
        order_J = torch.argsort(rows_J, stable=True)
        rows_J, features_J, values_J = rows_J[order_J], features_J[order_J], values_J[order_J]
        counts_B = torch.bincount(rows_J, minlength=batch_size)
        offsets_B = torch.cumsum(counts_B, 0) - counts_B
        x_BM = F.embedding_bag(
            features_J, self.W_NM, offsets_B, mode="sum", per_sample_weights=values_J
        )
        return SparseBatch(x_BM + self.bias_M, rows_J, features_J, values_J)

    def magnitudes(self, features_J: Int[Tensor, " J"], generator: torch.Generator) -> Tensor:
        normal_J = torch.randn(features_J.shape, generator=generator, device=self.device)
        return torch.relu(self.mean_N[features_J] + self.std_N[features_J] * normal_J)

    def children_of(
        self,
        rows_J: Int[Tensor, " J"],
        features_J: Int[Tensor, " J"],
        values_J: Float[Tensor, " J"],
        gauss_BC: Float[Tensor, "B C"] | None,
        generator: torch.Generator,
    ) -> tuple[Int[Tensor, " Q"], Int[Tensor, " Q"], Float[Tensor, " Q"]]:
        """The active children of the given active entries (one level down the trees)."""
        hierarchy = self.hierarchy
        group_J = hierarchy.group_of_N[features_J]
        is_parent_J = group_J >= 0
        rows_P, group_P = rows_J[is_parent_J], group_J[is_parent_J]
        parent_value_P = values_J[is_parent_J]
        kids_PD = hierarchy.children_GD[group_P]
        real_PD = kids_PD >= 0
        kids_PD = kids_PD.clamp_min(0)
        if gauss_BC is not None:
            gauss_PD = gauss_BC[rows_P[:, None], self.column_of_N[kids_PD]]
            noise_PD = torch.randn(kids_PD.shape, generator=generator, device=self.device)
            fire_PD = gauss_PD + noise_PD * self.diag_sqrt_N[kids_PD] > self.thresholds_N[kids_PD]
        else:
            uniform_PD = torch.rand(kids_PD.shape, generator=generator, device=self.device)
            fire_PD = uniform_PD < self.probs_N[kids_PD]
        normal_PD = torch.randn(kids_PD.shape, generator=generator, device=self.device)
        magnitude_PD = torch.relu(self.mean_N[kids_PD] + self.std_N[kids_PD] * normal_PD)
        parent_P = features_J[is_parent_J]
        scale_P = torch.where(
            hierarchy.rescale_G[group_P], parent_value_P / self.mean_N[parent_P], 1.0
        )
        value_PD = magnitude_PD * scale_P[:, None]
        active_PD = fire_PD & real_PD & (value_PD > 0)
        # Exclusive parents keep one active child, chosen uniformly: the largest of uniform keys.
        keys_PD = torch.rand(kids_PD.shape, generator=generator, device=self.device)
        winner_P = keys_PD.masked_fill(~active_PD, -1.0).argmax(dim=1)
        is_winner_PD = torch.zeros_like(active_PD)
        is_winner_PD[torch.arange(len(winner_P), device=self.device), winner_P] = True
        keep_PD = active_PD & (is_winner_PD | ~hierarchy.exclusive_G[group_P][:, None])
        p, d = keep_PD.nonzero(as_tuple=True)
        return rows_P[p], kids_PD[p, d], value_PD[p, d]

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        """Activations and true magnitudes, the magnitudes as a sparse COO tensor.

        Sparse because the trainer never reads them and filling a dense B x N matrix every step
        cost about a tenth of a CPU step at 1k features; ``.to_dense()`` where needed.
        """
        batch = self.sample_sparse(batch_size, generator)
        return batch.x_BM, batch.sparse(self.num_features)

"""Vectorized sampling of tree hierarchies on the device, as a ``FeatureSource``.

Why not sae-lens's ``ActivationGenerator`` with ``hierarchy_modifier``: it draws from torch's global
RNG (no generator argument), cannot give a gating node without a direction its own firing
probability, and resolves mutual exclusion by dropping all but one of the siblings that fired,
so "exactly one child whenever the parent fires" (the hedging paper's trees) cannot be expressed.
On trees it can express (independent children, all nodes read out) both give the same firing
statistics (see tests). Directions in superposition (more features than dimensions) come from
sae-lens's ``orthogonalize_embeddings``.

Sampling draws every node's Bernoulli and magnitude at once, then gates level by level (one
indexing step per depth), with no host synchronisation.
"""

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from sae_lens.synthetic import orthogonalize_embeddings
from torch import Tensor

from sae_hacking.toy.tree_spec import Forest, TreeNode


@dataclass(frozen=True)
class CompiledTree:
    """A forest flattened into per-node arrays (D nodes, N read-out features), on one device."""

    parent_D: Int[Tensor, " D"]
    p_D: Float[Tensor, " D"]
    mean_D: Float[Tensor, " D"]
    std_D: Float[Tensor, " D"]
    # Exclusive groups: a node's group (-1 if its parent is not exclusive) and its slice of [0, 1).
    group_D: Int[Tensor, " D"]
    low_D: Float[Tensor, " D"]
    high_D: Float[Tensor, " D"]
    num_groups: int
    # Nodes of each depth below the roots, for level-by-level gating.
    levels: tuple[Tensor, ...]
    node_of_N: Int[Tensor, " N"]
    # The nearest read-out ancestor of each feature (-1 if none): the metrics' parent relation.
    parent_N: Int[Tensor, " N"]
    names: tuple[str, ...]

    @property
    def num_features(self) -> int:
        return int(self.node_of_N.shape[0])


def compile_forest(forest: Forest, device: torch.device | str = "cpu") -> CompiledTree:
    """Flatten a forest: nodes in depth-first order, read-out nodes numbered as features."""
    parent, p, mean, std, group, low, high, depth = [], [], [], [], [], [], [], []
    node_of_n: list[int] = []
    parent_feature: list[int] = []
    names: list[str] = []
    groups = 0

    def visit(node: TreeNode, up: int, up_feature: int, d: int, slot: tuple[int, float, float]):
        nonlocal groups
        me = len(parent)
        parent.append(up)
        p.append(node.p)
        mean.append(node.mean)
        std.append(node.std)
        group.append(slot[0])
        low.append(slot[1])
        high.append(slot[2])
        depth.append(d)
        feature = up_feature
        if node.read_out:
            feature = len(node_of_n)
            node_of_n.append(me)
            parent_feature.append(up_feature)
            names.append(node.name or f"f{feature}")
        slots = [(-1, 0.0, 1.0)] * len(node.children)
        if node.exclusive:
            total = sum(c.p for c in node.children)
            edges = [sum(c.p for c in node.children[:i]) / total for i in range(len(node.children))]
            edges.append(1.0)
            slots = [(groups, edges[i], edges[i + 1]) for i in range(len(node.children))]
            groups += 1
        for child, child_slot in zip(node.children, slots, strict=True):
            visit(child, me, feature, d + 1, child_slot)

    for root in forest.roots:
        visit(root, -1, -1, 0, (-1, 0.0, 1.0))
    if not node_of_n:
        raise ValueError("the hierarchy has no read-out node, so no features")

    def longs(values: list[int]) -> Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    def floats(values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)

    depth_D = torch.tensor(depth)
    levels = tuple((depth_D == d).nonzero().squeeze(1).to(device) for d in range(1, max(depth) + 1))
    return CompiledTree(
        parent_D=longs(parent),
        p_D=floats(p),
        mean_D=floats(mean),
        std_D=floats(std),
        group_D=longs(group),
        low_D=floats(low),
        high_D=floats(high),
        num_groups=groups,
        levels=levels,
        node_of_N=longs(node_of_n),
        parent_N=longs(parent_feature),
        names=tuple(names),
    )


def sample_tree(
    tree: CompiledTree, batch_size: int, generator: torch.Generator
) -> Float[Tensor, "B N"]:
    """True feature magnitudes of one batch (0 where a feature is off)."""
    device = tree.p_D.device
    nodes = tree.p_D.shape[0]
    fired_BD = torch.rand(batch_size, nodes, generator=generator, device=device) < tree.p_D
    if tree.num_groups:
        pick_BG = torch.rand(batch_size, tree.num_groups, generator=generator, device=device)
        pick_BD = pick_BG[:, tree.group_D.clamp_min(0)]
        chosen_BD = (pick_BD >= tree.low_D) & (pick_BD < tree.high_D)
        fired_BD = torch.where(tree.group_D >= 0, chosen_BD, fired_BD)
    for nodes_D in tree.levels:
        fired_BD[:, nodes_D] &= fired_BD[:, tree.parent_D[nodes_D]]
    noise_BD = torch.randn(batch_size, nodes, generator=generator, device=device)
    magnitude_BD = (tree.mean_D + tree.std_D * noise_BD).abs()
    return (fired_BD * magnitude_BD)[:, tree.node_of_N]


def feature_directions(
    num_features: int, model_dim: int, generator: torch.Generator
) -> Float[Tensor, "N M"]:
    """Orthonormal directions when they fit, else sae-lens's nearly orthogonal unit vectors."""
    device = generator.device
    raw_MN = torch.randn(model_dim, num_features, generator=generator, device=device)
    if num_features <= model_dim:
        q_MN, r_NN = torch.linalg.qr(raw_MN)
        # Fix QR's sign ambiguity so the directions depend only on the generator's draws.
        return (q_MN * r_NN.diagonal().sign()).T.contiguous()
    return orthogonalize_embeddings(raw_MN.T).to(device)


class TreeSource:
    """A ``FeatureSource``: activations ``x = feature_acts @ features_NM`` from a tree hierarchy."""

    def __init__(self, tree: CompiledTree, features_NM: Float[Tensor, "N M"]) -> None:
        if features_NM.shape[0] != tree.num_features:
            raise ValueError(
                f"{features_NM.shape[0]} directions for {tree.num_features} read-out features"
            )
        self.tree = tree
        self._features_NM = features_NM

    @classmethod
    def build(cls, forest: Forest, model_dim: int, generator: torch.Generator) -> "TreeSource":
        """Compile the forest and draw its directions, on the generator's device."""
        tree = compile_forest(forest, generator.device)
        return cls(tree, feature_directions(tree.num_features, model_dim, generator))

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self._features_NM

    @property
    def parent_N(self) -> Int[Tensor, " N"]:
        """Each feature's nearest read-out ancestor (-1 for none)."""
        return self.tree.parent_N

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        acts_BN = sample_tree(self.tree, batch_size, generator)
        return acts_BN @ self._features_NM, acts_BN

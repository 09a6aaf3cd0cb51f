"""Tree-structured feature hierarchies: the node description, its JSON form, and named presets.

A node fires with probability ``p`` given that its parent fired (roots: unconditionally). Children
of a ``mutually_exclusive`` node are not drawn independently: whenever the node fires exactly one
child fires, chosen with probability proportional to the children's ``p`` (the hedging paper's
``TreeFeatureGenerator``; a child that is not read out then plays "none of them"). A node that is
not ``read_out`` has no direction of its own but still gates its children. A read-out node that
fires has magnitude ``|mean + std * N(0, 1)|``.

JSON form (``--hierarchy file.json``): ``{"roots": [node, ...]}`` where a node is
``{"p": 0.25, "children": [...], "exclusive": false, "read_out": true, "mean": 1.0, "std": 0.0,
"repeat": 1, "name": "..."}``; only ``p`` is required, and ``repeat`` makes that many copies of
the node (so 25 parents with 3 children each is two short lines). A spec is refused, before any
copy is made, when its nodes (repeats counted) exceed ``MAX_NODES``.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NODE_KEYS = {"p", "children", "exclusive", "read_out", "mean", "std", "repeat", "name"}
# Far beyond any toy (the presets have at most 100 nodes, SynthSAEBench 16k features); sampling
# and every metric cost at least one row per node.
MAX_NODES = 1_000_000


@dataclass(frozen=True)
class TreeNode:
    """One node of a feature hierarchy (see the module docstring for the meaning of each field)."""

    p: float
    children: tuple["TreeNode", ...] = ()
    exclusive: bool = False
    read_out: bool = True
    mean: float = 1.0
    std: float = 0.0
    name: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"node {self.label}: p={self.p} must lie in [0, 1]")
        if self.exclusive and len(self.children) < 2:
            raise ValueError(f"node {self.label}: exclusive children need at least two children")
        if self.exclusive and sum(c.p for c in self.children) <= 0:
            raise ValueError(f"node {self.label}: exclusive children need some p > 0")
        if self.mean < 0 or self.std < 0:
            raise ValueError(f"node {self.label}: mean and std must be non-negative")

    @property
    def label(self) -> str:
        return self.name or f"(p={self.p})"


@dataclass(frozen=True)
class Forest:
    """A list of root nodes; read-out nodes become true features in depth-first order."""

    roots: tuple[TreeNode, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("a hierarchy needs at least one root")


def repeat_count(raw: dict[str, Any], where: str) -> int:
    """A node's ``repeat``: a positive integer (``1e3`` as written in JSON counts as 1000)."""
    repeat = raw.get("repeat", 1)
    if isinstance(repeat, float) and repeat.is_integer():
        repeat = int(repeat)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"{where}: 'repeat' must be a positive integer, got {repeat!r}")
    return repeat


def too_many_nodes(where: str, count: int) -> ValueError:
    return ValueError(
        f"{where}: {count:.3g} nodes (repeats counted) exceed the limit of {MAX_NODES:,}"
    )


def parse_node(raw: Any, where: str) -> tuple[TreeNode, int, int]:
    """One JSON node: the node (its children's copies made), its repeat and its subtree's size.

    Copies are made only after the size is known to be within ``MAX_NODES``.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a node must be a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - NODE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(NODE_KEYS)}")
    if "p" not in raw:
        raise ValueError(f"{where}: every node needs a firing probability 'p'")
    repeat = repeat_count(raw, where)
    raw_children = raw.get("children", [])
    if not isinstance(raw_children, list):
        raise ValueError(f"{where}: 'children' must be a list of nodes")
    parsed = [parse_node(c, f"{where}.children[{i}]") for i, c in enumerate(raw_children)]
    size = 1 + sum(copies * subtree for _, copies, subtree in parsed)
    if size * repeat > MAX_NODES:
        raise too_many_nodes(where, size * repeat)
    children = tuple(child for child, copies, _ in parsed for _ in range(copies))
    try:
        node = TreeNode(
            p=float(raw["p"]),
            children=children,
            exclusive=bool(raw.get("exclusive", False)),
            read_out=bool(raw.get("read_out", True)),
            mean=float(raw.get("mean", 1.0)),
            std=float(raw.get("std", 0.0)),
            name=str(raw.get("name", "")),
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from error
    return node, repeat, size


def forest_from_dict(raw: Any) -> Forest:
    """Parse ``{"roots": [...]}``."""
    if not isinstance(raw, dict) or not isinstance(raw.get("roots"), list):
        raise ValueError('a hierarchy spec is a JSON object {"roots": [node, ...]}')
    parsed = [parse_node(node, f"roots[{i}]") for i, node in enumerate(raw["roots"])]
    size = sum(copies * subtree for _, copies, subtree in parsed)
    if size > MAX_NODES:
        raise too_many_nodes("roots", size)
    return Forest(tuple(node for node, copies, _ in parsed for _ in range(copies)))


def feature_counts(forest: Forest) -> tuple[int, int]:
    """The forest's read-out features, and how many of them have no read-out ancestor."""
    features, top = 0, 0

    def visit(node: TreeNode, under_feature: bool) -> None:
        nonlocal features, top
        if node.read_out:
            features += 1
            top += not under_feature
        for child in node.children:
            visit(child, under_feature or node.read_out)

    for root in forest.roots:
        visit(root, False)
    return features, top


def node_to_dict(node: TreeNode) -> dict[str, Any]:
    """The JSON form of a node, defaults left out."""
    out: dict[str, Any] = {"p": node.p}
    if node.children:
        out["children"] = [node_to_dict(c) for c in node.children]
    defaults = TreeNode(p=0.0)
    for key in ("exclusive", "read_out", "mean", "std", "name"):
        if getattr(node, key) != getattr(defaults, key):
            out[key] = getattr(node, key)
    return out


def forest_to_dict(forest: Forest) -> dict[str, Any]:
    return {"roots": [node_to_dict(r) for r in forest.roots]}


def _leaves(*ps: float) -> tuple[TreeNode, ...]:
    return tuple(TreeNode(p=p) for p in ps)


def _notebook(child_ps: tuple[float, ...]) -> Forest:
    # The notebook's tree: a gating root, one parent (p 0.25), read-out children and one
    # never-read-out child (p 0.55), which only matters if the children were exclusive.
    children = (*_leaves(*child_ps), TreeNode(p=0.55, read_out=False))
    parent = TreeNode(p=0.25, children=children, name="parent")
    return Forest((TreeNode(p=1.0, children=(parent,), read_out=False, name="root"),))


PRESETS: dict[str, Forest] = {
    "parent-3-children": Forest((TreeNode(p=0.25, children=_leaves(0.3, 0.3, 0.3)),)),
    "notebook": _notebook((0.15, 0.15, 0.15)),
    "notebook-unbalanced": _notebook((0.02, 0.15, 0.5)),
    "25x3": Forest(tuple(TreeNode(p=0.16, children=_leaves(0.25, 0.25, 0.25)) for _ in range(25))),
}


def load_forest(spec: str) -> Forest:
    """A preset name or the path of a JSON spec file."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"'{spec}' is neither a preset ({', '.join(PRESETS)}) nor an existing JSON file"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return forest_from_dict(raw)
    except UnicodeDecodeError as error:
        raise ValueError(f"'{spec}' is not UTF-8 text") from error
    except OSError as error:
        raise ValueError(f"cannot read '{spec}': {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"'{spec}' is not valid JSON: {error}") from error
    except RecursionError as error:
        raise ValueError(f"'{spec}' nests its nodes too deeply") from error

import json
from pathlib import Path

import pytest
import torch
from sae_lens.synthetic import ActivationGenerator, HierarchyNode, hierarchy_modifier

from sae_hacking.toy.data.tree import (
    CompiledTree,
    TreeDraws,
    TreeSource,
    compile_forest,
    draw_tree,
    feature_directions,
    magnitudes_from_draws,
    sample_tree,
)
from sae_hacking.toy.data.tree_spec import (
    PRESETS,
    Forest,
    TreeNode,
    forest_from_dict,
    forest_to_dict,
    load_forest,
)
from sae_hacking.toy.protocol import HasSiblings

BATCH = 200_000


def draw(forest: Forest, seed: int = 0, batch: int = BATCH) -> torch.Tensor:
    return sample_tree(compile_forest(forest), batch, torch.Generator().manual_seed(seed))


def test_notebook_preset_fires_children_only_with_their_parent() -> None:
    tree = compile_forest(PRESETS["notebook"])
    assert tree.num_features == 4
    assert tree.parent_N.tolist() == [-1, 0, 0, 0]
    acts = draw(PRESETS["notebook"]) > 0
    assert acts[:, 0].float().mean().item() == pytest.approx(0.25, abs=0.005)
    given_parent = acts[acts[:, 0]][:, 1:].float().mean(0)
    torch.testing.assert_close(given_parent, torch.full((3,), 0.15), atol=0.006, rtol=0)
    assert not (acts[:, 1:] & ~acts[:, [0]]).any()


def test_exclusive_children_fire_exactly_one_in_proportion_to_p() -> None:
    forest = Forest(
        (TreeNode(p=0.5, exclusive=True, children=(TreeNode(0.2), TreeNode(0.2), TreeNode(0.4))),)
    )
    acts = draw(forest) > 0
    parent = acts[:, 0]
    assert torch.equal(acts[:, 1:].sum(1), parent.long())
    torch.testing.assert_close(
        acts[parent][:, 1:].float().mean(0), torch.tensor([0.25, 0.25, 0.5]), atol=0.006, rtol=0
    )


def test_exclusive_child_that_is_not_read_out_means_none() -> None:
    kids = (TreeNode(0.3), TreeNode(0.7, read_out=False))
    acts = draw(Forest((TreeNode(p=1.0, exclusive=True, children=kids),))) > 0
    assert acts.shape[1] == 2
    assert acts[:, 1].float().mean().item() == pytest.approx(0.3, abs=0.005)


def test_hidden_node_gates_its_children_and_passes_parenthood_through() -> None:
    hidden = TreeNode(p=0.5, read_out=False, children=(TreeNode(1.0), TreeNode(0.5)))
    forest = Forest((TreeNode(p=0.5, children=(hidden,)),))
    tree = compile_forest(forest)
    assert tree.parent_N.tolist() == [-1, 0, 0]
    acts = draw(forest) > 0
    assert acts[:, 1].float().mean().item() == pytest.approx(0.25, abs=0.005)
    assert acts[:, 2].float().mean().item() == pytest.approx(0.125, abs=0.005)
    # The hidden gate makes the two grandchildren fire together more than independence would.
    assert (acts[:, 1] & acts[:, 2]).float().mean().item() == pytest.approx(0.125, abs=0.005)


def test_magnitudes_follow_the_folded_normal() -> None:
    acts = draw(Forest((TreeNode(p=1.0, mean=2.0, std=0.5),)))[:, 0]
    assert acts.min().item() >= 0
    assert acts.mean().item() == pytest.approx(2.0, abs=0.01)
    assert acts.std().item() == pytest.approx(0.5, abs=0.01)


def test_firing_statistics_match_sae_lens_on_trees_it_can_express() -> None:
    # 0 -> (1 -> (3, 4), 2); 5 alone. All read out, children independent.
    ps = [0.4, 0.5, 0.3, 0.6, 0.2, 0.1]
    ours = Forest(
        (
            TreeNode(
                0.4,
                children=(TreeNode(0.5, children=(TreeNode(0.6), TreeNode(0.2))), TreeNode(0.3)),
            ),
            TreeNode(0.1),
        )
    )
    # Our features are numbered depth first: 0, 1, 3, 4, 2, 5 in sae-lens's numbering.
    order = [0, 1, 3, 4, 2, 5]
    roots = [
        HierarchyNode(
            0,
            children=[
                HierarchyNode(1, children=[HierarchyNode(3), HierarchyNode(4)]),
                HierarchyNode(2),
            ],
        ),
        HierarchyNode(5),
    ]
    peer = ActivationGenerator(6, torch.tensor(ps), modify_activations=hierarchy_modifier(roots))
    theirs = (peer.sample(BATCH) > 0)[:, order].float()
    mine = (draw(ours) > 0).float()
    torch.testing.assert_close(mine.mean(0), theirs.mean(0), atol=0.006, rtol=0)
    torch.testing.assert_close(mine.T @ mine / BATCH, theirs.T @ theirs / BATCH, atol=0.006, rtol=0)


def test_sampling_is_reproducible_by_generator_and_stays_on_its_device() -> None:
    source = TreeSource.build(PRESETS["25x3"], 120, torch.Generator().manual_seed(1))
    x1, a1 = source.sample(64, torch.Generator().manual_seed(5))
    x2, a2 = source.sample(64, torch.Generator().manual_seed(5))
    assert torch.equal(x1, x2) and torch.equal(a1, a2)
    assert a1.shape == (64, 100) and x1.shape == (64, 120)
    torch.testing.assert_close(x1, a1 @ source.features_NM)


def test_directions_are_orthonormal_when_they_fit_and_unit_otherwise() -> None:
    u = feature_directions(10, 16, torch.Generator().manual_seed(0))
    torch.testing.assert_close(u @ u.T, torch.eye(10), atol=1e-5, rtol=0)
    crowded = feature_directions(20, 8, torch.Generator().manual_seed(0))
    torch.testing.assert_close(crowded.norm(dim=1), torch.ones(20), atol=1e-5, rtol=0)


def test_json_spec_round_trips_and_repeat_expands(tmp_path: Path) -> None:
    spec = {"roots": [{"p": 0.16, "repeat": 25, "children": [{"p": 0.25, "repeat": 3}]}]}
    forest = forest_from_dict(spec)
    assert forest == PRESETS["25x3"]
    assert forest_from_dict(forest_to_dict(PRESETS["notebook"])) == PRESETS["notebook"]
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(spec))
    assert load_forest(str(path)) == forest


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"roots": [{"children": []}]}, "needs a firing probability"),
        ({"roots": [{"p": 0.5, "colour": 1}]}, "unknown keys"),
        ({"roots": [{"p": 1.5}]}, "must lie in"),
        ({"roots": [{"p": 0.5, "exclusive": True, "children": [{"p": 1}]}]}, "at least two"),
        (
            {"roots": [{"p": 0.5, "children": [{"p": 0.5, "repeat": 0}]}]},
            r"roots\[0\].children\[0\]",
        ),
        ({"trees": []}, "roots"),
    ],
)
def test_bad_specs_are_refused_naming_the_node(spec: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        forest_from_dict(spec)


def test_unknown_preset_or_missing_file_is_refused() -> None:
    with pytest.raises(ValueError, match="neither a preset"):
        load_forest("no-such-tree")


def reference_magnitudes(tree: CompiledTree, draws: TreeDraws) -> torch.Tensor:
    """One sample and one node at a time, parents before children (nodes are stored by depth)."""
    nodes, batch = draws.fire_DB.shape
    out = torch.zeros(tree.num_features, batch)
    for b in range(batch):
        fired = [False] * nodes
        for d in range(nodes):
            group = int(tree.group_D[d])
            if group >= 0:
                assert draws.pick_DB is not None
                pick = float(draws.pick_DB[d, b])
                own = float(tree.low_D[d]) <= pick < float(tree.high_D[d])
            else:
                own = float(draws.fire_DB[d, b]) < float(tree.p_D[d])
            parent = int(tree.parent_D[d])
            fired[d] = own and (parent < 0 or fired[parent])
        for n in range(tree.num_features):
            if fired[int(tree.node_of_N[n])]:
                noise = 0.0 if draws.noise_NB is None else float(draws.noise_NB[n, b])
                out[n, b] = abs(float(tree.mean_N[n]) + float(tree.std_N[n]) * noise)
    return out


MIXED = Forest(
    (
        TreeNode(
            0.7,
            exclusive=True,
            children=(
                TreeNode(0.3, children=(TreeNode(0.5, mean=2.0, std=0.3),)),
                TreeNode(0.5, read_out=False, children=(TreeNode(0.6), TreeNode(0.9))),
                TreeNode(0.2),
            ),
        ),
        TreeNode(0.4, read_out=False, children=(TreeNode(0.5), TreeNode(0.5, std=1.0))),
    )
)


@pytest.mark.parametrize("forest", [MIXED, PRESETS["notebook"], PRESETS["25x3"]])
def test_vectorized_sampler_matches_a_per_sample_loop_on_the_same_draws(forest: Forest) -> None:
    tree = compile_forest(forest)
    draws = draw_tree(tree, 40, torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        magnitudes_from_draws(tree, draws), reference_magnitudes(tree, draws), rtol=0, atol=1e-6
    )


def test_draws_skip_groups_and_noise_the_tree_does_not_have() -> None:
    draws = draw_tree(compile_forest(PRESETS["25x3"]), 8, torch.Generator())
    assert draws.pick_DB is None and draws.noise_NB is None
    mixed = draw_tree(compile_forest(MIXED), 8, torch.Generator())
    assert mixed.pick_DB is not None and mixed.noise_NB is not None


def test_nodes_are_stored_by_depth_with_features_numbered_depth_first() -> None:
    tree = compile_forest(MIXED)
    assert tree.level_bounds == ((2, 7), (7, 10))
    assert tree.names == ("f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7")
    assert tree.parent_N.tolist() == [-1, 0, 1, 0, 0, 0, -1, -1]
    assert tree.std_N.nonzero().flatten().tolist() == [2, 7]
    parents = tree.parent_D.tolist()
    assert all(parents[d] < start for start, stop in tree.level_bounds for d in range(start, stop))


def test_tree_source_states_its_siblings_with_roots_parentless() -> None:
    source = TreeSource.build(PRESETS["25x3"], 64, torch.Generator().manual_seed(0))
    assert isinstance(source, HasSiblings)
    siblings = source.siblings
    assert torch.equal(siblings.parents_AM, source.features_NM)
    assert siblings.parent_of_N[:8].tolist() == [-1, 0, 0, 0, -1, 4, 4, 4]
    assert siblings.has_parent_N.sum().item() == 75

"""Tree specs beyond sense are refused from their size before any node is copied."""

import json
import time
from pathlib import Path

import pytest

from sae_hacking.toy.data.tree_spec import (
    MAX_NODES,
    PRESETS,
    feature_counts,
    forest_from_dict,
    load_forest,
)


@pytest.mark.parametrize(
    "spec",
    [
        {"roots": [{"p": 0.5, "repeat": 1e12}]},
        {"roots": [{"p": 0.5, "repeat": 10**12}]},
        # Nested repeats multiply: 2,000 parents of 1,000 children each.
        {"roots": [{"p": 0.5, "repeat": 2000, "children": [{"p": 0.5, "repeat": 1000}]}]},
        # Many roots, each within the limit, together beyond it.
        {"roots": [{"p": 0.5, "repeat": MAX_NODES // 2 + 1}] * 2},
    ],
    ids=["float-1e12", "int-1e12", "nested", "many-roots"],
)
def test_a_spec_beyond_the_node_limit_is_refused_at_once(spec: dict) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match=f"exceed the limit of {MAX_NODES:,}"):
        forest_from_dict(spec)
    assert time.perf_counter() - started < 5.0


def test_repeat_written_as_an_integral_float_counts_and_others_are_refused() -> None:
    forest = forest_from_dict({"roots": [{"p": 0.5, "repeat": 3.0}]})
    assert len(forest.roots) == 3
    for bad in (2.5, True, "3", -1):
        with pytest.raises(ValueError, match=r"roots\[0\]: 'repeat' must be a positive integer"):
            forest_from_dict({"roots": [{"p": 0.5, "repeat": bad}]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe{", "not UTF-8"),
        (b'{"roots": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nest|roots"),
        (b'{"roots": [{"p": [1, 2]}]}', r"roots\[0\]"),
        (b'{"roots": {"p": 1}}', "roots"),
        (b'{"roots": [{"p": 1, "children": 3}]}', "children"),
    ],
)
def test_damaged_spec_files_are_refused_with_a_value_error(
    text: bytes, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "tree.json"
    path.write_bytes(text)
    with pytest.raises(ValueError, match=message):
        load_forest(str(path))


def test_feature_counts_follow_read_out_nodes(tmp_path: Path) -> None:
    assert feature_counts(PRESETS["notebook"]) == (4, 1)
    assert feature_counts(PRESETS["25x3"]) == (100, 25)
    path = tmp_path / "tree.json"
    hidden = {"p": 1, "read_out": False, "children": [{"p": 0.5, "repeat": 2}]}
    path.write_text(json.dumps({"roots": [hidden]}))
    assert feature_counts(load_forest(str(path))) == (2, 2)

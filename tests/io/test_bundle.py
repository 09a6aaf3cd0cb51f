import json
from pathlib import Path

import pytest
import torch

from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write_json
from sae_hacking.io.bundle import load_bundle, save_bundle
from sae_hacking.io.rundir import make_run_dir, write_config


def test_bundle_round_trip_keeps_values_dtypes_and_manifest(tmp_path: Path) -> None:
    tensors = {"counts": torch.arange(10, dtype=torch.int64), "w": torch.randn(3, 4)}
    save_bundle(tmp_path, "state", tensors, {"width": 4})
    loaded, manifest = load_bundle(tmp_path, "state")
    assert manifest["width"] == 4
    assert manifest["tensors"]["w"]["shape"] == [3, 4]
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value)
    only, _ = load_bundle(tmp_path, "state", keys=["w"])
    assert list(only) == ["w"]


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    atomic_write_json(tmp_path / "a.json", {"x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "a.json", {"x": object()})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_run_dir_refuses_a_file_and_writes_config_first(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserInputError, match="--output-dir"):
        make_run_dir(tmp_path / "file", "run")
    run_dir = make_run_dir(tmp_path / "out", "run")
    other = make_run_dir(tmp_path / "out", "run")
    assert run_dir != other
    write_config(run_dir, {"lr": 1e-3, "path": tmp_path}, ["prog", "--lr", "1e-3"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["lr"] == 1e-3
    assert "torch" in config["versions"]

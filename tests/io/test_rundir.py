from pathlib import Path

import pytest

from sae_hacking.errors import UserInputError
from sae_hacking.io.rundir import make_run_dir, removed_if_unstarted, write_config


def test_a_run_that_fails_before_writing_results_leaves_no_directory(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, "tool")
    write_config(run_dir, {"lr": 1.0}, ["tool"])
    with pytest.raises(UserInputError), removed_if_unstarted(run_dir):
        raise UserInputError("--corpus", "ran out of prompts")
    assert not run_dir.exists()


def test_a_run_that_wrote_results_keeps_its_directory(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path, "tool")
    write_config(run_dir, {"lr": 1.0}, ["tool"])
    with pytest.raises(KeyboardInterrupt), removed_if_unstarted(run_dir):
        (run_dir / "dataset.safetensors").write_bytes(b"tensors")
        raise KeyboardInterrupt
    assert (run_dir / "config.json").is_file()

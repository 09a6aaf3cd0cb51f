"""Bad input is one line naming the flag, before any run directory exists."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_hacking.sae_ception import app


def invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*args, "--output-dir", str(out), "--device", "cpu"])
    assert not out.exists() or not any(out.iterdir()), "a run directory was made"
    return result.exit_code, result.output


def unlabelled_jsonl(tmp_path: Path) -> str:
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"text {i}"}) for i in range(6)) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--aux-weight", "-0.5"], "--aux-weight: -0.5 must not be negative"),
        (["--lambda", "-1"], "--aux-weight: -1.0 must not be negative"),
        (["--strategies", "per-class,sharpest"], "--strategies: unknown value 'sharpest'"),
        (["--layer", "3"], "--layer: the mlp has hidden layers 1 and 2, not '3'"),
        (["--dataset", "nowhere.jsonl"], "--dataset: 'nowhere.jsonl' is not a file"),
        (["--dataset", "mnist"], "--dataset: unknown dataset 'mnist'"),
        (["--dataset", "sst2", "--model", "mlp"], "--model: the mlp reads digits"),
        (["--keep-share", "0"], "--keep-share: 0.0 must be positive"),
        (["--seeds", "1,1"], "--seeds: give one or more distinct seeds"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 2
    assert message in output
    assert len(output.strip().splitlines()) == 1


def test_a_dataset_without_labels_is_refused_before_a_run_directory(tmp_path: Path) -> None:
    code, output = invoke(tmp_path, "--dataset", unlabelled_jsonl(tmp_path), "--model", "tiny")
    assert code == 2
    assert "--label-field: line 1 of" in output and "has no key 'label'" in output


def test_a_hook_the_model_lacks_is_refused_before_a_run_directory(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    path.write_text("text,label\n" + "".join(f"word {i},{i % 2}\n" for i in range(8)))
    code, output = invoke(
        tmp_path, "--dataset", str(path), "--model", "tiny", "--layer", "blocks.9.hook_resid_post"
    )
    assert code == 2
    assert "--layer: 'tiny' has no block hook 'blocks.9.hook_resid_post'" in output


def test_resume_refuses_a_contradicting_flag(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": {"aux_weight": 1.0}}))
    result = CliRunner().invoke(app, ["--resume", str(run_dir), "--aux-weight", "2"])
    assert result.exit_code == 2
    assert "--aux-weight: 2.0 contradicts the resumed run's 1.0" in result.output

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.toy.training.checkpoint import load_checkpoint
from sae_hacking.train_topk_sae_toy import app

ORIGINAL_COMMAND = [
    "--lr",
    "1e-4",
    "--sae-hidden-dim",
    "30",
    "--dataset-num-features",
    "30",
    "--batch-size",
    "100",
    "--hierarchical",
    "--perturbation_size",
    "0.4",
    "--model-dim",
    "50",
]

runner = CliRunner()


def invoke(args: list[str]) -> tuple[int, str]:
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def only_run_dir(output_dir: Path) -> Path:
    (run_dir,) = list(output_dir.iterdir())
    return run_dir


def test_original_command_runs_end_to_end_and_writes_every_result(tmp_path: Path) -> None:
    code, output = invoke([*ORIGINAL_COMMAND, "--steps", "40", "--output-dir", str(tmp_path)])
    assert code == 0, output
    run_dir = only_run_dir(tmp_path)
    for name in [
        "config.json",
        "metrics.jsonl",
        "summary.json",
        "dataset.safetensors",
        "recovery_heatmap.png",
        "training_curves.png",
        "checkpoints/final.safetensors",
        "checkpoints/final.json",
        "checkpoints/step-00000010.safetensors",
    ]:
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert config["perturbation_size"] == 0.4
    assert config["hierarchical"] is True
    assert config["sae_width"] == 90
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["architecture"] == "hierarchical_topk"
    assert summary["samples"] == 40 * 100
    assert "pair_detection_rate" in summary["final"]
    assert len(summary["features"]) == 60
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["step"] == 0 and records[-1]["step"] == 40
    loaded = load_checkpoint(run_dir / "checkpoints" / "final.safetensors")
    assert loaded.manifest["step"] == 40


def test_dash_and_underscore_spellings_are_the_same_flag(tmp_path: Path) -> None:
    for spelling in ("--perturbation-size", "--perturbation_size"):
        out = tmp_path / spelling
        code, output = invoke(
            [
                spelling,
                "0.25",
                "--steps",
                "2",
                "--dataset_num_features",
                "4",
                "--output-dir",
                str(out),
            ]
        )
        assert code == 0, output
        config = json.loads((only_run_dir(out) / "config.json").read_text())["config"]
        assert config["perturbation_size"] == 0.25
        assert config["dataset_num_features"] == 4


def test_init_to_truth_starts_the_hierarchical_sae_at_the_answer(tmp_path: Path) -> None:
    args = ["--hierarchical", "--init-to-truth", "--steps", "1", "--lr", "1e-6"]
    code, output = invoke([*args, "--dataset-num-features", "6", "--output-dir", str(tmp_path)])
    assert code == 0, output
    summary = json.loads((only_run_dir(tmp_path) / "summary.json").read_text())
    assert summary["final"]["mcc"] > 0.99
    assert summary["final"]["pair_detection_rate"] == 1.0


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--k", "61"], "--k"),
        (["--hierarchical", "--sae-hidden-dim", "5", "--k", "6"], "--k"),
        (["--batch-size", "-3"], "--batch-size"),
        (["--model-dim", "0"], "--model-dim"),
        (["--perturbation_size", "-0.1"], "--perturbation-size"),
        (["--dataset-k", "31"], "--dataset-k"),
        (["--device", "tpu"], "--device"),
        (["--steps", "5", "--num-samples", "100"], "--steps"),
        (["--decay", "sometimes"], "--decay"),
    ],
)
def test_bad_flags_give_one_line_errors_naming_the_flag(
    args: list[str], flag: str, tmp_path: Path
) -> None:
    code, output = invoke([*args, "--output-dir", str(tmp_path)])
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert flag in lines[0]
    assert "Traceback" not in output
    assert not any(tmp_path.iterdir())


def test_output_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("not a directory")
    code, output = invoke(["--steps", "1", "--output-dir", str(afile)])
    assert code == 2
    assert output.strip().count("\n") == 0
    assert "--output-dir" in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_flag_without_cuda_is_a_one_line_error(tmp_path: Path) -> None:
    code, output = invoke([*ORIGINAL_COMMAND, "--cuda", "--output-dir", str(tmp_path)])
    assert code == 2
    assert output.strip().count("\n") == 0
    assert "--cuda" in output
    assert not any(tmp_path.iterdir())

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.toy.experiments.training.config import ToyTrainConfig
from sae_hacking.toy.experiments.training.run import run
from sae_hacking.toy.protocol import ToySAE
from sae_hacking.toy.training.checkpoint import load_checkpoint
from sae_hacking.toy.training.loop import LogPoint
from sae_hacking.toy.training.run_log import RunLog
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


TINY = [
    "--dataset-num-features",
    "4",
    "--dataset-k",
    "1",
    "--model-dim",
    "8",
    "--batch-size",
    "16",
    "--eval-batch-size",
    "64",
    "--device",
    "cpu",
]


def checkpoint_steps(run_dir: Path) -> list[int]:
    names = sorted(p.stem for p in (run_dir / "checkpoints").glob("step-*.json"))
    return [int(name.removeprefix("step-")) for name in names]


def test_checkpoint_every_is_honoured_off_evaluation_steps(tmp_path: Path) -> None:
    args = ["--steps", "200", "--log-every", "30", "--checkpoint-every", "50"]
    code, output = invoke([*TINY, *args, "--output-dir", str(tmp_path)])
    assert code == 0, output
    assert checkpoint_steps(only_run_dir(tmp_path)) == [50, 100, 150]


def test_two_million_samples_plan_a_checkpoint_every_quarter() -> None:
    config = ToyTrainConfig(num_samples=2_000_000)
    assert (config.total_steps, config.save_every, config.evaluate_every) == (489, 122, 12)


@pytest.mark.slow
def test_two_million_samples_write_intermediate_checkpoints(tmp_path: Path) -> None:
    args = [*TINY, "--batch-size", "4096", "--num-samples", "2000000"]
    code, output = invoke([*args, "--output-dir", str(tmp_path)])
    assert code == 0, output
    # 489 steps of 4096: a checkpoint every 122 steps, so a kill loses at most 122.
    assert checkpoint_steps(only_run_dir(tmp_path)) == [122, 244, 366, 488]


RESUMABLE = [
    *TINY,
    "--steps",
    "60",
    "--log-every",
    "7",
    "--checkpoint-every",
    "20",
    "--hierarchical",
    "--aux-k",
    "2",
    "--decay",
    "plateau",
    "--plateau-patience",
    "1",
]


def stop_at_step(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """Ctrl-C right after the evaluation at ``step``."""
    on_log = RunLog.on_log

    def interrupted(self: RunLog, point: LogPoint, sae: ToySAE) -> None:
        on_log(self, point, sae)
        if point.step >= step:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunLog, "on_log", interrupted)


def test_ctrl_c_says_how_to_resume_and_the_resumed_run_equals_an_uninterrupted_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The uninterrupted run goes through Python: run(config) is the whole tool.
    whole = run(
        ToyTrainConfig(
            dataset_num_features=4,
            dataset_k=1,
            model_dim=8,
            batch_size=16,
            eval_batch_size=64,
            device="cpu",
            steps=60,
            log_every=7,
            checkpoint_every=20,
            hierarchical=True,
            aux_k=2,
            decay="plateau",
            plateau_patience=1,
            output_dir=tmp_path / "whole",
        )
    ).run_dir

    with monkeypatch.context() as patch:
        stop_at_step(patch, 49)
        code, output = invoke([*RESUMABLE, "--output-dir", str(tmp_path / "cut")])
    cut = only_run_dir(tmp_path / "cut")
    assert code == 130
    lines = [line for line in output.splitlines() if line.startswith("stopped")]
    assert len(lines) == 1 and "Traceback" not in output
    assert f"--resume {cut}" in lines[0] and "step-00000040" in lines[0]
    assert checkpoint_steps(cut) == [20, 40]
    stale = cut / "checkpoints" / ".step-00000060.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")

    code, output = invoke(["--resume", str(cut)])
    assert code == 0, output
    assert not stale.exists()
    final = load_checkpoint(cut / "checkpoints" / "final.safetensors").sae.state_dict()
    for key, value in (
        load_checkpoint(whole / "checkpoints" / "final.safetensors").sae.state_dict().items()
    ):
        assert torch.equal(final[key], value), key
    assert (cut / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()
    summaries = [json.loads((d / "summary.json").read_text()) for d in (whole, cut)]
    assert summaries[0]["final"] == summaries[1]["final"]


def test_resume_refuses_contradicting_flags_other_tools_runs_and_finished_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        stop_at_step(patch, 21)
        code, _ = invoke([*RESUMABLE, "--output-dir", str(tmp_path / "cut")])
    assert code == 130
    cut = only_run_dir(tmp_path / "cut")
    code, output = invoke(["--resume", str(cut), "--lr", "0.5"])
    assert code == 2 and output.strip().count("\n") == 0
    assert "--lr: 0.5 contradicts the resumed run's 0.001" in output
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"config": {"hierarchy": ["notebook"]}}))
    code, output = invoke(["--resume", str(other)])
    assert code == 2 and "--resume" in output and "not a train_topk_sae_toy run" in output
    code, output = invoke(["--resume", str(cut), "--device", "cpu"])
    assert code == 0, output
    code, output = invoke(["--resume", str(cut)])
    assert code == 2 and "--resume" in output and "complete" in output


@pytest.mark.parametrize(
    ("args", "flag", "limit"),
    [
        (
            ["--sae-hidden-dim", "1000000000000"],
            "--sae-hidden-dim",
            "a run of these sizes needs about",
        ),
        (["--batch-size", "100000000000"], "--batch-size", "a run of these sizes needs about"),
        (["--batch-size", "100000000000000"], "--batch-size", "limit of 1e+12"),
        (
            ["--eval-batch-size", "100000000000000"],
            "--eval-batch-size",
            "a run of these sizes needs about",
        ),
        (["--model-dim", "1000000000000"], "--model-dim", "a run of these sizes needs about"),
        (["--num-samples", "1000000000000000000"], "--num-samples", "limit of 1e+12"),
        (["--steps", "10000000000"], "--steps", "limit of 1e+09"),
        (["--steps", "1000000000", "--batch-size", "4096"], "--steps", "limit of 1e+12"),
    ],
)
def test_sizes_beyond_sense_are_refused_before_anything_is_allocated(
    args: list[str], flag: str, limit: str, tmp_path: Path
) -> None:
    code, output = invoke([*args, "--device", "cpu", "--output-dir", str(tmp_path)])
    assert code == 2
    assert output.strip().count("\n") == 0, output
    assert output.startswith(f"error: {flag}:") and limit in output
    assert not any(tmp_path.iterdir())


def test_a_number_that_is_not_an_integer_names_the_flag(tmp_path: Path) -> None:
    code, output = invoke(["--sae-hidden-dim", "1e12", "--output-dir", str(tmp_path)])
    assert code == 2
    assert "--sae-hidden-dim" in output and "Traceback" not in output
    assert not any(tmp_path.iterdir())


def test_max_step_and_cuda_keep_the_original_spellings(tmp_path: Path) -> None:
    code, output = invoke([*TINY, "--max-step", "3", "--output-dir", str(tmp_path)])
    assert code == 0, output
    config = json.loads((only_run_dir(tmp_path) / "config.json").read_text())["config"]
    assert config["steps"] == 3 and config["total_steps"] == 3
    code, output = invoke(["--cuda", "--device", "cpu", "--output-dir", str(tmp_path / "x")])
    assert code == 2 and "--cuda" in output

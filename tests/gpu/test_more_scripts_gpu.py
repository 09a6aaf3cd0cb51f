"""Synthetic SAE training and the first-letter evaluation on CUDA, against the CPU runs."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.first_letter_absorption import app as first_letter_app
from sae_hacking.train_synthetic_sae import app as synthetic_app
from tests.gpu.conftest import only_dir, sides
from tests.toy.synthetic_fixtures import tiny_model

pytestmark = pytest.mark.gpu


def test_synthetic_sae_training_on_cuda_reaches_the_cpu_runs_scores(
    cuda: torch.device, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    tiny_model().save(model_dir)
    benches = {}
    for side, device in sides(cuda):
        flags = [f"--model={model_dir}", "--architecture=matryoshka-batchtopk"]
        flags += ["--samples=204800", "--batch-size=1024", "--lr=3e-3", "--eval-samples=4000"]
        flags += [
            "--absorption-samples=4000",
            f"--device={device}",
            f"--output-dir={tmp_path / side}",
        ]
        result = CliRunner().invoke(synthetic_app, flags)
        assert result.exit_code == 0, result.output
        summary = json.loads((only_dir(tmp_path / side) / "summary.json").read_text())
        benches[side] = summary["synth_bench"]
    # Batches are drawn on each device's generator: scores agree, weights do not.
    for key in ("mcc", "explained_variance"):
        assert abs(benches["gpu"][key] - benches["cpu"][key]) <= 0.1, (key, benches)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_first_letter_evaluation_on_cuda_matches_the_cpu_run(
    cuda: torch.device, tmp_path: Path, dtype: str
) -> None:
    means = {}
    for side, device in sides(cuda):
        flags = ["--model", "tiny", "--device", str(device), "--dtype", dtype]
        flags += ["--max-words", "300", "--probe-epochs", "3", "--max-k", "3"]
        flags += ["--sae-ids", "blocks.3.hook_resid_post/jumprelu/512"]
        result = CliRunner().invoke(
            first_letter_app, [*flags, "--output-dir", str(tmp_path / side)]
        )
        assert result.exit_code == 0, result.output
        saved = json.loads((only_dir(tmp_path / side) / "letters.json").read_text())
        letters = saved["saes"][0]["letters"]
        assert len(letters) == 26
        means[side] = sum(r["absorption_fraction"] for r in letters) / len(letters)
    assert abs(means["gpu"] - means["cpu"]) <= (0.05 if dtype == "float32" else 0.15), means

"""SAE-ception on CUDA (the digits MLP classifier) against the same run on the CPU."""

import json
from pathlib import Path

import pytest
import torch

from sae_hacking.saeception.config import SaeCeptionConfig
from sae_hacking.saeception.run import run
from tests.gpu.conftest import sides

pytestmark = pytest.mark.gpu


def test_sae_ception_on_cuda_reaches_the_cpu_runs_accuracies(
    cuda: torch.device, tmp_path: Path
) -> None:
    rows = {}
    for side, device in sides(cuda):
        config = SaeCeptionConfig(
            max_train_examples=600,
            max_test_examples=300,
            epochs=15,
            cycle_epochs=4,
            lr=1e-2,
            sae_steps=60,
            sae_width=32,
            cycles=1,
            strategies=("per-class", "none"),
            device=str(device),
            output_dir=tmp_path / side,
        )
        result = run(config, [])
        summary = json.loads((result.run_dir / "summary.json").read_text(encoding="utf-8"))
        rows[side] = {(row["cycle"], row["strategy"]): row for row in summary["rows"]}
    assert rows["cpu"].keys() == rows["gpu"].keys()
    for key, row in rows["cpu"].items():
        # Batches are shuffled by each device's generator: accuracies agree, weights do not.
        assert abs(rows["gpu"][key]["task_accuracy"] - row["task_accuracy"]) <= 0.1, key
        assert rows["gpu"][key]["task_accuracy"] > 0.5, key

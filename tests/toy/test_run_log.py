"""The run log's planned time and the metrics a resume keeps."""

import json
from pathlib import Path

import pytest

from sae_hacking.toy.training.run_log import METRICS_FILE, RunLog, records_up_to


def test_planned_time_is_shown_once_after_the_first_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RunLog(tmp_path, total_steps=100_000, batch_size=1000, manifest={}) as log:
        log.on_progress(100, 0.5)  # the first stop: warm-up and compilation
        log.on_progress(200, 1.5)  # not yet long enough to say
        log.on_progress(300, 3.0)  # 200 steps in 2.5 s: 80 steps/s
        log.on_progress(400, 4.0)
    planned = [line for line in capsys.readouterr().out.splitlines() if "planned" in line]
    assert planned == [
        "planned: 100,000 steps of 1,000 samples; at 80,000 samples/s about 20 min 46 s to go"
    ]


def test_a_resume_keeps_the_evaluations_up_to_its_checkpoint(tmp_path: Path) -> None:
    lines = [json.dumps({"step": step, "mse": 1.0 / (step + 1)}) for step in (0, 7, 14, 21)]
    (tmp_path / METRICS_FILE).write_text("\n".join(lines) + '\n{"step": 28, "ms')
    assert [r["step"] for r in records_up_to(tmp_path, 20)] == [0, 7, 14]
    kept = (tmp_path / METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in kept] == [0, 7, 14]
    assert records_up_to(tmp_path, -1) == []

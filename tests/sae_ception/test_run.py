"""Whole runs on a small cut of digits: files per cycle, resume equal to an uninterrupted run."""

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file

from sae_hacking.saeception import run as run_module
from sae_hacking.saeception.config import SaeCeptionConfig
from sae_hacking.saeception.cycles import Unit, UnitContext, run_unit
from sae_hacking.saeception.run import run

SMALL = {
    "max_train_examples": 240,
    "max_test_examples": 120,
    "epochs": 15,
    "cycle_epochs": 4,
    "lr": 1e-2,
    "sae_steps": 30,
    "sae_width": 32,
    "device": "cpu",
    "strategies": ("per-class", "random"),
}


def small(tmp_path: Path, **options: object) -> SaeCeptionConfig:
    return SaeCeptionConfig(**{**SMALL, "output_dir": tmp_path, **options})  # pyright: ignore[reportArgumentType]


def unit_files(run_dir: Path) -> dict[str, bytes]:
    """Every tensor file and metrics.json of every unit, by path relative to the run."""
    files = {}
    for path in sorted(run_dir.glob("seed-*/**/*")):
        if path.suffix == ".safetensors" or path.name == "metrics.json":
            files[str(path.relative_to(run_dir))] = path.read_bytes()
    return files


def test_a_run_writes_every_cycle_and_its_summary(tmp_path: Path) -> None:
    result = run(small(tmp_path, cycles=1, strategies=("per-class", "random")), [])
    cycle_1 = result.run_dir / "seed-0" / "cycle-1"
    for directory in (
        result.run_dir / "seed-0" / "cycle-0",
        cycle_1 / "per-class",
        cycle_1 / "random",
    ):
        for name in ("classifier.safetensors", "sae.safetensors", "sae.json", "metrics.json"):
            assert (directory / name).is_file(), directory / name
    metrics = json.loads((cycle_1 / "per-class" / "metrics.json").read_text())
    assert 0.5 < metrics["task_accuracy"] <= 1.0
    assert metrics["target_cosine_after"] > metrics["target_cosine_before"]
    assert len(metrics["per_latent"]["csi"]) == 32
    assert "| 1 | per-class |" in result.tables and "per-class − random" in result.tables
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert {(r["cycle"], r["strategy"]) for r in summary["rows"]} == {
        (0, "baseline"),
        (1, "per-class"),
        (1, "random"),
    }


def test_resume_after_a_stop_between_cycles_equals_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = run(small(tmp_path / "whole", cycles=2), [])

    finished: list[Unit] = []

    def stop_at_cycle_2(ctx: UnitContext, unit: Unit, on_epoch: Any = None) -> dict[str, Any]:
        if unit.cycle == 2 and len(finished) == 4:
            raise KeyboardInterrupt
        finished.append(unit)
        return run_unit(ctx, unit, on_epoch)

    monkeypatch.setattr(run_module, "run_unit", stop_at_cycle_2)
    with pytest.raises(KeyboardInterrupt):
        run(small(tmp_path / "stopped", cycles=2), [])
    monkeypatch.undo()
    (stopped_dir,) = (tmp_path / "stopped").iterdir()
    assert (stopped_dir / "seed-0" / "cycle-2" / "per-class" / "metrics.json").is_file()
    assert not (stopped_dir / "seed-0" / "cycle-2" / "random" / "metrics.json").exists()
    resumed = run(SaeCeptionConfig(resume=stopped_dir), [])
    assert resumed.units_run == 1
    assert unit_files(resumed.run_dir) == unit_files(whole.run_dir)


def test_resume_can_extend_a_finished_run_by_more_cycles(tmp_path: Path) -> None:
    whole = run(small(tmp_path / "whole", cycles=2, strategies=("per-example",)), [])
    short = run(small(tmp_path / "short", cycles=1, strategies=("per-example",)), [])
    longer = run(SaeCeptionConfig(resume=short.run_dir, cycles=2), [])
    assert longer.units_run == 1
    assert unit_files(longer.run_dir) == unit_files(whole.run_dir)
    tensors = load_file(
        str(longer.run_dir / "seed-0" / "cycle-2" / "per-example" / "sae.safetensors")
    )
    assert tensors["W_dec_EM"].shape == (32, 16)

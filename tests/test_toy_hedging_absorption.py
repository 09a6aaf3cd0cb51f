import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.cli import config_command, make_app
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.data.tree_spec import PRESETS
from sae_hacking.toy.experiments.hedging import run as hedging_run
from sae_hacking.toy.experiments.hedging.config import HedgingAbsorptionConfig
from sae_hacking.toy.experiments.hedging.experiment import (
    SAESettings,
    build_sae,
    notebook_settings,
    score_sae,
    variants,
)
from sae_hacking.toy.metrics.absorption import AbsorptionThresholds
from sae_hacking.toy.training.loop import train
from sae_hacking.toy_hedging_absorption import app


def test_standard_absorbs_detached_hedges_and_balanced_reduces_both() -> None:
    source = TreeSource.build(PRESETS["notebook"], 50, torch.Generator().manual_seed(0))
    x_BM, acts_BN = source.sample(8000, torch.Generator().manual_seed(1))
    scores = {}
    for variant in variants((0.25,)):
        sae = build_sae(
            variant,
            source,
            SAESettings(width=4),
            torch.arange(4),
            0.0,
            torch.Generator().manual_seed(2),
        )
        settings = notebook_settings(400, 2048, 1e-2)
        train(sae, source, settings, torch.Generator().manual_seed(3), x_BM[:2048])
        scores[variant.name] = score_sae(sae, source, x_BM, acts_BN, AbsorptionThresholds(), 2)
    absorption = {name: s["absorption_fraction"] for name, s in scores.items()}
    hedging = {name: s["decoder_hedging"] for name, s in scores.items()}
    assert max(absorption, key=absorption.__getitem__) == "standard"
    assert max(hedging, key=hedging.__getitem__) == "detached"
    assert absorption["balanced 0.25"] < absorption["standard"]
    assert hedging["balanced 0.25"] < hedging["detached"]
    # The signatures behind the numbers: encoder subtracts children vs decoder mixes them in.
    assert scores["standard"]["encoder_absorption"] > 0.2
    assert scores["detached"]["encoder_absorption"] == 0.0
    assert scores["standard"]["best_match_latent"] == [0, 1, 2, 3]


def test_script_writes_table_figure_and_sae_bundles(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "--hierarchy",
            "notebook",
            "--inner-multipliers",
            "0.25,0.5",
            "--steps",
            "5",
            "--batch-size",
            "256",
            "--eval-samples",
            "1000",
            "--device",
            "cpu",
            "--feature-ordering",
            "0,1,2,3",
            "--output-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    rows = json.loads((run_dir / "metrics.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["standard", "detached", "balanced 0.25", "balanced 0.5"]
    assert rows[1]["inner_multiplier"] == "inf"
    assert (run_dir / "heatmaps.png").read_bytes()[:4] == b"\x89PNG"
    assert (run_dir / "config.json").exists()
    assert (run_dir / "sae-notebook-detached.safetensors").exists()
    # Each multiplier keeps its own bundle (none overwrites another).
    assert (run_dir / "sae-notebook-balanced-0.25.safetensors").exists()
    assert (run_dir / "sae-notebook-balanced-0.5.safetensors").exists()
    assert "absorption" in result.output


def test_a_sae_lens_synthetic_model_is_a_data_source(tmp_path: Path) -> None:
    from sae_lens.synthetic import SyntheticModel

    from tests.toy.synthetic_fixtures import small_config

    model_dir = tmp_path / "model"
    SyntheticModel(small_config()).save(model_dir)
    flags = ["--inner-multipliers", "0.5", "--steps", "20", "--batch-size", "256"]
    result = CliRunner().invoke(
        app,
        [
            f"--synthetic-model={model_dir}",
            *flags,
            "--eval-samples=2000",
            "--device=cpu",
            f"--output-dir={tmp_path / 'out'}",
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out").iterdir()
    rows = json.loads((run_dir / "metrics.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["standard", "detached", "balanced 0.5"]
    assert {r["hierarchy"] for r in rows} == {str(model_dir)}
    # Each SAE is as wide as the model has features; the tree's 3 parents are scored.
    assert all(len(r["best_match_latent"]) == 24 for r in rows)
    assert all(len(r["edges"]) == 6 and 0 <= r["fvu"] < 1 for r in rows)
    assert (run_dir / "heatmaps.png").read_bytes()[:4] == b"\x89PNG"
    refused = CliRunner().invoke(app, ["--synthetic-model=./no/such", f"--output-dir={tmp_path}"])
    assert refused.exit_code == 2
    assert "--synthetic-model: './no/such' does not exist" in refused.output


def test_bad_flags_are_one_line_errors_naming_the_flag(tmp_path: Path) -> None:
    runner = CliRunner()
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"roots": [{"p": 0.5, "repeat": 1e12}]}))
    wide = tmp_path / "wide.json"
    wide.write_text(
        json.dumps({"roots": [{"p": 0.5, "children": [{"p": 0.5, "repeat": 100_000}]}]})
    )
    cases = [
        (["--hierarchy", "nope"], "--hierarchy"),
        (["--feature-ordering", "0,9"], "--feature-ordering"),
        (["--feature-ordering", "0,0,1,2"], "--feature-ordering"),
        (["--inner-multipliers", "0.2,-1"], "--inner-multipliers"),
        (["--sparsity", "l2"], "--sparsity"),
        (["--steps", "0"], "--steps"),
        (["--threads", "0"], "--threads"),
        (["--inner-width", "4"], "--inner-width"),
        (["--max-absorbers", "0"], "--max-absorbers"),
        (["--hierarchy", str(huge)], "--hierarchy: roots[0]: 1e+12 nodes"),
        # Sizes beyond the machine's memory, refused from an estimate before allocating.
        (["--hierarchy", str(wide), "--device", "cpu"], "--hierarchy: a run of these sizes needs"),
        (
            ["--batch-size", "100000000000000", "--device", "cpu"],
            "--batch-size: a run of these sizes",
        ),
        (
            ["--eval-samples", "100000000000000", "--device", "cpu"],
            "--eval-samples: a run of these sizes",
        ),
        (["--model-dim", "100000000000", "--device", "cpu"], "--model-dim: a run of these sizes"),
    ]
    for flags, message in cases:
        result = runner.invoke(app, [*flags, "--output-dir", str(tmp_path / "out")])
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert result.output.strip().count("\n") == 0, result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_hierarchy_repeats_or_takes_commas() -> None:
    seen: list[HedgingAbsorptionConfig] = []
    command = make_app("test")
    config_command(command, HedgingAbsorptionConfig, seen.append)
    runner = CliRunner()
    assert runner.invoke(command, ["--hierarchy", "notebook", "--hierarchy", "25x3"]).exit_code == 0
    assert runner.invoke(command, ["--hierarchy", "notebook,25x3"]).exit_code == 0
    assert runner.invoke(command, []).exit_code == 0
    assert [c.hierarchy for c in seen] == [
        ("notebook", "25x3"),
        ("notebook", "25x3"),
        ("notebook", "notebook-unbalanced"),
    ]


FAST = ["--hierarchy", "notebook", "--inner-multipliers", "0.25", "--steps", "2"]
FAST += ["--batch-size", "64", "--eval-samples", "200", "--device", "cpu"]


def test_ctrl_c_stops_in_one_line_and_leaves_no_empty_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hedging_run, "run_hierarchy", interrupted)
    result = CliRunner().invoke(app, [*FAST, "--output-dir", str(tmp_path)])
    assert result.exit_code == 130
    assert (
        result.output.strip()
        == "stopped: nothing was saved; this experiment does not resume, run it again"
    )
    # The run directory held only config.json, so it is gone.
    assert not any(tmp_path.iterdir())

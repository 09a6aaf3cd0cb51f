"""The toy_absorption_hunt script: flags in, a run directory with the table and figure out."""

import json
from pathlib import Path

from typer.testing import CliRunner

from sae_hacking.toy_absorption_hunt import app

TREE = {"roots": [{"p": 0.2, "repeat": 2, "children": [{"p": 0.3, "repeat": 2}]}]}


def test_script_writes_config_table_and_figure(tmp_path: Path) -> None:
    spec = tmp_path / "tree.json"
    spec.write_text(json.dumps(TREE), encoding="utf-8")
    flags = ["--hierarchy", str(spec), "--model-dim", "8", "--ablator-k", "2", "--steps", "200"]
    flags += ["--samples", "2000", "--eval-samples", "2000", "--device", "cpu"]
    flags += ["--sweep-thresholds", "0.3,0.5"]
    result = CliRunner().invoke(app, [*flags, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "out").iterdir()
    assert {"config.json", "hunt.json", "precision_recall.png"} <= {
        p.name for p in run_dir.iterdir()
    }
    written = json.loads((run_dir / "hunt.json").read_text(encoding="utf-8"))
    assert len(written["sweep"]["ranked"]) == 2
    assert "absorbed pairs found" in result.output


def test_bad_sweep_list_is_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["--sweep-thresholds", "0.3,abc", "--output-dir", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert "--sweep-thresholds" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()

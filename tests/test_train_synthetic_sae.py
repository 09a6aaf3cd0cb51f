"""train_synthetic_sae.py end to end on a small saved sae-lens model, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_hacking.train_synthetic_sae import app
from tests.toy.synthetic_fixtures import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "model"
    tiny_model().save(path)
    return path


@pytest.mark.parametrize("architecture", ["matryoshka-batchtopk", "jumprelu", "l1"])
def test_a_run_writes_synth_bench_metrics_absorption_and_a_sae_lens_sae(
    model_dir: Path, tmp_path: Path, architecture: str
) -> None:
    from sae_lens import SAE

    result = CliRunner().invoke(
        app,
        [
            f"--model={model_dir}",
            f"--architecture={architecture}",
            "--samples=40960",
            "--batch-size=512",
            "--lr=3e-3",
            "--eval-samples=4000",
            "--absorption-samples=4000",
            "--device=cpu",
            f"--output-dir={tmp_path}",
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    bench = summary["synth_bench"]
    assert summary["width"] == 64 and summary["steps"] == 80
    assert 0.3 < bench["mcc"] <= 1 and 0 < bench["f1_score"] <= 1
    assert 0 < bench["explained_variance"] <= 1
    assert summary["hierarchy"]["parents_scored"] > 0
    assert summary["samples_per_second"] > 0
    detail = json.loads((run_dir / "absorption.json").read_text())
    assert len(detail["parents"]) == 42  # 2 trees x (1 + 4 + 16) parents
    for name in ("config.json", "metrics.jsonl", "training_curves.png", "absorption.png"):
        assert (run_dir / name).is_file()
    assert (run_dir / "synthetic_model" / "synthetic_model_config.json").is_file()
    sae = SAE.load_from_disk(run_dir / "sae")
    assert sae.cfg.d_sae == 64 and sae.cfg.d_in == 32


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--architecture=gated"], "--architecture: unknown value 'gated'"),
        (["--model=./no/such/dir"], "--model: './no/such/dir' does not exist"),
        (["--model=not a hub id"], "--model: 'not a hub id' is not a preset"),
        (["--matryoshka-widths=4,8"], "--matryoshka-widths: only for --architecture"),
        (["--samples=10"], "--samples: 10 is fewer than one batch"),
        (["--l1-coefficient=2"], "--l1-coefficient: only for --architecture l1"),
        (["--sampler=exact", "--cuda-graphs"], "--cuda-graphs: needs --sampler fixed-shape"),
    ],
)
def test_bad_flags_are_one_line_errors(flags: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [*flags, f"--output-dir={tmp_path}"])
    assert result.exit_code != 0
    assert message in result.output
    assert list(tmp_path.iterdir()) == []


def test_help_and_flag_errors_import_no_heavy_library() -> None:
    heavy = ("torch", "matplotlib", "sae_lens", "transformer_lens", "transformers", "datasets")
    program = f"""
import sys
from typer.testing import CliRunner
from sae_hacking.train_synthetic_sae import app
runner = CliRunner()
assert runner.invoke(app, ["--help"]).exit_code == 0
refused = runner.invoke(app, ["--samples", "10"])
assert refused.exit_code != 0 and "--samples" in refused.output, refused.output
print(sorted(name for name in {heavy!r} if name in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"

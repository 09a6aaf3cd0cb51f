"""The toy scripts' command lines: declared once by their configs, answered without heavy imports."""

import subprocess
import sys

import pytest

from sae_hacking.toy.experiments.hedging.config import HedgingAbsorptionConfig
from sae_hacking.toy.experiments.training.config import ToyTrainConfig

SCRIPTS: dict[str, type] = {
    "sae_hacking.train_topk_sae_toy": ToyTrainConfig,
    "sae_hacking.toy_hedging_absorption": HedgingAbsorptionConfig,
}
HEAVY = ("torch", "matplotlib", "sae_lens", "transformer_lens", "transformers", "datasets")


@pytest.mark.parametrize("module", SCRIPTS)
def test_help_and_flag_errors_import_no_heavy_library(module: str) -> None:
    program = f"""
import sys
from typer.testing import CliRunner
import {module} as script
runner = CliRunner()
assert runner.invoke(script.app, ["--help"]).exit_code == 0
refused = runner.invoke(script.app, ["--steps", "0", "--lr", "1"])
assert refused.exit_code == 2 and "--steps" in refused.output, refused.output
print(sorted(name for name in {HEAVY!r} if name in sys.modules))
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_ctrl_c_before_a_run_directory_exists_is_one_line_and_status_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from sae_hacking.toy.experiments.training import run as training_run
    from sae_hacking.train_topk_sae_toy import app

    def interrupted(config: ToyTrainConfig) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(training_run, "run", interrupted)
    result = CliRunner().invoke(app, ["--steps", "1"])
    assert result.exit_code == 130
    assert result.output.strip() == "stopped by Ctrl-C"

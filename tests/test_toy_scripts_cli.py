"""The toy scripts' command lines: declared once by their configs, answered without heavy imports."""

import subprocess
import sys
from typing import Any

import pytest
import typer

from sae_hacking.config import options_of
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


@pytest.mark.parametrize("module", SCRIPTS)
def test_every_config_option_is_one_flag_with_the_same_default(module: str) -> None:
    script = __import__(module, fromlist=["app"])
    command = typer.main.get_command(script.app)
    params: dict[str, Any] = {p.name: p for p in command.params if p.name != "context"}
    fields = {f.name: f for f in options_of(SCRIPTS[module])}
    assert set(params) == set(fields)
    for name, field in fields.items():
        default = params[name].default
        if isinstance(field.default, tuple):
            assert default == [",".join(str(v) for v in field.default)], name
        else:
            assert default == field.default, name


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

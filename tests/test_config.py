"""The config-is-the-CLI convention: options declared once, checked by field, resumed by one rule."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_hacking.cli import config_command, make_app
from sae_hacking.config import (
    ConfigError,
    check_options,
    device_option,
    one_of,
    option,
    positive,
    read_saved_options,
    resume_option,
    resumed,
    to_json,
)


@dataclass(frozen=True)
class Demo:
    """A demo tool."""

    lr: float = option(1e-3, "learning rate", check=positive)
    width: int | None = option(None, "latents", default_text="2A")
    multipliers: tuple[float, ...] = option((0.1, 0.25), "inner multipliers")
    decay: str = option("cosine", "decay", check=one_of("cosine", "linear"))
    hierarchical: bool = option(False, "hierarchical SAE")
    device: str = device_option()
    resume: Path | None = resume_option()

    def __post_init__(self) -> None:
        check_options(self)


def invoke(args: list[str]) -> tuple[int, str, list[Demo]]:
    seen: list[Demo] = []
    app = make_app("demo")
    config_command(app, Demo, seen.append)
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output, seen


def test_command_options_come_from_the_config_fields() -> None:
    code, output, _ = invoke(["--help"])
    assert code == 0
    for flag in ("--lr", "--width", "--multipliers", "--decay", "--hierarchical", "--resume"):
        assert flag in output
    assert "learning rate" in output and "2A" in output


def test_command_builds_the_config_with_parsed_values() -> None:
    code, _, seen = invoke(["--lr", "0.5", "--multipliers", "1,2.5", "--hierarchical"])
    assert code == 0
    assert seen == [Demo(lr=0.5, multipliers=(1.0, 2.5), hierarchical=True)]


def test_underscore_spellings_reach_the_same_option() -> None:
    code, _, seen = invoke(["--multipliers", "3", "--lr=0.1", "--device", "cpu"])
    assert code == 0 and seen[0].multipliers == (3.0,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "-1"], "--lr: -1.0 must be positive"),
        (["--decay", "step"], "--decay: unknown value 'step'"),
        (["--multipliers", "a,b"], "--multipliers: 'a,b' is not a comma-separated list"),
        (["--device", "tpu"], "--device: unknown device 'tpu'"),
    ],
)
def test_a_failed_check_is_one_line_naming_the_flag(args: list[str], message: str) -> None:
    code, output, seen = invoke(args)
    assert code == 2 and not seen
    assert message in output
    assert "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


def test_python_callers_get_the_field_name() -> None:
    with pytest.raises(ConfigError, match=r"^lr: ") as error:
        Demo(lr=0)
    assert error.value.field == "lr"


def saved_run(tmp_path: Path, config: Demo) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"config": to_json(config)}))
    return run_dir


def test_resume_takes_the_saved_options(tmp_path: Path) -> None:
    run_dir = saved_run(tmp_path, Demo(lr=0.5, multipliers=(2.0,), width=7))
    config = resumed(Demo(resume=run_dir), read_saved_options(run_dir))
    assert config == Demo(lr=0.5, multipliers=(2.0,), width=7, resume=run_dir)


def test_resume_refuses_a_contradicting_option_naming_both_values(tmp_path: Path) -> None:
    run_dir = saved_run(tmp_path, Demo(lr=0.5))
    with pytest.raises(ConfigError, match=r"^lr: 0.25 contradicts the resumed run's 0.5"):
        resumed(Demo(lr=0.25, resume=run_dir), read_saved_options(run_dir))


def test_resume_lets_resumable_options_change(tmp_path: Path) -> None:
    run_dir = saved_run(tmp_path, Demo(device="cuda"))
    config = resumed(Demo(device="cpu", resume=run_dir), read_saved_options(run_dir))
    assert config.device == "cpu"


def test_resume_on_the_command_line_sees_a_flag_given_at_its_default(tmp_path: Path) -> None:
    run_dir = saved_run(tmp_path, Demo(lr=0.5))
    seen: list[Demo] = []

    def work(config: Demo) -> None:
        seen.append(resumed(config, read_saved_options(run_dir)))

    app = make_app("demo")
    config_command(app, Demo, work)
    runner = CliRunner()
    refused = runner.invoke(app, ["--resume", str(run_dir), "--lr", "0.001"])
    assert refused.exit_code == 2
    assert "--lr: 0.001 contradicts the resumed run's 0.5" in refused.output
    accepted = runner.invoke(app, ["--resume", str(run_dir), "--lr", "0.5"])
    assert accepted.exit_code == 0 and seen[0].lr == 0.5


def test_resume_of_a_directory_without_config_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^resume: .* has no config.json"):
        read_saved_options(tmp_path)


@dataclass(frozen=True)
class OtherTool:
    """Another tool, sharing an option name with Demo."""

    lr: float = option(1e-3, "learning rate")
    rows: tuple[int, ...] = option((), "rows")
    resume: Path | None = resume_option()


def test_resume_refuses_a_run_of_another_tool_by_its_recorded_tool(tmp_path: Path) -> None:
    from sae_hacking.io.rundir import write_config

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    write_config(run_dir, OtherTool(lr=0.5), ["other"])
    assert json.loads((run_dir / "config.json").read_text())["tool"] == "OtherTool"
    with pytest.raises(ConfigError, match=r"^resume: .* a run of another tool \(OtherTool\)"):
        resumed(Demo(resume=run_dir), read_saved_options(run_dir))


def test_resume_refuses_an_older_run_of_another_tool_by_its_options(tmp_path: Path) -> None:
    # Runs written before config.json named its tool: options this tool lacks give it away.
    run_dir = saved_run(tmp_path, OtherTool(lr=0.5))  # pyright: ignore[reportArgumentType]
    with pytest.raises(ConfigError, match=r"^resume: .* another tool \(its options rows"):
        resumed(Demo(resume=run_dir), read_saved_options(run_dir))


def test_resume_reads_an_older_run_of_the_same_tool(tmp_path: Path) -> None:
    run_dir = saved_run(tmp_path, Demo(lr=0.5))  # no "tool" recorded
    assert resumed(Demo(resume=run_dir), read_saved_options(run_dir)).lr == 0.5


def test_a_usage_error_is_one_line_naming_the_flag() -> None:
    for args, line in [
        (["--lr", "fast"], "error: --lr: "),
        (["--learning-rate", "1"], "error: --learning-rate: no such option"),
        (["--lr"], "error: --lr: needs a value"),
        (["--decai", "linear"], "did you mean --decay"),
    ]:
        code, output, _ = invoke(args)
        assert code == 2 and len(output.strip().splitlines()) == 1, output
        assert line in output, output

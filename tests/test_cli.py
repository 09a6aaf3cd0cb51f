import pytest
import torch
from typer.testing import CliRunner

from sae_hacking.cli import dashed_flags, make_app
from sae_hacking.devices import resolve_device
from sae_hacking.errors import UserInputError


def test_dashed_flags_rewrites_names_but_not_values() -> None:
    args = ["--perturbation_size", "0_4", "--model_dim=5_0", "-k", "x_y", "--", "--keep_me"]
    assert dashed_flags(args) == [
        "--perturbation-size",
        "0_4",
        "--model-dim=5_0",
        "-k",
        "x_y",
        "--",
        "--keep_me",
    ]


def test_every_command_accepts_underscore_spellings_and_shows_one_in_help() -> None:
    app = make_app("test")
    seen: list[int] = []

    @app.command()
    def main(batch_size: int = 1) -> None:
        seen.append(batch_size)

    runner = CliRunner()
    assert runner.invoke(app, ["--batch_size", "7"]).exit_code == 0
    assert runner.invoke(app, ["--batch-size=8"]).exit_code == 0
    assert seen == [7, 8]
    assert "--batch_size" not in runner.invoke(app, ["--help"]).output


def test_resolve_device_refuses_unknown_names_with_the_flag() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserInputError, match="device: unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserInputError, match="no CUDA device"):
            resolve_device("cuda")

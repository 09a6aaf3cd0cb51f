"""What every script shares at its edge: the typer app, one-line errors, device choice."""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import torch
import typer
from rich.console import Console
from typer._click.core import Context
from typer.core import TyperCommand

from sae_hacking.errors import UserInputError

stderr = Console(stderr=True)

T = TypeVar("T")

DEVICE_CHOICES = ("auto", "cpu", "cuda")

# Flags every script spells the same way.
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")]
DtypeOption = Annotated[str, typer.Option(help="model dtype: float32, bfloat16 or float16")]
OutputDirOption = Annotated[
    Path | None,
    typer.Option(help="where run directories go [default: $SAE_HACKING_RESULTS or ./results]"),
]


def dashed_flags(args: list[str]) -> list[str]:
    """Spell every long flag with dashes, so ``--perturbation_size`` means ``--perturbation-size``.

    The original toolkit's commands use underscores; accepting both here keeps ``--help`` to one
    spelling per flag. Values (after ``=`` or in their own word) and words after ``--`` are untouched.
    """
    out: list[str] = []
    for position, word in enumerate(args):
        if word == "--":
            return out + args[position:]
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            word = name.replace("_", "-") + eq + value
        out.append(word)
    return out


class DashedFlagsCommand(TyperCommand):
    """A typer command that reads underscore spellings of its flags as dashes."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, dashed_flags(args))


class ToolkitTyper(typer.Typer):
    """Typer whose commands all accept underscore spellings of their flags."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", DashedFlagsCommand)
        return super().command(*args, **kwargs)


def make_app(help_text: str) -> typer.Typer:
    """A typer app that never prints locals, has no shell-completion noise and takes both spellings."""
    return ToolkitTyper(
        help=help_text,
        pretty_exceptions_show_locals=False,
        add_completion=False,
        # Help texts are plain text: "[default: ...]" must not be read as rich markup.
        rich_markup_mode=None,
        no_args_is_help=False,
    )


def fail(error: UserInputError) -> NoReturn:
    """Print the one-line error and exit with the usage-error status."""
    stderr.print(f"[bold red]error[/]: {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def run_or_fail(work: Callable[[], T]) -> T:
    """Run the script's work, turning a UserInputError into one line on stderr."""
    try:
        return work()
    except UserInputError as error:
        fail(error)


def resolve_device(spec: str, flag: str = "--device") -> torch.device:
    """Turn ``auto|cpu|cuda[:N]`` into a device, refusing CUDA where there is none."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserInputError(
                flag, f"'{spec}' asked for, but no CUDA device is visible; use cpu"
            )
        try:
            device = torch.device(spec)
        except RuntimeError as error:
            raise UserInputError(
                flag, f"'{spec}' is not a device; use auto, cpu or cuda"
            ) from error
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(
                flag, f"'{spec}' but only {torch.cuda.device_count()} CUDA devices are visible"
            )
        return device
    raise UserInputError(flag, f"unknown device '{spec}'; use one of {', '.join(DEVICE_CHOICES)}")


def command_line() -> list[str]:
    """The command line this process was started with, for config.json."""
    return list(sys.argv)

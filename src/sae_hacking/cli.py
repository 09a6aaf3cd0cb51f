"""What every script shares at its edge: the typer app, one-line errors, device choice."""

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar, get_args, get_origin

import typer
from rich.console import Console
from typer._click.core import Context
from typer._click.exceptions import BadOptionUsage, BadParameter, NoSuchOption, UsageError
from typer.core import TyperCommand

from sae_hacking.config import (
    ConfigError,
    explicit_options,
    flag_of,
    option_types,
    options_of,
    plain_type,
)
from sae_hacking.errors import RunStopped, UserInputError

# The shell's status for a process ended by Ctrl-C (128 + SIGINT).
INTERRUPTED_STATUS = 130

stderr = Console(stderr=True)

T = TypeVar("T")
C = TypeVar("C")


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


def usage_problem(error: UsageError) -> tuple[str | None, str]:
    """The flag a command-line usage error is about (None: the whole command) and its problem."""
    if isinstance(error, BadParameter) and error.param is not None:
        param = error.param
        opts = [o for o in param.opts if o.startswith("--")] or param.opts
        where = opts[0] if getattr(param, "param_type_name", "") == "option" else None
        where = where or str(param.name).upper()  # an argument, spelled as config_command does
        problem = error.message or "missing"
        return where, problem[0].lower() + problem[1:]
    if isinstance(error, NoSuchOption):
        hint = (
            f"; did you mean {' or '.join(sorted(error.possibilities))}?"
            if error.possibilities
            else ""
        )
        return error.option_name, f"no such option{hint} (see --help)"
    if isinstance(error, BadOptionUsage):
        needs_value = "requires an argument" in error.message
        return error.option_name, "needs a value" if needs_value else error.message
    return None, error.format_message()


class OneLineUsageError(UsageError):
    """A usage error (a flag that does not exist, a value of the wrong type) shown as the one line
    every other bad input gets, instead of click's usage block."""

    def __init__(self, error: UsageError) -> None:
        super().__init__(error.message, error.ctx)
        self.where, self.problem = usage_problem(error)

    def show(self, file: Any = None) -> None:
        del file  # always stderr, like every other error line
        where = f"{self.where}: " if self.where else ""
        stderr.print(
            f"[bold red]error[/]: {where}{self.problem}",
            highlight=False,
            soft_wrap=True,
            markup=True,
        )


class DashedFlagsCommand(TyperCommand):
    """A typer command that reads underscore spellings of its flags as dashes, and reports a
    usage error in one line."""

    def parse_args(self, ctx: Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, dashed_flags(args))
        except UsageError as error:
            raise OneLineUsageError(error) from None


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


def fail(error: UserInputError, spelling: Callable[[str], str] = flag_of) -> NoReturn:
    """Print the one-line error, the config field spelled as on the command line, and exit 2."""
    where = spelling(error.field) if isinstance(error, ConfigError) else error.flag
    stderr.print(f"[bold red]error[/]: {where}: {error.problem}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def run_or_fail(work: Callable[[], T], spelling: Callable[[str], str] = flag_of) -> T:
    """Run the script's work, turning a UserInputError into one line on stderr, and a run
    stopped by Ctrl-C into one line saying how to continue it (exit status 130)."""
    try:
        return work()
    except UserInputError as error:
        fail(error, spelling)
    except RunStopped as stop:
        stderr.print(stop.message, highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(code=INTERRUPTED_STATUS) from None
    except KeyboardInterrupt:
        # A tool that keeps no state to resume from (or one stopped before it made any).
        stderr.print("stopped by Ctrl-C", highlight=False)
        raise typer.Exit(code=INTERRUPTED_STATUS) from None


def _list_parser(flag: str, element: Any) -> Callable[[list[str]], tuple[Any, ...]]:
    """Repeated words, each possibly a comma-separated list (paths are never split on commas)."""

    def parse(words: list[str]) -> tuple[Any, ...]:
        if element is Path:
            return tuple(Path(w) for w in words)
        parts = [p.strip() for w in words for p in w.split(",") if p.strip()]
        try:
            return tuple(element(p) for p in parts)
        except ValueError as error:
            raise UserInputError(
                flag, f"'{','.join(words)}' is not a comma-separated list of {element.__name__}"
            ) from error

    return parse


def _typer_parameter(
    field: dataclasses.Field[Any], annotation: Any
) -> tuple[inspect.Parameter, Callable[[Any], Any] | None]:
    """The typer parameter of one config option, and how to turn its text into the field's type."""
    meta = field.metadata
    flag = flag_of(field.name)
    inner, _optional = plain_type(annotation)
    parse: Callable[[Any], Any] | None = None
    default: Any = field.default
    cli_annotation: Any = annotation
    metavar: str | None = field.name.upper() if meta["argument"] else None
    if get_origin(inner) is tuple:
        # Tuples take the flag repeated, a comma-separated word, or both: --latents 3,5 --latents 8
        element = get_args(inner)[0]
        parse = _list_parser(flag, element)
        cli_annotation = list[str] | None
        words = [str(v) for v in default] if default else []
        default = words or None
        if not meta["argument"]:
            metavar = "<path>" if element is Path else f"<{element.__name__},...>"
    show_default: bool | str = default not in (None, "")
    if isinstance(default, list):
        show_default = ",".join(default)
    if meta["default_text"] is not None:
        show_default = meta["default_text"]
    if meta["argument"]:
        info = typer.Argument(
            default, help=meta["help"], show_default=show_default, metavar=metavar
        )
    else:
        declarations = [flag, *meta["aliases"]]
        if inner is bool:
            declarations[0] = f"{flag}/--no-{flag[2:]}"
        info = typer.Option(
            default, *declarations, help=meta["help"], show_default=show_default, metavar=metavar
        )
    parameter = inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=cli_annotation
    )
    return parameter, parse


def config_command(
    app: typer.Typer,
    config_cls: type[C],
    work: Callable[[C], object],
    *,
    name: str | None = None,
) -> None:
    """Add a command to ``app`` whose options are the fields of ``config_cls``.

    The command builds the config (its ``__post_init__`` checks it), records which options were
    given on the command line (for the resume rule, ``config.resumed``) and calls ``work``. A
    ``UserInputError`` becomes one line naming the flag. The command's help is the config's
    docstring.
    """
    hints = option_types(config_cls)
    arguments = {f.name for f in options_of(config_cls) if f.metadata["argument"]}

    def spelling(field: str) -> str:
        return field.upper() if field in arguments else flag_of(field)

    defaults = {f.name: f.default for f in options_of(config_cls)}
    parameters: list[inspect.Parameter] = []
    parsers: dict[str, Callable[[Any], Any]] = {}
    for field in options_of(config_cls):
        parameter, parse = _typer_parameter(field, hints[field.name])
        parameters.append(parameter)
        if parse is not None:
            parsers[field.name] = parse

    def command(context: Any, **values: Any) -> None:
        sources = {n: context.get_parameter_source(n) for n in values}
        explicit = frozenset(
            n for n, source in sources.items() if getattr(source, "name", None) == "COMMANDLINE"
        )

        def build_and_work() -> object:
            parsed = {
                n: v if n not in parsers else parsers[n](v) if v else defaults[n]
                for n, v in values.items()
            }
            config = config_cls(**parsed)
            token = explicit_options.set(explicit)
            try:
                return work(config)
            finally:
                explicit_options.reset(token)

        run_or_fail(build_and_work, spelling)

    context = inspect.Parameter(
        "context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    parameters.insert(0, context)
    command.__signature__ = inspect.Signature(parameters)  # pyright: ignore[reportFunctionMemberAccess]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = inspect.getdoc(config_cls)
    command.__name__ = name or "main"
    command.config_class = config_cls  # pyright: ignore[reportFunctionMemberAccess]
    app.command(name=name)(command)

"""Tool configs: one frozen dataclass per tool holds each option's name, default, help and check.

The dataclass is the single source of a tool's options. ``cli.config_command`` builds the typer
command from it (the flag of field ``batch_size`` is ``--batch-size``), and Python callers build the
same dataclass and call the tool's ``run(config)``. Checks raise ``ConfigError`` naming the field;
the command line turns the field into its flag for the one-line error.

This module imports nothing heavy (no torch, typer or matplotlib), so ``--help`` and flag errors
answer at once.
"""

import dataclasses
import json
import types
from collections.abc import Callable, Collection, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from sae_hacking.errors import UserInputError

# A check takes the value and returns the problem, or None when the value is fine.
Check = Callable[[Any], str | None]

C = TypeVar("C")


class ConfigError(UserInputError):
    """A config value that cannot run, named by its field (the CLI shows the flag)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(field, problem)
        self.field = field


def flag_of(field: str) -> str:
    """The command-line spelling of a config field: ``batch_size`` -> ``--batch-size``."""
    return field if field.startswith("-") else "--" + field.replace("_", "-")


def option(
    default: Any,
    help: str,
    *,
    check: Check | None = None,
    aliases: tuple[str, ...] = (),
    argument: bool = False,
    resumable: bool = False,
    default_text: str | None = None,
) -> Any:
    """Declare one option of a tool: its default, its help text and its check.

    ``aliases`` are extra flag spellings (``("--max-step",)``); ``argument`` makes it positional;
    ``resumable`` marks options that may change when a run is resumed (device, threads);
    ``default_text`` is shown as the default in ``--help`` where the default is resolved later.
    """
    metadata = {
        "help": help,
        "check": check,
        "aliases": aliases,
        "argument": argument,
        "resumable": resumable,
        "default_text": default_text,
    }
    if isinstance(default, list | dict | set):
        raise TypeError("option defaults must be immutable: use a tuple")
    return dataclasses.field(default=default, metadata=metadata)


def options_of(config_cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of a config that are options (declared with ``option``)."""
    return [
        f
        for f in dataclasses.fields(config_cls)
        if f.init and "help" in f.metadata  # resolved fields (init=False) are not options
    ]


def option_types(config_cls: type) -> dict[str, Any]:
    """Each option's resolved type annotation."""
    hints = get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in options_of(config_cls)}


def check_options(config: Any) -> None:
    """Run every option's own check; the first problem is raised as a ConfigError."""
    for f in options_of(type(config)):
        check: Check | None = f.metadata["check"]
        if check is None:
            continue
        problem = check(getattr(config, f.name))
        if problem is not None:
            raise ConfigError(f.name, problem)


# Checks shared by every tool. Each returns None for a good value.


def positive(value: float | int | None) -> str | None:
    return None if value is None or value > 0 else f"{value} must be positive"


def non_negative(value: float | int | None) -> str | None:
    return None if value is None or value >= 0 else f"{value} must not be negative"


def between(low: float | int, high: float | int) -> Check:
    def check(value: float | int | None) -> str | None:
        if value is None or low <= value <= high:
            return None
        return f"{value} must be between {low} and {high}"

    return check


def at_most(high: float | int) -> Check:
    def check(value: float | int | None) -> str | None:
        return None if value is None or value <= high else f"{value} must be at most {high}"

    return check


def count_up_to(limit: int, why: str) -> Check:
    """A positive count of at most ``limit``; ``why`` says what a larger one would mean."""

    def check(value: int | None) -> str | None:
        if value is None or value <= limit:
            return positive(value)
        return f"{value} is beyond the limit of {limit:.0e} ({why}); lower it"

    return check


def one_of(*choices: str) -> Check:
    def check(value: str | None) -> str | None:
        if value is None or value in choices:
            return None
        return f"unknown value '{value}'; use one of {', '.join(choices)}"

    return check


def each(check: Check) -> Check:
    """Apply a check to every element of a tuple option."""

    def check_all(values: tuple[Any, ...] | None) -> str | None:
        for value in values or ():
            problem = check(value)
            if problem is not None:
                return problem
        return None

    return check_all


def all_of(*checks: Check) -> Check:
    def check_all(value: Any) -> str | None:
        for check in checks:
            problem = check(value)
            if problem is not None:
                return problem
        return None

    return check_all


# Devices are named here (not resolved: that needs torch) so configs can check them cheaply.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def device_name(value: str) -> str | None:
    if value in DEVICE_CHOICES or (value.startswith("cuda:") and value[5:].isdigit()):
        return None
    return f"unknown device '{value}'; use auto, cpu, cuda or cuda:N"


DTYPE_CHOICES = ("float32", "bfloat16", "float16")


# Values as JSON and back.


def plain_type(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (annotation, False)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(get_args(annotation)) == 2:
            return args[0], True
    return annotation, False


def value_from_json(annotation: Any, value: Any) -> Any:
    """A config value read back from config.json, in the field's own type."""
    inner, _optional = plain_type(annotation)
    if value is None:
        return None
    if inner is Path:
        return Path(value)
    if get_origin(inner) is tuple:
        (element, *_rest) = get_args(inner)
        return tuple(value_from_json(element, v) for v in value)
    if get_origin(inner) is list:
        (element,) = get_args(inner)
        return [value_from_json(element, v) for v in value]
    if inner is float and isinstance(value, int):
        return float(value)
    return value


def to_json(value: Any) -> Any:
    """A config value as plain JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# The resume rule, the same for every tool: the saved config wins; an option given now that
# contradicts it is an error naming the flag and both values. The CLI records which options were
# given on the command line; a Python caller's options count as given where they differ from
# their defaults.
explicit_options: ContextVar[frozenset[str] | None] = ContextVar("explicit_options", default=None)


def given_options(config: Any) -> set[str]:
    """The options the caller chose: from the command line, or those that differ from defaults."""
    explicit = explicit_options.get()
    if explicit is not None:
        return set(explicit)
    return {
        f.name
        for f in options_of(type(config))
        if f.default is not dataclasses.MISSING and getattr(config, f.name) != f.default
    }


class SavedOptions(dict[str, Any]):
    """The options of a run's config.json, with the run directory and the tool that wrote it."""

    def __init__(self, options: Mapping[str, Any], run_dir: Path, tool: str | None) -> None:
        super().__init__(options)
        self.run_dir = run_dir
        self.tool = tool  # the name of the writing tool's config class; None in older runs


def tool_of(config: Any) -> str | None:
    """What config.json records as the tool that wrote a run: the name of its config class."""
    return type(config).__name__ if dataclasses.is_dataclass(config) else None


def read_saved_options(run_dir: Path, field: str = "resume") -> SavedOptions:
    """The ``config`` object of a run directory's config.json."""
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(field, f"'{run_dir}' has no config.json; give a run directory")
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        options = saved["config"]
        tool = saved.get("tool")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ConfigError(field, f"'{path}' is damaged ({error}); start a new run") from error
    if not isinstance(options, dict):
        raise ConfigError(field, f"'{path}' holds no config; start a new run")
    return SavedOptions(options, run_dir, tool if isinstance(tool, str) else None)


def check_same_tool(config_cls: type, saved: Mapping[str, Any], field: str) -> None:
    """Refuse to resume a run that another tool wrote: its config.json names another config class,
    or (older runs, which name none) holds options this tool does not have."""
    where = f"'{saved.run_dir}'" if isinstance(saved, SavedOptions) else "the run"
    tool = saved.tool if isinstance(saved, SavedOptions) else None
    if tool is not None and tool != config_cls.__name__:
        raise ConfigError(
            field, f"{where} is a run of another tool ({tool}); give a run of this tool"
        )
    known = {f.name for f in dataclasses.fields(config_cls)}
    foreign = sorted(set(saved) - known)
    if foreign:
        raise ConfigError(
            field,
            f"{where} was written by another tool (its options {', '.join(foreign[:4])} are not "
            "this tool's); give a run of this tool",
        )


def resumed(
    config: C,
    saved: Mapping[str, Any],
    *,
    field: str = "resume",
    keep: Collection[str] = (),
) -> C:
    """The config to resume with: the saved options, overruled only by resumable ones given now.

    ``keep`` names options that always come from ``config`` (the resume directory itself).
    Raises ConfigError when the saved run is another tool's, or an option given now contradicts it.
    """
    cls = type(config)
    check_same_tool(cls, saved, field)
    hints = option_types(cls)
    given = given_options(config)
    values: dict[str, Any] = {}
    for f in options_of(cls):
        name = f.name
        current = getattr(config, name)
        if name in keep or name == field or name not in saved:
            values[name] = current
            continue
        previous = value_from_json(hints[name], saved[name])
        if name in given and f.metadata["resumable"]:
            values[name] = current
        elif name in given and to_json(current) != to_json(previous):
            raise ConfigError(
                name,
                f"{to_json(current)!r} contradicts the resumed run's {to_json(previous)!r}; "
                f"leave it out to resume, or start a new run",
            )
        else:
            values[name] = previous
    return cls(**values)


# Options every tool spells the same way, declared once here.


def device_option(default: str = "auto") -> Any:
    return option(default, "auto, cpu, cuda or cuda:N", check=device_name, resumable=True)


def dtype_option(default: str = "float32") -> Any:
    return option(
        default, "model dtype: float32, bfloat16 or float16", check=one_of(*DTYPE_CHOICES)
    )


def output_dir_option() -> Any:
    return option(
        None,
        "where run directories go",
        default_text="$SAE_HACKING_RESULTS or ./results",
        resumable=True,
    )


def resume_option() -> Any:
    return option(
        None,
        "continue this run directory; its saved options win, and a flag that contradicts "
        "them is an error",
    )


def threads_option(default: int = 1) -> Any:
    return option(
        default, "torch CPU threads (one is fastest for small ops)", check=positive, resumable=True
    )

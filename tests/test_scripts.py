"""Every script of pyproject.toml: its options come from its config, once, and --help is instant.

The scripts are read from ``[project.scripts]``, so a new script is covered without editing here.
"""

import ast
import dataclasses
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command

from sae_hacking.config import flag_of

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "sae_hacking"
SCRIPTS: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
HEAVY = ("torch", "transformer_lens", "sae_lens", "matplotlib", "datasets")

# Scripts whose command is still written by hand rather than built from a config (none now): a
# script may stand here only while it is being converted.
NOT_YET_CONVERTED: set[str] = set()
CONVERTED = sorted(set(SCRIPTS) - NOT_YET_CONVERTED)


def module_of(script: str) -> str:
    return SCRIPTS[script].partition(":")[0]


def test_not_yet_converted_names_real_scripts() -> None:
    assert set(SCRIPTS) >= NOT_YET_CONVERTED


def test_script_modules_import_no_heavy_library() -> None:
    """What ``--help`` and flag errors pay for: importing the scripts and their configs only.

    One fresh interpreter imports them in turn and names the first that pulls a heavy library in.
    """
    code = (
        "import importlib, sys\n"
        f"for module in {[module_of(s) for s in CONVERTED]!r}:\n"
        "    importlib.import_module(module)\n"
        f"    heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "    if heavy:\n"
        "        print(module, 'imports', *heavy)\n"
        "        break\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_pair_search_never_imports_transformer_lens_or_sae_lens() -> None:
    code = (
        "import sys, sae_hacking.pair_search.run, sae_hacking.look_for_pairs; "
        "print(' '.join(m for m in ('transformer_lens', 'sae_lens') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def command_and_config(script: str) -> tuple[Any, type]:
    module, _, attribute = SCRIPTS[script].partition(":")
    app: typer.Typer = getattr(importlib.import_module(module), attribute)
    (registered,) = app.registered_commands
    assert registered.callback is not None
    return get_command(app), registered.callback.config_class  # pyright: ignore[reportFunctionMemberAccess]


def cli_default(default: Any) -> Any:
    """A config default as the command line holds it: tuples as lists of words."""
    if isinstance(default, tuple):
        return [str(v) for v in default] or None
    return default


@pytest.mark.parametrize("script", CONVERTED)
def test_every_config_field_is_exactly_one_option_with_its_default(script: str) -> None:
    command, config_cls = command_and_config(script)
    fields = [f for f in dataclasses.fields(config_cls) if f.init]
    assert all("help" in f.metadata for f in fields), "declare every field with option()"
    params = [p for p in command.params if p.name != "help"]
    assert sorted(str(p.name) for p in params) == sorted(f.name for f in fields)
    by_name = {p.name: p for p in params}
    for field in fields:
        param = by_name[field.name]
        assert param.default == cli_default(field.default), field.name
        if not field.metadata["argument"]:
            assert flag_of(field.name) in param.opts, field.name
            assert set(field.metadata["aliases"]) <= set(param.opts), field.name


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_scripts_and_cli_import_the_cli_or_typer() -> None:
    edge = {PACKAGE / f"{module_of(s).rpartition('.')[2]}.py" for s in SCRIPTS}
    edge.add(PACKAGE / "cli.py")
    offenders = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path not in edge
        and any(
            name == "typer" or name.startswith(("typer.", "sae_hacking.cli"))
            for name in imported_modules(path)
        )
    )
    assert offenders == []

"""Run directories: ``config.json`` is written first, results and checkpoints go beside it."""

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from sae_hacking.config import tool_of
from sae_hacking.errors import UserInputError
from sae_hacking.io.atomic import atomic_write_json

RESULTS_ENV = "SAE_HACKING_RESULTS"
TRACKED_PACKAGES = (
    "sae-hacking",
    "torch",
    "numpy",
    "transformer-lens",
    "sae-lens",
    "transformers",
    "safetensors",
)


def default_output_dir() -> Path:
    """``$SAE_HACKING_RESULTS`` if set, else ``./results``."""
    return Path(os.environ.get(RESULTS_ENV, "results"))


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a run's numbers."""
    versions: dict[str, str] = {"python": sys.version.split()[0]}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the checkout this code runs from, or None outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def jsonable(value: Any) -> Any:
    """Config values as JSON: dataclasses, paths, tuples and devices become plain values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def make_run_dir(output_dir: Path, prefix: str, flag: str = "--output-dir") -> Path:
    """Create a fresh run directory ``output_dir/prefix-YYYYmmdd-HHMMSS[-N]``."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UserInputError(flag, f"'{output_dir}' is a file; give a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserInputError(flag, f"cannot create '{output_dir}': {error.strerror}") from error
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        name = f"{prefix}-{stamp}" if attempt == 0 else f"{prefix}-{stamp}-{attempt}"
        run_dir = output_dir / name
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise UserInputError(
                flag, f"cannot write in '{output_dir}': {error.strerror}; give another directory"
            ) from error
        return run_dir
    raise UserInputError(flag, f"could not create a fresh run directory in '{output_dir}'")


# What a run directory holds before its run has produced anything.
_STARTING_FILES = {"config.json", "resumes.jsonl"}


def remove_if_unused(run_dir: Path) -> bool:
    """Delete ``run_dir`` if it holds nothing but its config (and temporaries); True if deleted."""
    if not run_dir.is_dir():
        return False
    for path in run_dir.iterdir():
        temporary = path.name.startswith(".") and path.name.endswith(".tmp")
        if path.name not in _STARTING_FILES and not temporary:
            return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def remove_run_dir(run_dir: Path) -> None:
    """Delete a fresh run directory whose run turned out to hold nothing (it counted no token)."""
    shutil.rmtree(run_dir, ignore_errors=True)


@contextmanager
def removed_unless_used(run_dir: Path) -> Iterator[Path]:
    """Yield ``run_dir``; if the work inside fails before writing anything beside the config
    (a corpus refused while streaming, an interrupt), delete it so no empty run is left behind."""
    try:
        yield run_dir
    except BaseException:
        remove_if_unused(run_dir)
        raise


@contextmanager
def fresh_run_dir(output_dir: Path, prefix: str, flag: str = "--output-dir") -> Iterator[Path]:
    """``make_run_dir``, deleted again if the work inside fails before it wrote any result."""
    with removed_unless_used(make_run_dir(output_dir, prefix, flag)) as run_dir:
        yield run_dir


def write_config(run_dir: Path, config: Any, argv: list[str]) -> None:
    """Write ``config.json``: the resolved config, the tool that wrote it (checked on --resume),
    the command line, versions and git commit."""
    atomic_write_json(
        run_dir / "config.json",
        {
            "config": jsonable(config),
            "tool": tool_of(config),
            "command": argv,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
            "versions": package_versions(),
        },
    )

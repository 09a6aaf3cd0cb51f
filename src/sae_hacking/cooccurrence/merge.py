"""The merge behind merge_cooccurrences.py: finished co-occurrence runs summed into a new run."""

from pathlib import Path
from typing import Any

from sae_hacking.cooccurrence.config import MergeConfig
from sae_hacking.devices import command_line
from sae_hacking.io.cooccurrence_results import merge_results, open_mergeable
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config


def run(config: MergeConfig) -> tuple[Path, dict[str, Any]]:
    """Sum the runs into a fresh run directory; returns it and the merged counts' manifest."""
    runs = list(config.runs)
    open_mergeable(runs)  # every input checked before a run directory is made
    run_dir = make_run_dir(config.output_dir or default_output_dir(), "merge_cooccurrences")
    write_config(run_dir, config, command_line())
    return run_dir, merge_results(runs, run_dir)

"""Sum the counts of finished gemma_cooccurrences.py runs (e.g. shards run on separate machines).

The runs must share model, SAE, layout and BOS handling; their corpora should be disjoint.
"""

from pathlib import Path
from typing import Annotated

import typer

from sae_hacking.cli import OutputDirOption, make_app, run_or_fail
from sae_hacking.devices import command_line
from sae_hacking.io.cooccurrence_results import merge_results, open_mergeable
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config

app = make_app(__doc__ or "")


@app.command()
def main(
    runs: Annotated[list[Path], typer.Argument(help="run directories of gemma_cooccurrences.py")],
    output_dir: OutputDirOption = None,
) -> None:
    """Merge co-occurrence runs into one run directory."""

    def work() -> None:
        open_mergeable(runs)  # every input checked before a run directory is made
        run_dir = make_run_dir(output_dir or default_output_dir(), "merge_cooccurrences")
        write_config(run_dir, {"runs": [str(r) for r in runs]}, command_line())
        manifest = merge_results(runs, run_dir)
        typer.echo(f"{run_dir} ({manifest['tokens']:,} tokens, {manifest['prompts']:,} prompts)")

    run_or_fail(work)


if __name__ == "__main__":
    app()

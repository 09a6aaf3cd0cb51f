"""The toy hunt script at its 25 x 3 defaults, read through a reader SAE: the ranked score finds
the ablator's absorbed pairs, and the original scoring does not."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_hacking.toy_absorption_hunt import app


# Measured with benchmarks/hunt_methods.py, seed 0 (73 absorbed pairs): ranked P/R 1.00 / 1.00 for
# both downstream maps; the original 1.00 / 0.00 (readout) and 1.00 / 0.10 (random).
@pytest.mark.slow
@pytest.mark.parametrize("downstream", ["readout", "random"])
def test_through_a_reader_sae_the_ranked_hunt_finds_the_25x3_pairs(
    tmp_path: Path, downstream: str
) -> None:
    flags = ["--downstream", downstream, "--reader", "sae", "--seed", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, [*flags, "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    at_default = json.loads((run_dir / "hunt.json").read_text(encoding="utf-8"))["at_default"]
    ranked, original = at_default["ranked"], at_default["original"]
    assert ranked["actual"] >= 60  # the ablator absorbs (73 pairs measured)
    assert ranked["precision"] >= 0.95
    assert ranked["recall"] >= 0.95
    assert original["recall"] <= 0.2

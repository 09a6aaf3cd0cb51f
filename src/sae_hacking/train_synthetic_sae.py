"""Train an SAE on SynthSAEBench (or any sae-lens synthetic model) and score it against the truth.

Runs as ``uv run src/sae_hacking/train_synthetic_sae.py`` or as the ``train-synthetic-sae`` command.
Writes config.json, metrics.jsonl, summary.json (SynthSAEBench's metrics and absorption against the
hierarchy), absorption.json, the SAE in sae-lens's format under sae/, and the plots.
"""

import typer

from sae_hacking.cli import config_command, make_app
from sae_hacking.toy.experiments.synthetic.config import SyntheticTrainConfig

app = make_app(__doc__.splitlines()[0] if __doc__ else "")


def work(config: SyntheticTrainConfig) -> None:
    from sae_hacking.toy.experiments.synthetic.run import run

    outcome = run(config)
    bench = outcome.summary["synth_bench"]
    hierarchy = outcome.summary["hierarchy"]
    typer.echo(
        f"{outcome.summary['architecture']}: MCC {bench['mcc']:.3f}  F1 {bench['f1_score']:.3f}  "
        f"L0 {bench['sae_l0']:.1f}  explained variance {bench['explained_variance']:.3f}  "
        f"absorption {hierarchy['absorption_fraction']:.3f}  gap {hierarchy['absorption_gap']:.3f}  "
        f"({outcome.summary['samples_per_second']:,} samples/s)"
    )
    typer.echo(f"results in {outcome.run_dir}")


config_command(app, SyntheticTrainConfig, work)

if __name__ == "__main__":
    app()

"""Check the absorption hunt on planted ground truth: train a toy ablator SAE that absorbs (on a
toy tree or a sae-lens synthetic model), run the co-occurrence, selective-ablation and pair-search
steps on its samples, and score the pairs found against the SAE's truly absorbed pairs (precision,
recall, F1 over a threshold sweep)."""

from sae_hacking.cli import config_command, make_app
from sae_hacking.toy.experiments.hunt.config import HuntConfig

app = make_app(__doc__ or "")


def work(config: HuntConfig) -> None:
    from sae_hacking.toy.experiments.hunt.run import run

    run(config)


config_command(app, HuntConfig, work)


if __name__ == "__main__":
    app()

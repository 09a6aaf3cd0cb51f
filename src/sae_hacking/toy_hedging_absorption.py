"""Train standard, detached and balanced Matryoshka SAEs on a parent with children; score
absorption and hedging against the true features; write a table and cosine heat-maps.

The options are the fields of ``HedgingAbsorptionConfig``; the library is imported only to run.
"""

from sae_hacking.cli import config_command, make_app
from sae_hacking.toy.experiments.hedging.config import HedgingAbsorptionConfig

app = make_app(__doc__ or "")


def work(config: HedgingAbsorptionConfig) -> None:
    from sae_hacking.toy.experiments.hedging.run import run

    run(config)


config_command(app, HedgingAbsorptionConfig, work)


if __name__ == "__main__":
    app()

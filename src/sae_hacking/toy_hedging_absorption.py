"""Train standard, detached and balanced Matryoshka SAEs on a parent with children; score
absorption and hedging against the true features; write a table and cosine heat-maps."""

from typing import Annotated

import torch
import typer

from sae_hacking.cli import DeviceOption, OutputDirOption, make_app, run_or_fail
from sae_hacking.devices import resolve_device
from sae_hacking.errors import UserInputError
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.toy.data.tree_spec import PRESETS
from sae_hacking.toy.experiments.hedging.run import HedgingAbsorptionConfig, run
from sae_hacking.toy.metrics.absorption import AbsorptionThresholds

app = make_app(__doc__ or "")


def parse_multipliers(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise UserInputError("--inner-multipliers", f"'{text}' is not a list of numbers") from error


@app.command()
def main(
    hierarchy: Annotated[
        list[str] | None,
        typer.Option(help=f"preset ({', '.join(PRESETS)}) or JSON spec file; repeatable"),
    ] = None,
    inner_multipliers: Annotated[
        str, typer.Option(help="balanced Matryoshka inner-loss multipliers (beta), comma-separated")
    ] = "0.1,0.17,0.25,0.5",
    model_dim: Annotated[int, typer.Option(help="dimension of the activation space")] = 50,
    sparsity: Annotated[str, typer.Option(help="l1 (ReLU + L1) or topk")] = "l1",
    k: Annotated[int, typer.Option(help="k for --sparsity topk")] = 1,
    l1_coefficient: Annotated[float, typer.Option(help="L1 coefficient")] = 3e-2,
    init_to_truth: Annotated[bool, typer.Option(help="start each SAE at the true features")] = True,
    feature_ordering: Annotated[
        str | None, typer.Option(help="feature index for each latent at init, e.g. 0,1,2,3")
    ] = None,
    inner_width: Annotated[
        int | None,
        typer.Option(help="latents in the inner Matryoshka level [the tree's top parents]"),
    ] = None,
    init_noise: Annotated[
        float, typer.Option(help="noise added to the true features at init")
    ] = 0.0,
    steps: Annotated[int, typer.Option(help="training steps per SAE")] = 1500,
    batch_size: Annotated[int, typer.Option(help="samples per step")] = 4096,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 3e-3,
    eval_samples: Annotated[int, typer.Option(help="held-out samples for the metrics")] = 20_000,
    probe_k_max: Annotated[int, typer.Option(help="largest k of the k-sparse probes")] = 3,
    fraction_cos_threshold: Annotated[float, typer.Option(help="absorber cosine, fraction")] = 0.1,
    full_cos_threshold: Annotated[float, typer.Option(help="absorber cosine, full")] = 0.025,
    projection_threshold: Annotated[float, typer.Option(help="absorbed share of t")] = 0.4,
    max_absorbers: Annotated[int, typer.Option(help="latents that may share a parent")] = 3,
    active_threshold: Annotated[
        float, typer.Option(help="main latent counts as off at or below")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="seed of data, directions and SAEs")] = 0,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (toy sizes run fastest on one)")
    ] = 1,
    device: DeviceOption = "auto",
    output_dir: OutputDirOption = None,
) -> None:
    """Run the notebook's experiment and write metrics.json, heatmaps.png and the SAEs."""

    def work() -> None:
        hierarchies = hierarchy or ["notebook", "notebook-unbalanced"]
        if threads < 1:
            raise UserInputError("--threads", f"{threads} must be at least 1")
        # Measured on 2 cores: a second intra-op thread makes these tiny matmuls far slower.
        torch.set_num_threads(threads)
        try:
            thresholds = AbsorptionThresholds(
                fraction_cos_threshold,
                full_cos_threshold,
                projection_threshold,
                max_absorbers,
                active_threshold,
            )
        except ValueError as error:
            raise UserInputError("--max-absorbers/--active-threshold", str(error)) from error
        config = HedgingAbsorptionConfig(
            output_dir=output_dir or default_output_dir(),
            device=resolve_device(device),
            hierarchies=tuple(hierarchies),
            inner_multipliers=parse_multipliers(inner_multipliers),
            model_dim=model_dim,
            sparsity=sparsity,
            k=k,
            l1_coefficient=l1_coefficient,
            init_to_truth=init_to_truth,
            feature_ordering=feature_ordering,
            inner_width=inner_width,
            init_noise=init_noise,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            eval_samples=eval_samples,
            probe_k_max=probe_k_max,
            seed=seed,
            thresholds=thresholds,
        )
        run(config)

    run_or_fail(work)


if __name__ == "__main__":
    app()

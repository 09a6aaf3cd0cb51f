"""Check the absorption hunt on planted ground truth: train a toy ablator SAE that absorbs, run the
co-occurrence, selective-ablation and pair-search steps on toy samples, and score the pairs found
against the SAE's truly absorbed pairs (precision, recall, F1 over a threshold sweep)."""

from typing import Annotated

import torch
import typer

from sae_hacking.cli import DeviceOption, OutputDirOption, make_app, run_or_fail
from sae_hacking.devices import resolve_device
from sae_hacking.errors import UserInputError
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.toy.data.tree_spec import PRESETS
from sae_hacking.toy.experiments.hunt.run import HuntConfig, run

app = make_app(__doc__ or "")


def parse_numbers(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise UserInputError(flag, f"'{text}' is not a comma-separated list of numbers") from error


def parse_counts(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise UserInputError(flag, f"'{text}' is not a comma-separated list of integers") from error


@app.command()
def main(
    hierarchy: Annotated[
        str, typer.Option(help=f"preset ({', '.join(PRESETS)}) or JSON spec file")
    ] = "25x3",
    model_dim: Annotated[int, typer.Option(help="dimension of the activation space")] = 128,
    ablator_width: Annotated[
        int | None, typer.Option(help="ablator SAE latents (default: number of true features)")
    ] = None,
    ablator_k: Annotated[int, typer.Option(help="k of the ablator's top-k")] = 8,
    steps: Annotated[int, typer.Option(help="training steps per SAE")] = 3000,
    batch_size: Annotated[int, typer.Option(help="training samples per step")] = 1024,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 3e-3,
    firing_threshold: Annotated[
        float, typer.Option(help="ablator latents fire only above this (0: raw top-k SAE)")
    ] = 0.5,
    downstream: Annotated[
        str, typer.Option(help="readout (true features, then ReLU) or random (random layer, ReLU)")
    ] = "readout",
    downstream_width: Annotated[int, typer.Option(help="width of a random downstream layer")] = 256,
    downstream_offset: Annotated[
        float, typer.Option(help="subtracted before the downstream ReLU")
    ] = 0.0,
    reader: Annotated[
        str,
        typer.Option(help="readout (the reader space itself) or sae (a top-k SAE trained on it)"),
    ] = "readout",
    reader_width: Annotated[int, typer.Option(help="reader SAE latents")] = 256,
    reader_k: Annotated[int, typer.Option(help="reader SAE k")] = 16,
    samples: Annotated[
        int, typer.Option(help="toy samples (one-token prompts) counted and ablated")
    ] = 50_000,
    hunt_batch_size: Annotated[int, typer.Option(help="samples per hunt batch")] = 4096,
    abridge_ablations_to: Annotated[
        int | None, typer.Option(help="latents ablated per sample (default: ablator k)")
    ] = None,
    cosine_sim_threshold: Annotated[
        float, typer.Option(help="pairs need effect cosine at least this")
    ] = 0.45,
    cooccurrence_threshold: Annotated[
        int, typer.Option(help="pairs may co-occur at most this often")
    ] = 0,
    sweep_cosines: Annotated[
        str, typer.Option(help="cosine thresholds scored, comma-separated")
    ] = "0.2,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.7,0.8,0.9",
    sweep_cooccurrences: Annotated[
        str, typer.Option(help="co-occurrence thresholds scored, comma-separated")
    ] = "0,2,10,100",
    min_absorber_rate: Annotated[
        float, typer.Option(help="truth: a latent absorbs a parent on at least this share")
    ] = 0.2,
    eval_samples: Annotated[int, typer.Option(help="samples for the ground truth")] = 20_000,
    seed: Annotated[int, typer.Option(help="seed of data, SAEs and samples")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads (toy sizes: 1 is fastest)")] = 1,
    device: DeviceOption = "auto",
    output_dir: OutputDirOption = None,
) -> None:
    """Hunt planted absorption; write hunt.json and precision_recall.png, print the table."""

    def work() -> None:
        if threads < 1:
            raise UserInputError("--threads", f"{threads} must be at least 1")
        torch.set_num_threads(threads)
        config = HuntConfig(
            output_dir=output_dir or default_output_dir(),
            device=resolve_device(device),
            hierarchy=hierarchy,
            model_dim=model_dim,
            ablator_width=ablator_width,
            ablator_k=ablator_k,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            firing_threshold=firing_threshold,
            downstream=downstream,
            downstream_width=downstream_width,
            downstream_offset=downstream_offset,
            reader=reader,
            reader_width=reader_width,
            reader_k=reader_k,
            samples=samples,
            hunt_batch_size=hunt_batch_size,
            abridge_ablations_to=abridge_ablations_to,
            cosine_sim_threshold=cosine_sim_threshold,
            cooccurrence_threshold=cooccurrence_threshold,
            sweep_cosines=parse_numbers(sweep_cosines, "--sweep-cosines"),
            sweep_cooccurrences=parse_counts(sweep_cooccurrences, "--sweep-cooccurrences"),
            min_absorber_rate=min_absorber_rate,
            eval_samples=eval_samples,
            seed=seed,
        )
        run(config)

    run_or_fail(work)


if __name__ == "__main__":
    app()

"""Ablate each prompt's top ablator-SAE latents one at a time and record how the reader SAE's latents change.

For every prompt whose top ``--abridge-ablations-to`` ablator latents include one of
``--selected-features``, each of those latents is zeroed (the SAE's error term kept) and
clean - ablated reader activations at the last real token are summed per ablator latent. The
summed rows and ablation counts go to ``<run>/effects/``, which ``look_for_pairs.py`` reads.
"""

from pathlib import Path
from typing import Annotated

import typer

from sae_hacking.ablation.run import SelectiveAblationConfig, run
from sae_hacking.cli import DeviceOption, DtypeOption, OutputDirOption, make_app, run_or_fail
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.llm import TINY_ABLATOR_ID, TINY_MODEL, TINY_READER_ID, TINY_RELEASE, CorpusSpec

app = make_app(__doc__ or "")


def default_saes(model: str) -> tuple[str, str, str, str]:
    """Ablator and reader SAEs (release, id, release, id) when no flag names them.

    Gemma Scope's residual layer 20 ablates and its MLP-out layer 21 reads, as in the original; the
    offline tiny model gets its tiny stand-ins, so ``--model tiny`` alone runs without downloads.
    """
    if model == TINY_MODEL:
        return TINY_RELEASE, TINY_ABLATOR_ID, TINY_RELEASE, TINY_READER_ID
    return (
        "gemma-scope-2b-pt-res-canonical",
        "layer_20/width_65k/canonical",
        "gemma-scope-2b-pt-mlp-canonical",
        "layer_21/width_65k/canonical",
    )


@app.command()
def main(
    model: Annotated[
        str, typer.Option(help="transformer-lens model name, or 'tiny' (random, offline)")
    ] = "google/gemma-2-2b",
    ablator_sae_release: Annotated[
        str | None,
        typer.Option(
            help="sae-lens release, local SAE directory, or 'tiny' [default: gemma-scope-2b-pt-res-canonical; tiny for --model tiny]"
        ),
    ] = None,
    ablator_sae_id: Annotated[
        str | None,
        typer.Option(
            help=f"SAE id in the release [default: layer_20/width_65k/canonical; {TINY_ABLATOR_ID} for tiny]"
        ),
    ] = None,
    reader_sae_release: Annotated[
        str | None,
        typer.Option(
            help="sae-lens release, local SAE directory, or 'tiny' [default: gemma-scope-2b-pt-mlp-canonical; tiny for --model tiny]"
        ),
    ] = None,
    reader_sae_id: Annotated[
        str | None,
        typer.Option(
            help=f"SAE id in the release [default: layer_21/width_65k/canonical; {TINY_READER_ID} for tiny]"
        ),
    ] = None,
    dataset_id: Annotated[
        str, typer.Option(help="Hugging Face dataset, streamed")
    ] = "monology/pile-uncopyrighted",
    dataset_path: Annotated[
        list[Path] | None,
        typer.Option(help="local .txt/.jsonl/.parquet (repeatable; wins over --dataset-id)"),
    ] = None,
    text_field: Annotated[str, typer.Option(help="text column of the dataset")] = "text",
    n_prompts: Annotated[int, typer.Option(help="prompts to read (all ranks together)")] = 1,
    batch_size: Annotated[int, typer.Option(help="prompts per clean forward pass")] = 8,
    max_tokens_in_prompt: Annotated[
        int, typer.Option(help="tokens per prompt, BOS included")
    ] = 125,
    abridge_ablations_to: Annotated[
        int, typer.Option(help="K: ablate each prompt's top K latents")
    ] = 100,
    selected_features: Annotated[
        list[int] | None,
        typer.Option(
            help="ablate only prompts whose top K holds one of these (repeatable; none: every prompt)"
        ),
    ] = None,
    exclude_latent_threshold: Annotated[
        float | None,
        typer.Option(
            help="never ablate latents firing on more than this fraction of tokens (needs --cooccurrence-dir)"
        ),
    ] = None,
    cooccurrence_dir: Annotated[
        Path | None, typer.Option(help="a gemma_cooccurrences.py run, for firing frequencies")
    ] = None,
    max_batch_ablations: Annotated[
        int,
        typer.Option(
            help="ablations per batched forward (bounds memory: about rows x S x (6 d_model + 3 d_mlp) x 4 bytes)"
        ),
    ] = 512,
    save_every: Annotated[int, typer.Option(help="checkpoint every this many batches")] = 100,
    max_rows_in_memory: Annotated[
        int,
        typer.Option(
            help="flush effect rows to disk beyond this many (rows x reader width x 4 bytes)"
        ),
    ] = 16384,
    resume: Annotated[
        Path | None, typer.Option(help="continue this run directory from its last checkpoint")
    ] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "float32",
    output_dir: OutputDirOption = None,
) -> None:
    """Run (or resume) selective ablation."""

    def work() -> Path:
        defaults = default_saes(model)
        config = SelectiveAblationConfig(
            model=model,
            ablator_sae_release=ablator_sae_release or defaults[0],
            ablator_sae_id=ablator_sae_id or defaults[1],
            reader_sae_release=reader_sae_release or defaults[2],
            reader_sae_id=reader_sae_id or defaults[3],
            corpus=CorpusSpec(
                dataset_id=dataset_id,
                dataset_paths=tuple(dataset_path or ()),
                text_field=text_field,
            ),
            n_prompts=n_prompts,
            batch_size=batch_size,
            max_tokens_in_prompt=max_tokens_in_prompt,
            abridge_ablations_to=abridge_ablations_to,
            selected_features=tuple(selected_features or ()),
            exclude_latent_threshold=exclude_latent_threshold,
            cooccurrence_dir=cooccurrence_dir,
            max_batch_ablations=max_batch_ablations,
            save_every=save_every,
            max_rows_in_memory=max_rows_in_memory,
            device=device,
            dtype=dtype,
            output_dir=output_dir or default_output_dir(),
        )
        run_dir = run(config, resume=resume)
        typer.echo(f"effects written to {run_dir / 'effects'}")
        return run_dir

    run_or_fail(work)


if __name__ == "__main__":
    app()

"""Count how often each pair of an SAE's latents fires on the same token, exactly, over a corpus.

Runs the model only as far as the SAE's hook. Writes a packed int32/int64 upper triangle of pair
counts, per-latent firing counts and a bit-packed "ever co-occurred" triangle. Resumable
(--save-every, --resume) and shardable with torchrun.
"""

from pathlib import Path
from typing import Annotated

import typer

from sae_hacking.cli import DeviceOption, DtypeOption, OutputDirOption, make_app, run_or_fail
from sae_hacking.cooccurrence.run import CooccurrenceConfig, run
from sae_hacking.errors import UserInputError
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.llm.corpus import DEFAULT_DATASET_ID, CorpusSpec
from sae_hacking.llm.models import DEFAULT_MODEL

app = make_app(__doc__ or "")


def parse_rows(text: str) -> tuple[int, ...]:
    """``--rows 3,17,40`` as latent ids."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise UserInputError(
            "--rows", f"'{text}' is not a comma-separated list of latent ids"
        ) from error


@app.command()
def main(
    model: Annotated[
        str, typer.Option(help="transformer-lens model name, or tiny (offline stand-in)")
    ] = DEFAULT_MODEL,
    sae_release: Annotated[
        str | None,
        typer.Option(
            help="sae-lens release, a local sae-lens directory, or tiny [default: gemma-scope-2b-pt-res-canonical; tiny for --model tiny]"
        ),
    ] = None,
    sae_id: Annotated[
        str | None,
        typer.Option(help="SAE id in the release [default: layer_20/width_65k/canonical]"),
    ] = None,
    dataset_id: Annotated[
        str, typer.Option(help="Hugging Face dataset, streamed")
    ] = DEFAULT_DATASET_ID,
    dataset_path: Annotated[
        list[Path] | None,
        typer.Option(
            help="local .txt (a prompt per line), .jsonl or .parquet files; wins over --dataset-id"
        ),
    ] = None,
    split: Annotated[str, typer.Option(help="dataset split")] = "train",
    text_field: Annotated[str, typer.Option(help="the text column or JSON key")] = "text",
    max_tokens_in_prompt: Annotated[
        int, typer.Option(help="truncate prompts to this many tokens, BOS included")
    ] = 1024,
    batch_size: Annotated[int, typer.Option(help="prompts per forward pass")] = 8,
    max_prompts: Annotated[
        int | None, typer.Option(help="stop after this many prompts (all ranks together)")
    ] = None,
    max_tokens: Annotated[
        int,
        typer.Option(
            help="stop after about this many counted tokens; 0 for no limit (int64 counts)"
        ),
    ] = 1_000_000_000,
    rows: Annotated[
        str, typer.Option(help="count only these latents against all, e.g. 3,17,40")
    ] = "",
    count_bos: Annotated[bool, typer.Option(help="count the BOS position too")] = False,
    count_dtype: Annotated[
        str,
        typer.Option(help="auto (int32 when --max-tokens keeps counts below 2^31), int32 or int64"),
    ] = "auto",
    save_every: Annotated[
        int, typer.Option(help="checkpoint every this many batches (0: only at the end)")
    ] = 0,
    resume: Annotated[
        Path | None,
        typer.Option(help="continue the run in this directory from its checkpoint (same flags)"),
    ] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "float32",
    output_dir: OutputDirOption = None,
) -> None:
    """Count latent co-occurrences of the ablator SAE over a corpus."""

    def work() -> None:
        config = CooccurrenceConfig(
            model=model,
            sae_release=sae_release,
            sae_id=sae_id,
            corpus=CorpusSpec(
                dataset_id=dataset_id,
                dataset_paths=tuple(dataset_path or ()),
                split=split,
                text_field=text_field,
            ),
            max_tokens_in_prompt=max_tokens_in_prompt,
            batch_size=batch_size,
            max_prompts=max_prompts,
            max_tokens=max_tokens,
            rows=parse_rows(rows),
            count_bos=count_bos,
            count_dtype=count_dtype,
            save_every=save_every,
            resume=resume,
            device=device,
            dtype=dtype,
            output_dir=output_dir or default_output_dir(),
        )
        run_dir = run(config)
        typer.echo(str(run_dir))

    run_or_fail(work)


if __name__ == "__main__":
    app()

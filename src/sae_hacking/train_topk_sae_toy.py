"""Train top-k or hierarchical top-k SAEs on parents with two perturbed children; score them.

Runs as ``uv run src/sae_hacking/train_topk_sae_toy.py`` or as the ``train-topk-sae-toy`` command.
Every multi-word flag is accepted with dashes or underscores (``--perturbation-size`` or
``--perturbation_size``, see ``cli.dashed_flags``), so the original toolkit's command runs as written.
"""

from pathlib import Path
from typing import Annotated

import typer

from sae_hacking.cli import make_app, run_or_fail
from sae_hacking.devices import command_line
from sae_hacking.io.rundir import default_output_dir
from sae_hacking.toy.experiments.training.config import ToyTrainConfig
from sae_hacking.toy.experiments.training.run import run

app = make_app(__doc__.splitlines()[0] if __doc__ else "")


def flag(name: str, help_text: str, *more: str) -> typer.models.OptionInfo:
    return typer.Option(f"--{name}", *more, help=help_text)


@app.command()
def main(
    lr: Annotated[float, flag("lr", "peak Adam learning rate")] = 1e-3,
    sae_hidden_dim: Annotated[
        int | None,
        flag("sae-hidden-dim", "latents (parent latents if --hierarchical) [default: 2A, or A]"),
    ] = None,
    dataset_num_features: Annotated[
        int, flag("dataset-num-features", "true parents A (each has two children)")
    ] = 30,
    dataset_k: Annotated[int, flag("dataset-k", "parents active in every sample")] = 3,
    k: Annotated[int | None, flag("k", "latents kept by top-k [default: --dataset-k]")] = None,
    aux_k: Annotated[int, flag("aux-k", "dead latents used by the AuxK loss (0: off)")] = 0,
    batch_size: Annotated[int, flag("batch-size", "samples per step")] = 4096,
    steps: Annotated[
        int | None, flag("steps", "training steps [default: from --num-samples]", "--max-step")
    ] = None,
    num_samples: Annotated[
        int | None, flag("num-samples", "training samples [default: 8,192,000]")
    ] = None,
    hierarchical: Annotated[
        bool, flag("hierarchical", "train the parent-with-two-children SAE")
    ] = False,
    child_warmup_samples: Annotated[
        int | None,
        flag(
            "child-warmup-samples",
            "with --hierarchical: samples that train the parents alone [default: a quarter of the run]",
        ),
    ] = None,
    perturbation_size: Annotated[
        float, flag("perturbation-size", "norm of each child's offset from its parent")
    ] = 0.4,
    model_dim: Annotated[int, flag("model-dim", "dimension M of the activations")] = 50,
    device: Annotated[str, flag("device", "auto, cpu, cuda or cuda:N")] = "auto",
    cuda: Annotated[bool, flag("cuda", "the original's spelling of --device cuda")] = False,
    seed: Annotated[int, flag("seed", "seed of the data, the SAE and the batches")] = 0,
    init_to_truth: Annotated[
        bool, flag("init-to-truth", "start the SAE at the true features")
    ] = False,
    init_noise: Annotated[
        float, flag("init-noise", "with --init-to-truth: noise relative to each row's norm")
    ] = 0.0,
    warmup_steps: Annotated[
        int | None, flag("warmup-steps", "linear warm-up [default: min(100, steps/10)]")
    ] = None,
    decay: Annotated[str, flag("decay", "constant, linear, cosine or plateau")] = "cosine",
    final_lr_fraction: Annotated[
        float, flag("final-lr-fraction", "linear/cosine decay ends at this fraction of --lr")
    ] = 0.1,
    plateau_patience: Annotated[
        int, flag("plateau-patience", "evaluations without progress before halving the rate")
    ] = 3,
    grad_clip: Annotated[float, flag("grad-clip", "gradient norm clip (0: off)")] = 1.0,
    log_every: Annotated[
        int | None, flag("log-every", "steps between evaluations [default: steps/40]")
    ] = None,
    checkpoint_every: Annotated[
        int | None, flag("checkpoint-every", "steps between checkpoints [default: steps/4]")
    ] = None,
    eval_batch_size: Annotated[
        int, flag("eval-batch-size", "held-out samples for each evaluation")
    ] = 8192,
    threads: Annotated[int, flag("threads", "torch CPU threads (one is fastest here)")] = 1,
    output_dir: Annotated[
        Path | None,
        flag("output-dir", "where run directories go [default: $SAE_HACKING_RESULTS or ./results]"),
    ] = None,
) -> None:
    """Train a (hierarchical) top-k SAE on the perturbed-children data and score it."""

    def work() -> Path:
        config = ToyTrainConfig(
            output_dir=default_output_dir() if output_dir is None else output_dir,
            lr=lr,
            sae_hidden_dim=sae_hidden_dim,
            dataset_num_features=dataset_num_features,
            dataset_k=dataset_k,
            k=k,
            aux_k=aux_k,
            batch_size=batch_size,
            steps=steps,
            num_samples=num_samples,
            hierarchical=hierarchical,
            child_warmup_samples=child_warmup_samples,
            perturbation_size=perturbation_size,
            model_dim=model_dim,
            device="cuda" if cuda else device,
            device_flag="--cuda" if cuda else "--device",
            seed=seed,
            init_to_truth=init_to_truth,
            init_noise=init_noise,
            warmup_steps=warmup_steps,
            decay=decay,
            final_lr_fraction=final_lr_fraction,
            plateau_patience=plateau_patience,
            grad_clip=grad_clip,
            log_every=log_every,
            checkpoint_every=checkpoint_every,
            eval_batch_size=eval_batch_size,
            threads=threads,
        )
        return run(config, command_line()).run_dir

    run_dir = run_or_fail(work)
    typer.echo(f"results in {run_dir}")


if __name__ == "__main__":
    app()

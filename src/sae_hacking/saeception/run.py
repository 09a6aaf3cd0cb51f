"""The whole SAE-ception tool: check inputs, make (or resume) the run directory, run every unit."""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sae_hacking.config import ConfigError, flag_of, read_saved_options, resumed
from sae_hacking.devices import command_line, free_memory_bytes, resolve_device
from sae_hacking.io.atomic import atomic_write_json, atomic_write_text
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config
from sae_hacking.memory import check_fits
from sae_hacking.saeception.classifiers import ClassifierFactory, check_hook, last_block_hook
from sae_hacking.saeception.config import MLP, SaeCeptionConfig
from sae_hacking.saeception.cycles import Unit, UnitContext, plan, run_unit
from sae_hacking.saeception.data import LabelledSource, load_source, split_for_seed
from sae_hacking.saeception.summary import markdown_tables, read_rows, summarise

RUN_PREFIX = "sae_ception"


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    tables: str
    units_run: int


def resolve_config(config: SaeCeptionConfig) -> SaeCeptionConfig:
    """With ``--resume``: the saved options, overruled only by resumable ones given now."""
    if config.resume is None:
        return config
    if not config.resume.is_dir():
        raise ConfigError("resume", f"'{config.resume}' is not a run directory")
    return resumed(config, read_saved_options(config.resume))


def classifier_factory(
    config: SaeCeptionConfig, source: LabelledSource, device: torch.device
) -> tuple[ClassifierFactory, dict[str, Any]]:
    """How to build the run's classifiers, with the model loaded and the hook checked."""
    classes = len(source.class_names)
    if config.resolved_model == MLP:
        splits = source.splits
        first = splits if not isinstance(splits, tuple) else splits[0]
        assert isinstance(first.examples, torch.Tensor)
        layer = int(config.layer or 2)
        factory = ClassifierFactory(
            MLP, classes, device, inputs=first.examples.shape[1], layer=layer
        )
        return factory, {"model": MLP, "layer": layer, "class_names": list(source.class_names)}
    from sae_hacking.llm.models import load_model, model_config

    cfg = model_config(config.resolved_model)
    hook = config.layer or last_block_hook(cfg.n_layers)
    check_hook(cfg, hook, config.resolved_model)
    model = load_model(config.resolved_model, device)
    factory = ClassifierFactory(
        "language",
        classes,
        device,
        model=model,
        hook=hook,
        max_tokens=config.max_tokens,
        trained_blocks=config.trained_blocks,
    )
    manifest = {
        "model": config.resolved_model,
        "layer": hook,
        "trained_blocks": config.trained_blocks,
        "class_names": list(source.class_names),
    }
    return factory, manifest


def run(config: SaeCeptionConfig, argv: list[str] | None = None) -> RunResult:
    """Run (or continue) every cycle of every seed; write the summary and its tables."""
    from threadpoolctl import threadpool_limits

    config = resolve_config(config)
    # scikit-learn's probes and k-means use BLAS and OpenMP threads too: measured 3.5x slower with
    # two BLAS threads than one on a busy 2-core machine.
    with threadpool_limits(config.threads):
        return run_resolved(config, argv)


def run_resolved(config: SaeCeptionConfig, argv: list[str] | None) -> RunResult:
    device = resolve_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(config.threads)
    # Everything that can refuse the input runs before the run directory exists.
    source = load_source(config)
    first_data = split_for_seed(source, config, config.seeds[0])
    factory, manifest = classifier_factory(config, source, device)
    needed, costliest = config.sae_memory_estimate(factory.hidden_dim)
    check_fits(needed, flag_of(costliest), "an SAE of these sizes", free_memory_bytes(device))
    if config.resume is not None:
        run_dir = config.resume
    else:
        run_dir = make_run_dir(config.output_dir or default_output_dir(), RUN_PREFIX)
        write_config(run_dir, config, argv if argv is not None else command_line())
    units = plan(config)
    todo = [u for u in units if not u.finished(run_dir)]
    console = Console(stderr=True)
    epochs = {u: config.fit_epochs if u.cycle == 0 else config.later_epochs for u in todo}
    started = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("sae-ception", total=sum(epochs.values()))
        data_by_seed = {config.seeds[0]: first_data}
        for unit in todo:
            if unit.seed not in data_by_seed:
                data_by_seed[unit.seed] = split_for_seed(source, config, unit.seed)
            ctx = UnitContext(config, data_by_seed[unit.seed], factory, device, run_dir, manifest)
            progress.update(
                task, description=f"seed {unit.seed} cycle {unit.cycle} {unit.strategy}"
            )
            run_unit(ctx, unit, lambda: progress.advance(task))
    summary = write_summary(run_dir, units, time.perf_counter() - started, len(todo))
    return RunResult(run_dir, summary, markdown_tables(summary), len(todo))


def write_summary(
    run_dir: Path, units: list[Unit], seconds: float, units_run: int
) -> dict[str, Any]:
    """summary.json (rows of every unit, spreads, paired differences) and summary.md."""
    rows = read_rows([u.directory(run_dir) for u in units])
    summary = {"rows": rows, **summarise(rows), "seconds_this_invocation": round(seconds, 2)}
    summary["units_run_this_invocation"] = units_run
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_text(run_dir / "summary.md", markdown_tables(summary) + "\n")
    return summary

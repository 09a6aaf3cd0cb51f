"""Where a toy run's evaluations go: metrics.jsonl, TensorBoard, a rich progress bar, checkpoints.

Resuming a run: ``latest_checkpoint`` finds the last checkpoint with trainer state, and
``records_up_to`` cuts metrics.jsonl back to the evaluations made before it.
"""

import json
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from sae_hacking.io.atomic import append_jsonl, atomic_write_text
from sae_hacking.toy.protocol import ToySAE
from sae_hacking.toy.training.checkpoint import save_checkpoint
from sae_hacking.toy.training.loop import LogPoint, TrainerState

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PREFIX = "step-"
# The planned time is shown once training has run this long (earlier rates include warm-up).
PLAN_AFTER_SECONDS = 2.0


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_PREFIX}{step:08d}"


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The manifest of the last complete step checkpoint (its manifest is written last)."""
    manifests = sorted((run_dir / CHECKPOINT_DIR).glob(f"{CHECKPOINT_PREFIX}*.json"))
    return manifests[-1] if manifests else None


def records_up_to(run_dir: Path, step: int) -> list[dict[str, Any]]:
    """The evaluations up to ``step``, with metrics.jsonl rewritten to hold only them.

    A torn last line (a kill during an append) is dropped with the later records.
    """
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record["step"] > step:
            break
        records.append(record)
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return records


def readable_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class RunLog:
    """A ``TrainObserver`` that records every evaluation, shows progress and writes checkpoints.

    ``records`` and ``resumed_at`` continue a resumed run: its earlier evaluations and the step
    the trainer starts from (TensorBoard drops the events the first run logged after it).
    """

    def __init__(
        self,
        run_dir: Path,
        total_steps: int,
        batch_size: int,
        manifest: dict[str, Any],
        records: list[dict[str, Any]] | None = None,
        resumed_at: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.manifest = manifest
        self.records = list(records or [])
        start_step = resumed_at or 0
        self.first_step = start_step
        self.start_seconds: float | None = None
        self.planned = False
        # Resumed from scratch, every earlier event goes; else those after the checkpoint.
        purge = None if resumed_at is None else (resumed_at + 1 if resumed_at else 0)
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4g}  L0 {task.fields[l0]:.2f}"),
            TextColumn("MMCS {task.fields[mmcs]:.3f}  MCC {task.fields[mcc]:.3f}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            refresh_per_second=4,
        )
        self.task = self.progress.add_task(
            "train",
            total=total_steps,
            completed=start_step,
            loss=float("nan"),
            l0=0.0,
            mmcs=0.0,
            mcc=0.0,
        )

    def __enter__(self) -> "RunLog":
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()
        self.writer.close()

    def on_log(self, point: LogPoint, sae: ToySAE) -> None:
        record = point.record()
        self.records.append(record)
        append_jsonl(self.run_dir / METRICS_FILE, record)
        for key, value in record.items():
            if key not in ("step", "samples"):
                self.writer.add_scalar(key, value, point.step)
        scalars = point.evaluation.scalars
        self.progress.update(
            self.task,
            completed=point.step,
            loss=point.train_loss,
            l0=scalars["l0"],
            mmcs=scalars["mmcs"],
            mcc=scalars["mcc"],
        )

    def on_progress(self, step: int, train_seconds: float) -> None:
        self.progress.update(self.task, completed=step)
        if self.start_seconds is None:
            # The first stop after the start: seconds before it were spent elsewhere.
            self.start_seconds = train_seconds
            self.first_step = step
            return
        ran = train_seconds - self.start_seconds
        if self.planned or ran < PLAN_AFTER_SECONDS or step >= self.total_steps:
            return
        self.planned = True
        steps_per_second = (step - self.first_step) / ran
        left = (self.total_steps - step) / steps_per_second
        self.progress.console.print(
            f"planned: {self.total_steps:,} steps of {self.batch_size:,} samples; at "
            f"{steps_per_second * self.batch_size:,.0f} samples/s about {readable_seconds(left)} "
            "to go",
            highlight=False,
            soft_wrap=True,
        )

    def on_checkpoint(self, state: TrainerState, sae: ToySAE) -> None:
        extra = {**self.manifest, "step": state.step, "samples": state.step * self.batch_size}
        self.save(sae, checkpoint_name(state.step), extra, state)

    def save_final(self, point: LogPoint, sae: ToySAE) -> Path:
        extra = {
            **self.manifest,
            "step": point.step,
            "samples": point.samples,
            "metrics": point.record(),
        }
        return self.save(sae, "final", extra)

    def save(
        self, sae: ToySAE, name: str, extra: dict[str, Any], state: TrainerState | None = None
    ) -> Path:
        if not isinstance(sae, nn.Module):
            raise TypeError("only nn.Module SAEs can be checkpointed")
        return save_checkpoint(self.run_dir / CHECKPOINT_DIR, name, sae, extra, state)

"""Where a toy run's evaluations go: metrics.jsonl, TensorBoard, a rich progress bar, checkpoints."""

from pathlib import Path
from types import TracebackType
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from sae_hacking.io.atomic import append_jsonl
from sae_hacking.toy.protocol import ToySAE
from sae_hacking.toy.training.checkpoint import save_checkpoint
from sae_hacking.toy.training.loop import LogPoint

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


class RunLog:
    """A ``TrainObserver`` that records every evaluation and checkpoints every ``save_every`` steps."""

    def __init__(
        self, run_dir: Path, total_steps: int, save_every: int, manifest: dict[str, Any]
    ) -> None:
        self.run_dir = run_dir
        self.total_steps = total_steps
        self.save_every = save_every
        self.manifest = manifest
        self.records: list[dict[str, float]] = []
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4g}  L0 {task.fields[l0]:.2f}"),
            TextColumn("MMCS {task.fields[mmcs]:.3f}  MCC {task.fields[mcc]:.3f}"),
            TimeElapsedColumn(),
            refresh_per_second=4,
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, loss=float("nan"), l0=0.0, mmcs=0.0, mcc=0.0
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
        # The last step's weights are saved as "final" by the run itself.
        if 0 < point.step < self.total_steps and point.step % self.save_every == 0:
            self.save(point, sae, checkpoint_name(point.step))

    def save(self, point: LogPoint, sae: ToySAE, name: str) -> Path:
        if not isinstance(sae, nn.Module):
            raise TypeError("only nn.Module SAEs can be checkpointed")
        extra = {
            **self.manifest,
            "step": point.step,
            "samples": point.samples,
            "metrics": point.record(),
        }
        return save_checkpoint(self.run_dir / CHECKPOINT_DIR, name, sae, extra)

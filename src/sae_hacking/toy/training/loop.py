"""The toy training loop: any ToySAE on any FeatureSource, with no host sync between evaluations.

Data is drawn on the SAE's device by the source, the loss is accumulated on the device, and the
host reads numbers only every ``log_every`` steps, when the SAE is evaluated against the truth.
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.toy.metrics.evaluation import Evaluation, evaluate
from sae_hacking.toy.protocol import AfterStep, FeatureSource, ToySAE
from sae_hacking.toy.training.schedule import LearningRate, Schedule


@dataclass(frozen=True)
class TrainSettings:
    """How long and how to train; ``grad_clip`` <= 0 turns clipping off."""

    steps: int
    batch_size: int
    lr: float
    schedule: Schedule = field(default_factory=Schedule)
    grad_clip: float = 0.0
    log_every: int = 100
    adam_betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class LogPoint:
    """What the trainer reports at each evaluation (step 0 included)."""

    step: int
    samples: int
    lr: float
    train_loss: float
    evaluation: Evaluation

    def record(self) -> dict[str, float]:
        return {
            "step": float(self.step),
            "samples": float(self.samples),
            "lr": self.lr,
            "train_loss": self.train_loss,
            **self.evaluation.scalars,
        }


@runtime_checkable
class TrainObserver(Protocol):
    """Receives every evaluation as it happens (logging, progress, checkpoints)."""

    def on_log(self, point: LogPoint, sae: ToySAE) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """The final evaluation, the history of evaluations and the loop's throughput.

    ``train_seconds`` counts only the training steps (evaluations excluded).
    """

    final: LogPoint
    history: list[LogPoint]
    train_seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.final.samples / max(self.train_seconds, 1e-9)


def make_optimizer(params: list[nn.Parameter], settings: TrainSettings) -> torch.optim.Adam:
    """Adam with one fused kernel for all parameters where torch has one for the device."""
    device = params[0].device
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(params, lr=settings.lr, betas=settings.adam_betas, fused=fused)


def block_ends(steps: int, log_every: int) -> Iterator[int]:
    """The steps after which the trainer evaluates: every ``log_every`` and the last."""
    yield from range(log_every, steps, log_every)
    yield steps


def train(
    sae: ToySAE,
    source: FeatureSource,
    settings: TrainSettings,
    generator: torch.Generator,
    eval_x_BM: Float[Tensor, "B M"],
    observer: TrainObserver | None = None,
) -> TrainResult:
    """Train ``sae`` with Adam on batches from ``source``; evaluate every ``log_every`` steps."""
    if not isinstance(sae, nn.Module):
        raise TypeError("a ToySAE must be an nn.Module to be trained")
    params = [p for p in sae.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, settings)
    rate = LearningRate(settings.lr, settings.steps, settings.schedule)
    fix_weights = sae.after_step if isinstance(sae, AfterStep) else None
    device = params[0].device
    history: list[LogPoint] = []

    def log(step: int, loss_sum: Tensor, block: int) -> LogPoint:
        evaluation = evaluate(sae, source, eval_x_BM)
        train_loss = loss_sum.item() / block if block else evaluation.scalars["mse"]
        point = LogPoint(
            step, step * settings.batch_size, rate.at(max(step - 1, 0)), train_loss, evaluation
        )
        rate.observe(evaluation.scalars["mse"])
        history.append(point)
        if observer is not None:
            observer.on_log(point, sae)
        return point

    log(0, torch.zeros((), device=device), 0)
    train_seconds = 0.0
    start = 0
    sae.train()
    for end in block_ends(settings.steps, settings.log_every):
        loss_sum = torch.zeros((), device=device)
        started = time.perf_counter()
        for step in range(start, end):
            for group in optimizer.param_groups:
                group["lr"] = rate.at(step)
            x_BM, _ = source.sample(settings.batch_size, generator)
            loss = sae.loss(x_BM).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, settings.grad_clip, foreach=True)
            optimizer.step()
            if fix_weights is not None:
                fix_weights()
            loss_sum += loss.detach()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - started
        log(end, loss_sum, end - start)
        start = end
    return TrainResult(history[-1], history, train_seconds)

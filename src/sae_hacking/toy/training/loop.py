"""The toy training loop: any ToySAE on any FeatureSource, with no host sync between evaluations.

Data is drawn on the SAE's device by the source, the loss is accumulated on the device, and the
host reads numbers only every ``log_every`` steps, when the SAE is evaluated against the truth.

The fast path (``TrainSettings.compile`` and ``cuda_graphs``) computes the same steps: the loss
through ``torch.compile`` (fused kernels), and on CUDA each whole step (sampling, loss, backward,
clipping, Adam, the weight fix) replayed as one captured CUDA graph. At batch 1024 a step is a few
dozen small kernels, so launch overhead, not arithmetic, bounds the plain loop on a GPU (see
benchmarks/gpu_toy_training.py).

Exact resume: at every ``checkpoint_every`` steps the observer receives a ``TrainerState`` (Adam's
moments, the schedule, the batch generator, the loss summed since the last evaluation); ``train``
given that state and the SAE's saved tensors continues exactly as the uninterrupted run would.
"""

import heapq
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor, nn

from sae_hacking.toy.metrics.evaluation import Evaluation, evaluate
from sae_hacking.toy.protocol import AfterStep, FeatureSource, ToySAE
from sae_hacking.toy.training.schedule import LearningRate, Schedule


@dataclass(frozen=True)
class TrainSettings:
    """How long and how to train; ``grad_clip`` <= 0 turns clipping off.

    ``compile`` runs the SAE's loss through ``torch.compile``; ``cuda_graphs`` (ignored off CUDA)
    captures one whole step as a CUDA graph after ``GRAPH_WARMUP_STEPS`` eager steps and replays it.
    ``checkpoint_every`` and ``progress_every`` (0: never) are the steps between the observer's
    ``on_checkpoint`` and ``on_progress`` calls; each costs one host sync, no evaluation.
    """

    steps: int
    batch_size: int
    lr: float
    schedule: Schedule = field(default_factory=Schedule)
    grad_clip: float = 0.0
    log_every: int = 100
    adam_betas: tuple[float, float] = (0.9, 0.999)
    compile: bool = False
    cuda_graphs: bool = False
    checkpoint_every: int = 0
    progress_every: int = 0


# Eager steps before capture, as torch's CUDA-graph recipe does (on a side stream): they create
# Adam's state, the autograd streams and the compiled kernels, none of which capture may allocate.
GRAPH_WARMUP_STEPS = 3


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
class TrainerState:
    """What an exact resume needs besides the SAE's own tensors (its buffers included).

    Its tensors are the trainer's own, not copies: save them before training goes on.
    """

    step: int
    optimizer_state: dict[int, dict[str, Tensor]]
    rate: dict[str, float]
    generator_state: Tensor
    # The training loss summed since the evaluation at step ``last_log``.
    loss_sum: Tensor
    last_log: int
    train_seconds: float


@runtime_checkable
class CheckpointObserver(Protocol):
    """Receives the trainer's state every ``checkpoint_every`` steps (the last step excluded)."""

    def on_checkpoint(self, state: TrainerState, sae: ToySAE) -> None: ...


@runtime_checkable
class ProgressObserver(Protocol):
    """Hears how far training is every ``progress_every`` steps and at every other stop."""

    def on_progress(self, step: int, train_seconds: float) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """The final evaluation, the history of evaluations and the loop's throughput.

    ``train_seconds`` counts only the training steps (evaluations excluded); after a resume,
    ``history`` holds the evaluations since the resume and ``train_seconds`` the whole run's.
    """

    final: LogPoint
    history: list[LogPoint]
    train_seconds: float

    @property
    def samples_per_second(self) -> float:
        return self.final.samples / max(self.train_seconds, 1e-9)


def make_optimizer(params: list[nn.Parameter], settings: TrainSettings) -> torch.optim.Adam:
    """Adam with one fused kernel for all parameters where torch has one for the device.

    Replayed in a CUDA graph, Adam must be capturable and read its learning rate from a device
    tensor (a float would be baked into the graph, freezing the schedule).
    """
    device = params[0].device
    fused = device.type in ("cuda", "cpu")
    if uses_cuda_graphs(settings, device):
        lr = torch.tensor(settings.lr, device=device)
        return torch.optim.Adam(
            params, lr=lr, betas=settings.adam_betas, fused=True, capturable=True
        )
    return torch.optim.Adam(params, lr=settings.lr, betas=settings.adam_betas, fused=fused)


def uses_cuda_graphs(settings: TrainSettings, device: torch.device) -> bool:
    return settings.cuda_graphs and device.type == "cuda"


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate; a tensor rate is filled in place (no host sync)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def make_step(
    sae: ToySAE,
    source: FeatureSource,
    settings: TrainSettings,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer,
    loss_sum: Tensor,
) -> Callable[[], None]:
    """One training step that adds its loss into ``loss_sum``; nothing in it reads the device."""
    assert isinstance(sae, nn.Module)
    params = [p for p in sae.parameters() if p.requires_grad]
    fix_weights = sae.after_step if isinstance(sae, AfterStep) else None

    def total_loss(x_BM: Tensor) -> Tensor:
        return sae.loss(x_BM).total

    loss_of = torch.compile(total_loss) if settings.compile else total_loss

    def step() -> None:
        x_BM, _ = source.sample(settings.batch_size, generator)
        loss = loss_of(x_BM)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, settings.grad_clip, foreach=True)
        optimizer.step()
        if fix_weights is not None:
            fix_weights()
        loss_sum.add_(loss.detach())

    return step


class GraphedStep:
    """Runs ``step`` eagerly ``GRAPH_WARMUP_STEPS`` times on a side stream, then captures it once
    and replays the graph for every later step.

    The sampling generator is registered with the graph, so each replay draws fresh data from
    where the generator stands, exactly the numbers eager steps would draw.
    """

    def __init__(self, step: Callable[[], None], generator: torch.Generator) -> None:
        self.step = step
        self.generator = generator
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif self.eager_steps < GRAPH_WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream().wait_stream(side)
            self.eager_steps += 1
        else:
            graph = torch.cuda.CUDAGraph()
            graph.register_generator_state(self.generator)
            with torch.cuda.graph(graph):
                self.step()
            self.graph = graph
            graph.replay()  # capture records the step without running it


def block_ends(steps: int, *periods: int, start: int = 0) -> Iterator[int]:
    """The steps after ``start`` at which the trainer stops: each period's multiples, and the last.

    Periods of 0 are left out; ends come in order, each once, lazily (a period may be 1).
    """
    previous = start
    multiples = [range(p * (start // p + 1), steps, p) for p in periods if p > 0]
    for end in heapq.merge(*multiples):
        if end != previous:
            yield end
            previous = end
    if previous != steps:
        yield steps


def trainer_state(
    step: int,
    optimizer: torch.optim.Optimizer,
    rate: LearningRate,
    generator: torch.Generator,
    loss_sum: Tensor,
    last_log: int,
    train_seconds: float,
) -> TrainerState:
    """The state after ``step`` steps, for a checkpoint."""
    state: dict[Any, Any] = optimizer.state_dict()["state"]
    return TrainerState(
        step, state, rate.state_dict(), generator.get_state(), loss_sum, last_log, train_seconds
    )


def restore_trainer_state(
    state: TrainerState,
    optimizer: torch.optim.Optimizer,
    rate: LearningRate,
    generator: torch.Generator,
    loss_sum: Tensor,
) -> None:
    """Put a checkpoint's state back into a freshly made optimizer, schedule and generator."""
    # The groups (learning rate, betas) are the fresh optimizer's own: the same settings built them.
    groups = optimizer.state_dict()["param_groups"]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # Moments take their parameter's memory layout (a transposed encoder is column-major): the
    # fused kernels give other bits when the layouts differ.
    moments = {
        index: {
            key: torch.empty_like(params[index]).copy_(value)
            if value.shape == params[index].shape
            else value
            for key, value in saved.items()
        }
        for index, saved in state.optimizer_state.items()
    }
    optimizer.load_state_dict({"state": moments, "param_groups": groups})
    rate.load_state_dict(state.rate)
    generator.set_state(state.generator_state)
    loss_sum.copy_(state.loss_sum)


def train(
    sae: ToySAE,
    source: FeatureSource,
    settings: TrainSettings,
    generator: torch.Generator,
    eval_x_BM: Float[Tensor, "B M"],
    observer: TrainObserver | None = None,
    resume: TrainerState | None = None,
    evaluator: Callable[[ToySAE, FeatureSource, Tensor], Evaluation] = evaluate,
) -> TrainResult:
    """Train ``sae`` with Adam on batches from ``source``; evaluate every ``log_every`` steps.

    With ``resume`` (and ``sae`` holding the tensors saved with it) training continues from the
    state's step, exactly as the run that saved it went on. ``evaluator`` replaces the default
    evaluation where its Hungarian matching is too costly (thousands of true features).
    """
    if not isinstance(sae, nn.Module):
        raise TypeError("a ToySAE must be an nn.Module to be trained")
    params = [p for p in sae.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, settings)
    rate = LearningRate(settings.lr, settings.steps, settings.schedule)
    device = params[0].device
    # One buffer for the whole run: a captured graph adds into the same memory at every replay.
    loss_sum = torch.zeros((), device=device)
    run_step = make_step(sae, source, settings, generator, optimizer, loss_sum)
    if uses_cuda_graphs(settings, device):
        run_step = GraphedStep(run_step, generator)
    history: list[LogPoint] = []

    def log(step: int, loss_sum: Tensor, block: int) -> LogPoint:
        evaluation = evaluator(sae, source, eval_x_BM)
        train_loss = loss_sum.item() / block if block else evaluation.scalars["mse"]
        point = LogPoint(
            step, step * settings.batch_size, rate.at(max(step - 1, 0)), train_loss, evaluation
        )
        rate.observe(evaluation.scalars["mse"])
        history.append(point)
        if observer is not None:
            observer.on_log(point, sae)
        return point

    if resume is None:
        log(0, loss_sum, 0)
        start, last_log, train_seconds = 0, 0, 0.0
    else:
        restore_trainer_state(resume, optimizer, rate, generator, loss_sum)
        start, last_log, train_seconds = resume.step, resume.last_log, resume.train_seconds
    sae.train()
    periods = (settings.log_every, settings.checkpoint_every, settings.progress_every)
    for end in block_ends(settings.steps, *periods, start=start):
        started = time.perf_counter()
        for index in range(start, end):
            set_lr(optimizer, rate.at(index))
            run_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - started
        if isinstance(observer, ProgressObserver):
            observer.on_progress(end, train_seconds)
        if end % settings.log_every == 0 or end == settings.steps:
            log(end, loss_sum, end - last_log)
            loss_sum.zero_()
            last_log = end
        every = settings.checkpoint_every
        checkpoint = every and end % every == 0 and end < settings.steps
        if checkpoint and isinstance(observer, CheckpointObserver):
            state = trainer_state(
                end, optimizer, rate, generator, loss_sum, last_log, train_seconds
            )
            observer.on_checkpoint(state, sae)
        start = end
    return TrainResult(history[-1], history, train_seconds)

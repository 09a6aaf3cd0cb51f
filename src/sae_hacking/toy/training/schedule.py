"""Learning-rate schedules: linear warm-up, then constant, linear or cosine decay, or plateau cuts."""

import math
from dataclasses import dataclass
from typing import Literal

Decay = Literal["constant", "linear", "cosine", "plateau"]
DECAYS: tuple[Decay, ...] = ("constant", "linear", "cosine", "plateau")


@dataclass(frozen=True)
class Schedule:
    """Warm-up length, the decay after it, and the plateau rule (used only by ``plateau``).

    ``final_fraction`` is where linear and cosine decay end, as a fraction of the peak rate.
    ``plateau`` multiplies the rate by ``plateau_factor`` after ``plateau_patience`` evaluations
    without a new best loss.
    """

    warmup_steps: int = 0
    decay: Decay = "constant"
    final_fraction: float = 0.1
    plateau_patience: int = 3
    plateau_factor: float = 0.5


def scheduled_fraction(step: int, total_steps: int, schedule: Schedule) -> float:
    """The learning rate at ``step`` (0-based) as a fraction of the peak, before plateau cuts."""
    if step < schedule.warmup_steps:
        return (step + 1) / schedule.warmup_steps
    if schedule.decay in ("constant", "plateau"):
        return 1.0
    span = max(total_steps - schedule.warmup_steps, 1)
    progress = min((step - schedule.warmup_steps) / span, 1.0)
    final = schedule.final_fraction
    if schedule.decay == "linear":
        return 1.0 - (1.0 - final) * progress
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LearningRate:
    """The rate for every step; plateau cuts come from losses reported at evaluations."""

    def __init__(self, peak: float, total_steps: int, schedule: Schedule) -> None:
        self.peak = peak
        self.total_steps = total_steps
        self.schedule = schedule
        self.plateau_scale = 1.0
        self._best = math.inf
        self._evaluations_since_best = 0

    def at(self, step: int) -> float:
        return (
            self.peak
            * self.plateau_scale
            * scheduled_fraction(step, self.total_steps, self.schedule)
        )

    def state_dict(self) -> dict[str, float]:
        """The plateau rule's memory, for an exact resume (the rest comes from the settings)."""
        return {
            "plateau_scale": self.plateau_scale,
            # JSON has no infinity: no best loss yet is written as -1 (losses are never negative).
            "best": -1.0 if math.isinf(self._best) else self._best,
            "evaluations_since_best": float(self._evaluations_since_best),
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.plateau_scale = state["plateau_scale"]
        self._best = math.inf if state["best"] < 0 else state["best"]
        self._evaluations_since_best = int(state["evaluations_since_best"])

    def observe(self, loss: float) -> None:
        """Report an evaluation loss; under ``plateau`` a long enough stall cuts the rate."""
        if self.schedule.decay != "plateau":
            return
        if loss < self._best * (1 - 1e-4):
            self._best = loss
            self._evaluations_since_best = 0
            return
        self._evaluations_since_best += 1
        if self._evaluations_since_best >= self.schedule.plateau_patience:
            self.plateau_scale *= self.schedule.plateau_factor
            self._evaluations_since_best = 0

import pytest

from sae_hacking.toy.training.schedule import LearningRate, Schedule, scheduled_fraction


def test_warmup_rises_linearly_to_the_peak() -> None:
    schedule = Schedule(warmup_steps=4)
    assert [scheduled_fraction(s, 100, schedule) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_decay_starts_at_the_peak_and_ends_at_the_final_fraction(decay: str) -> None:
    schedule = Schedule(warmup_steps=10, decay=decay, final_fraction=0.2)  # type: ignore[arg-type]
    assert scheduled_fraction(10, 110, schedule) == pytest.approx(1.0)
    assert scheduled_fraction(110, 110, schedule) == pytest.approx(0.2)
    middle = scheduled_fraction(60, 110, schedule)
    assert middle == pytest.approx(0.6)


def test_plateau_halves_the_rate_after_patience_evaluations_without_progress() -> None:
    rate = LearningRate(1.0, 100, Schedule(decay="plateau", plateau_patience=2))
    for loss in [1.0, 0.5, 0.5, 0.6]:
        rate.observe(loss)
    assert rate.at(50) == 0.5
    rate.observe(0.1)
    assert rate.at(50) == 0.5


def test_non_plateau_schedules_ignore_losses() -> None:
    rate = LearningRate(1.0, 100, Schedule(decay="constant", plateau_patience=1))
    for loss in [1.0, 2.0, 3.0]:
        rate.observe(loss)
    assert rate.at(50) == 1.0

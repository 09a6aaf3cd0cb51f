"""Exact resume of the toy trainer: checkpoints at every interval, state out and back in."""

from pathlib import Path

import pytest
import torch
from torch import nn

from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.protocol import ToySAE
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.checkpoint import load_checkpoint, load_trainer_state, save_checkpoint
from sae_hacking.toy.training.loop import LogPoint, TrainerState, TrainSettings, block_ends, train
from sae_hacking.toy.training.schedule import LearningRate, Schedule


def test_block_ends_merge_every_period_after_the_start() -> None:
    assert list(block_ends(10, 4)) == [4, 8, 10]
    assert list(block_ends(200, 30, 50)) == [30, 50, 60, 90, 100, 120, 150, 180, 200]
    assert list(block_ends(12, 4, 6, 0)) == [4, 6, 8, 12]
    assert list(block_ends(200, 30, 50, start=100)) == [120, 150, 180, 200]
    assert list(block_ends(10, 5, start=10)) == []
    # Lazy: a period of one over a long run costs nothing up front.
    assert next(iter(block_ends(10**12, 1))) == 1


class Stop(Exception):
    """Raised by the observer to cut a run short, as a kill would."""


class Observer:
    """Records evaluations and checkpoints (saved to disk at once, as a run does)."""

    def __init__(self, directory: Path, stop_after: int | None = None) -> None:
        self.directory = directory
        self.stop_after = stop_after
        self.points: list[LogPoint] = []
        self.checkpoints: list[int] = []

    def on_log(self, point: LogPoint, sae: ToySAE) -> None:
        self.points.append(point)
        if self.stop_after is not None and point.step >= self.stop_after:
            raise Stop

    def on_checkpoint(self, state: TrainerState, sae: ToySAE) -> None:
        assert isinstance(sae, nn.Module)
        save_checkpoint(self.directory, f"step-{state.step:08d}", sae, {}, state)
        self.checkpoints.append(state.step)


def make_sae(hierarchical: bool) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    if hierarchical:
        shape = HierarchicalShape(
            model_dim=12, num_parents=6, k=2, aux_k=2, child_warmup_samples=16 * 25
        )
        return HierarchicalTopKSAE(shape, generator)
    return TopKSAE(TopKShape(model_dim=12, width=12, k=2, aux_k=3), generator)


SETTINGS = TrainSettings(
    steps=90,
    batch_size=16,
    lr=3e-2,
    # Plateau cuts depend on every earlier evaluation: the schedule's state must travel.
    schedule=Schedule(warmup_steps=5, decay="plateau", plateau_patience=1),
    grad_clip=0.5,
    # Checkpoints fall between evaluations, so the loss summed since one must travel too.
    log_every=7,
    checkpoint_every=20,
)


def run(sae: nn.Module, observer: Observer, resume: TrainerState | None = None) -> list[LogPoint]:
    source = PerturbedChildren.random(6, 12, 0.4, 2, torch.Generator().manual_seed(0))
    eval_x_BM, _ = source.sample(64, torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    train(sae, source, SETTINGS, generator, eval_x_BM, observer, resume=resume)  # pyright: ignore[reportArgumentType]
    return observer.points


@pytest.mark.parametrize("hierarchical", [False, True], ids=["topk", "hierarchical"])
def test_a_resumed_run_equals_the_uninterrupted_run_bit_for_bit(
    hierarchical: bool, tmp_path: Path
) -> None:
    whole = make_sae(hierarchical)
    whole_points = run(whole, Observer(tmp_path / "whole"))

    # Stopped after the evaluation at step 49: the last checkpoint is step 40.
    cut = Observer(tmp_path / "cut", stop_after=49)
    with pytest.raises(Stop):
        run(make_sae(hierarchical), cut)
    assert cut.checkpoints == [20, 40]
    last = tmp_path / "cut" / "step-00000040.safetensors"
    resumed = load_checkpoint(last).sae
    resumed.train()
    resumed_points = run(resumed, Observer(tmp_path / "resumed"), load_trainer_state(last))

    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    # The evaluations from the checkpoint on are the same numbers, learning rate and loss included.
    later = [p.record() for p in whole_points if p.step > 40]
    assert [p.record() for p in resumed_points] == later


def test_checkpoints_come_at_every_interval_not_only_on_evaluations(tmp_path: Path) -> None:
    observer = Observer(tmp_path)
    run(make_sae(False), observer)
    assert observer.checkpoints == [20, 40, 60, 80]
    assert [p.step for p in observer.points] == [0, *range(7, 90, 7), 90]


def test_trainer_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    sae = make_sae(False)
    params = [p for p in sae.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    sum(p.square().sum() for p in params).backward()  # pyright: ignore[reportAttributeAccessIssue]
    optimizer.step()
    rate = LearningRate(1e-2, 100, Schedule(decay="plateau", plateau_patience=2))
    for loss in (1.0, 0.5, 0.6):
        rate.observe(loss)
    generator = torch.Generator().manual_seed(7)
    torch.rand(3, generator=generator)
    raw_state = optimizer.state_dict()["state"]
    state = TrainerState(
        12, raw_state, rate.state_dict(), generator.get_state(), torch.tensor(2.5), 7, 1.25
    )
    path = save_checkpoint(tmp_path, "step-00000012", sae, {"step": 12}, state)
    loaded = load_trainer_state(path)
    assert (loaded.step, loaded.last_log, loaded.train_seconds) == (12, 7, 1.25)
    assert loaded.rate == rate.state_dict()
    assert torch.equal(loaded.generator_state, generator.get_state())
    assert torch.equal(loaded.loss_sum, torch.tensor(2.5))
    for index, moments in raw_state.items():
        for key, value in moments.items():
            assert torch.equal(loaded.optimizer_state[index][key], value)
    # The SAE still loads on its own: the trainer's tensors are set aside.
    assert load_checkpoint(path).manifest["step"] == 12

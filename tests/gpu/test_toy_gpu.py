"""Toy training, the hedging lab and the toy hunt on CUDA, against the same work on the CPU."""

import json
from pathlib import Path
from typing import Any

import jaxtyping
import pytest
import torch
from jaxtyping import Float
from torch import Tensor, nn
from typer.testing import CliRunner

from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import (
    GRAPH_WARMUP_STEPS,
    GraphedStep,
    TrainSettings,
    make_optimizer,
    make_step,
    set_lr,
    train,
)
from sae_hacking.toy.training.schedule import Schedule
from sae_hacking.toy_absorption_hunt import app as hunt_app
from sae_hacking.toy_hedging_absorption import app as hedging_app
from sae_hacking.train_topk_sae_toy import app as train_app
from tests.gpu.conftest import no_host_sync, only_dir, sides

pytestmark = pytest.mark.gpu


class DrawnOnCpu:
    """A source whose batches are drawn on the CPU and moved: identical data on every device."""

    def __init__(self, source: PerturbedChildren, device: torch.device) -> None:
        self.source = source
        self.device = device

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self.source.features_NM.to(self.device)

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        x_BM, magnitudes_BN = self.source.sample(batch_size, generator)
        return x_BM.to(self.device), magnitudes_BN.to(self.device)


def make_sae(hierarchical: bool, device: torch.device) -> nn.Module:
    generator = torch.Generator().manual_seed(1)
    if hierarchical:
        shape = HierarchicalShape(model_dim=50, num_parents=30, k=3, child_warmup_samples=8192)
        return HierarchicalTopKSAE(shape, generator).to(device)
    return TopKSAE(TopKShape(model_dim=50, width=60, k=3, aux_k=8), generator).to(device)


def settings(**fast: Any) -> TrainSettings:
    return TrainSettings(
        steps=30,
        batch_size=1024,
        lr=1e-3,
        schedule=Schedule(warmup_steps=5, decay="cosine"),
        grad_clip=1.0,
        log_every=10,
        **fast,
    )


def weights(sae: nn.Module) -> dict[str, Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in sae.state_dict().items()}


@pytest.mark.parametrize("hierarchical", [False, True])
def test_toy_saes_train_to_the_same_weights_on_cuda_as_on_cpu(
    cuda: torch.device, hierarchical: bool
) -> None:
    def trained(device: torch.device) -> dict[str, Tensor]:
        data = PerturbedChildren.random(30, 50, 0.4, 3, torch.Generator().manual_seed(0))
        source = DrawnOnCpu(data, device)
        eval_x_BM, _ = source.sample(2048, torch.Generator().manual_seed(2))
        sae = make_sae(hierarchical, device)
        train(sae, source, settings(), torch.Generator().manual_seed(3), eval_x_BM)  # pyright: ignore[reportArgumentType]
        return weights(sae)

    on_cpu, on_cuda = trained(torch.device("cpu")), trained(cuda)
    for name, tensor in on_cpu.items():
        # float32 on both (no TF32); summation order differs, carried through 30 Adam steps.
        torch.testing.assert_close(on_cuda[name], tensor, rtol=1e-3, atol=1e-4, msg=name)


# Dynamo breaks the graph at each of pytest's jaxtyping wrappers and, resuming, touches .grad.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize(
    "fast",
    [{"cuda_graphs": True}, {"compile": True, "cuda_graphs": True}],
    ids=["graphs", "compile+graphs"],
)
@pytest.mark.parametrize("hierarchical", [False, True])
def test_fast_path_trains_the_same_weights_as_the_plain_loop(
    cuda: torch.device, hierarchical: bool, fast: dict[str, bool]
) -> None:
    """Data drawn on the device from the same generator: the graph replays draw the same numbers."""

    def trained(**options: bool) -> dict[str, Tensor]:
        torch._dynamo.reset()
        # Dynamo traces into the shape checks the tests wrap around every function, and on CUDA
        # tensors beartype's traced check disagrees with its own eager one; users run unwrapped.
        jaxtyping.config.update("jaxtyping_disable", bool(options.get("compile")))
        data = PerturbedChildren.random(30, 50, 0.4, 3, torch.Generator(cuda).manual_seed(0))
        eval_x_BM, _ = data.sample(2048, torch.Generator(cuda).manual_seed(2))
        sae = make_sae(hierarchical, cuda)
        train(sae, data, settings(**options), torch.Generator(cuda).manual_seed(3), eval_x_BM)  # pyright: ignore[reportArgumentType]
        return weights(sae)

    try:
        plain, faster = trained(), trained(**fast)
    finally:
        jaxtyping.config.update("jaxtyping_disable", False)
    # Graphs alone run the same kernels (Adam reads its rate from a tensor: last-bit changes);
    # compiled kernels also sum in another order.
    rtol, atol = (1e-3, 1e-4) if fast.get("compile") else (1e-4, 1e-5)
    for name, tensor in plain.items():
        torch.testing.assert_close(faster[name], tensor, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("graphed", [False, True])
def test_training_steps_never_wait_for_the_host(cuda: torch.device, graphed: bool) -> None:
    data = PerturbedChildren.random(30, 50, 0.4, 3, torch.Generator(cuda).manual_seed(0))
    sae = make_sae(True, cuda)
    params = [p for p in sae.parameters() if p.requires_grad]
    train_settings = settings(cuda_graphs=graphed)
    optimizer = make_optimizer(params, train_settings)
    loss_sum = torch.zeros((), device=cuda)
    generator = torch.Generator(cuda).manual_seed(3)
    step = make_step(sae, data, train_settings, generator, optimizer, loss_sum)  # pyright: ignore[reportArgumentType]
    if graphed and cuda.type == "cuda":
        step = GraphedStep(step, generator)
    for _ in range(GRAPH_WARMUP_STEPS + 1):  # warm-up and capture may wait; the steps may not
        step()
    with no_host_sync(cuda):
        for index in range(10):
            set_lr(optimizer, 1e-3 * (1 - index / 20))
            step()
    assert float(loss_sum) > 0


def summary_of(output_dir: Path) -> dict[str, Any]:
    return json.loads((only_dir(output_dir) / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("hierarchical", [False, True])
def test_train_script_on_cuda_reaches_the_cpu_runs_scores(
    cuda: torch.device, tmp_path: Path, hierarchical: bool
) -> None:
    """Data are drawn on the training device, so the streams differ: scores agree, not weights."""
    finals = {}
    for side, device in sides(cuda):
        flags = ["--device", str(device), "--num-samples", "2048000", "--batch-size", "2048"]
        flags += ["--output-dir", str(tmp_path / side), "--seed", "0"]
        flags += ["--hierarchical"] if hierarchical else []
        result = CliRunner().invoke(train_app, flags)
        assert result.exit_code == 0, result.output
        summary = summary_of(tmp_path / side)
        assert summary["device"].startswith(device.type)
        finals[side] = summary["final"]
    for metric in ("mmcs", "mcc"):
        assert abs(finals["gpu"][metric] - finals["cpu"][metric]) <= 0.08, (metric, finals)
    assert finals["gpu"]["fvu"] <= 2 * finals["cpu"]["fvu"] + 0.02, finals


def test_hedging_lab_on_cuda_matches_the_cpu_run(cuda: torch.device, tmp_path: Path) -> None:
    rows = {}
    for side, device in sides(cuda):
        flags = ["--hierarchy", "notebook", "--inner-multipliers", "0.25", "--steps", "300"]
        flags += ["--batch-size", "2048", "--eval-samples", "4000", "--device", str(device)]
        result = CliRunner().invoke(hedging_app, [*flags, "--output-dir", str(tmp_path / side)])
        assert result.exit_code == 0, result.output
        metrics = json.loads((only_dir(tmp_path / side) / "metrics.json").read_text())
        rows[side] = metrics["rows"]
    assert [r["variant"] for r in rows["cpu"]] == [r["variant"] for r in rows["gpu"]]
    for cpu_row, cuda_row in zip(rows["cpu"], rows["gpu"], strict=True):
        for key, value in cpu_row.items():
            if isinstance(value, float) and key in ("absorption_fraction", "fvu"):
                # Started at the truth, data drawn on each device: the scores move by noise.
                assert abs(cuda_row[key] - value) <= 0.05, (cpu_row["variant"], key)


def test_toy_hunt_on_cuda_finds_what_the_cpu_run_finds(cuda: torch.device, tmp_path: Path) -> None:
    scores = {}
    for side, device in sides(cuda):
        flags = ["--hierarchy", "25x3", "--steps", "1500", "--samples", "20000"]
        flags += ["--eval-samples", "10000", "--device", str(device)]
        result = CliRunner().invoke(hunt_app, [*flags, "--output-dir", str(tmp_path / side)])
        assert result.exit_code == 0, result.output
        hunt = json.loads((only_dir(tmp_path / side) / "hunt.json").read_text())
        scores[side] = hunt["at_default"]
    assert scores["cpu"].keys() == scores["gpu"].keys()
    for method in scores["cpu"]:
        for key in ("precision", "recall"):
            on_gpu, on_cpu = scores["gpu"][method][key], scores["cpu"][method][key]
            if on_gpu is None or on_cpu is None:  # nothing predicted: undefined precision
                assert on_gpu is on_cpu, (method, key, scores)
            else:
                assert abs(on_gpu - on_cpu) <= 0.15, (method, key, scores)

"""The fast training path (torch.compile, CUDA graphs) against the plain loop, on CPU.

The CUDA-graph half runs in tests/gpu/test_toy_training_gpu.py.
"""

import pytest
import torch
from torch import Tensor, nn

from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainSettings, train
from sae_hacking.toy.training.schedule import Schedule


def trained_weights(
    hierarchical: bool, compile: bool = False, cuda_graphs: bool = False
) -> dict[str, Tensor]:
    """A short run on the original's data (30 parents, 50 dims), warm-up, decay and clipping on."""
    source = PerturbedChildren.random(30, 50, 0.4, 3, torch.Generator().manual_seed(0))
    sae: nn.Module
    if hierarchical:
        shape = HierarchicalShape(model_dim=50, num_parents=30, k=3, child_warmup_samples=2048)
        sae = HierarchicalTopKSAE(shape, torch.Generator().manual_seed(1))
    else:
        sae = TopKSAE(
            TopKShape(model_dim=50, width=60, k=3, aux_k=8), torch.Generator().manual_seed(1)
        )
    eval_x_BM, _ = source.sample(256, torch.Generator().manual_seed(2))
    settings = TrainSettings(
        steps=12,
        batch_size=256,
        lr=1e-3,
        schedule=Schedule(warmup_steps=3, decay="cosine"),
        grad_clip=1.0,
        log_every=6,
        compile=compile,
        cuda_graphs=cuda_graphs,
    )
    train(sae, source, settings, torch.Generator().manual_seed(3), eval_x_BM)  # pyright: ignore[reportArgumentType]
    return {name: tensor.detach().clone() for name, tensor in sae.state_dict().items()}


@pytest.mark.parametrize("hierarchical", [False, True])
def test_cuda_graphs_flag_off_cuda_trains_exactly_as_the_plain_loop(hierarchical: bool) -> None:
    plain = trained_weights(hierarchical)
    flagged = trained_weights(hierarchical, cuda_graphs=True)
    for name, tensor in plain.items():
        assert torch.equal(flagged[name], tensor), name


# Inductor compiles C++ for the CPU: tens of seconds per SAE on a busy 2-core machine.
@pytest.mark.slow
# Under pytest every sae_hacking function is wrapped in jaxtyping's shape checks; dynamo breaks
# the graph at each wrapper and, resuming, touches tensors' .grad, which warns.
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
@pytest.mark.parametrize("hierarchical", [False, True])
def test_compiled_loss_trains_the_same_weights_as_the_plain_loop(hierarchical: bool) -> None:
    torch._dynamo.reset()
    plain = trained_weights(hierarchical)
    compiled = trained_weights(hierarchical, compile=True)
    for name, tensor in plain.items():
        # Fused kernels sum in another order: float32 rounding, carried through 12 Adam steps.
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-4, atol=1e-5, msg=name)

from pathlib import Path

import pytest
import torch
from torch import nn

from sae_hacking.toy.saes.hierarchical import HierarchicalShape, HierarchicalTopKSAE
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.checkpoint import load_checkpoint, save_checkpoint


def perturbed(sae: nn.Module) -> nn.Module:
    with torch.no_grad():
        for parameter in sae.parameters():
            parameter.add_(torch.randn_like(parameter))
    return sae


@pytest.mark.parametrize(
    "sae",
    [
        TopKSAE(TopKShape(model_dim=6, width=10, k=3, aux_k=2), torch.Generator().manual_seed(0)),
        HierarchicalTopKSAE(HierarchicalShape(model_dim=6, num_parents=4, k=2), torch.Generator()),
    ],
    ids=["topk", "hierarchical"],
)
def test_checkpoint_round_trip_restores_weights_and_outputs(sae: nn.Module, tmp_path: Path) -> None:
    sae = perturbed(sae)
    path = save_checkpoint(tmp_path, "step-00000007", sae, {"step": 7})
    loaded = load_checkpoint(path)
    assert loaded.manifest["step"] == 7
    for key, value in sae.state_dict().items():
        assert torch.equal(loaded.sae.state_dict()[key], value)
    x_BM = torch.randn(5, 6)
    torch.testing.assert_close(loaded.sae.reconstruct(x_BM), sae.reconstruct(x_BM))  # pyright: ignore[reportCallIssue]
    assert load_checkpoint(tmp_path / "step-00000007.json").manifest == loaded.manifest
    assert load_checkpoint(tmp_path / "step-00000007").manifest == loaded.manifest

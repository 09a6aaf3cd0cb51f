"""The fixed-shape sampler: no data-dependent shape or host read per batch, overflow counted, and
sae-lens's distribution on a hierarchy mixing exclusive and free children without correlation.

Its distribution on the SynthSAEBench-shaped model is checked with the exact sampler's, in
``test_synthetic_source.py``.
"""

import dataclasses
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.data.synthetic_fixed import FixedShapeSource
from tests.toy.synthetic_fixtures import tiny_config, tiny_model

# Ops whose output size depends on the data, or that read a device value on the host.
SYNCING_OPS = {
    "aten::nonzero",
    "aten::_local_scalar_dense",
    "aten::masked_select",
    "aten::bincount",
    "aten::unique",
    "aten::_unique2",
    "aten::repeat_interleave",
}


class OpRecorder(TorchDispatchMode):
    """Records every aten op run, and whether any indexed with a boolean mask."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()
        self.boolean_index = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        self.ops.add(name)
        if name.startswith("aten::index"):
            indices = args[1] if len(args) > 1 else []
            flat = indices if isinstance(indices, (list, tuple)) else [indices]
            self.boolean_index |= any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in flat
            )
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def source() -> FixedShapeSource:
    torch.manual_seed(0)
    return FixedShapeSource(tiny_model(), torch.device("cpu"))


def test_a_batch_has_fixed_shapes_and_no_data_dependent_op(source: FixedShapeSource) -> None:
    recorder = OpRecorder()
    with recorder:
        first = source.sample_slots(256, torch.Generator().manual_seed(1))
    second = source.sample_slots(256, torch.Generator().manual_seed(2))
    assert not recorder.ops & SYNCING_OPS, recorder.ops & SYNCING_OPS
    assert not recorder.boolean_index
    assert any("embedding_bag" in op for op in recorder.ops)  # the ops were seen
    for a, b in zip(dataclasses.astuple(first), dataclasses.astuple(second), strict=True):
        assert a.shape == b.shape
    assert not torch.equal(first.values_BO, second.values_BO)
    # Two tree levels below the root: loose slots, 2 root slots, 2 per level (exclusive).
    assert first.features_BO.shape == (256, source.free_cap + 2 + 2 * 3)


def test_loose_features_beyond_the_cap_are_dropped_and_counted() -> None:
    torch.manual_seed(0)
    source = FixedShapeSource(tiny_model(), torch.device("cpu"), free_cap=2)
    batch = source.sample_slots(512, torch.Generator().manual_seed(3))
    counts = source.overflow()
    kept = int((batch.values_BO[:, :2] > 0).sum())
    assert counts["dropped"] > 0
    assert counts["dropped"] + kept == counts["fired"]
    # The slots still decode to the activations.
    expected_BM = batch.dense(source.num_features) @ source.W_NM + source.bias_M
    torch.testing.assert_close(batch.x_BM, expected_BM, atol=1e-4, rtol=1e-4)


SAMPLES = 20_000


def test_mixed_exclusive_hierarchy_without_correlation_matches_sae_lens() -> None:
    """Half the parents' children are exclusive, half free; features fire independently."""
    from sae_lens.synthetic import SyntheticModel

    config = tiny_config()
    assert config.hierarchy is not None
    mixed = dataclasses.replace(
        config,
        hierarchy=dataclasses.replace(config.hierarchy, mutually_exclusive_portion=0.5),
        correlation=None,
    )
    torch.manual_seed(0)
    model = SyntheticModel(mixed)
    _, lens_BN = model.sample_with_features(SAMPLES)
    lens_N = (lens_BN > 0).double().mean(0)
    sources: list[Any] = [SyntheticSource(model, torch.device("cpu"))]
    sources.append(FixedShapeSource(model, torch.device("cpu")))
    assert sources[1].factor_NU is None
    assert False in sources[1].exclusive_levels  # the one-slot-per-child path runs
    for source in sources:
        fast_BN = source.sample_sparse(SAMPLES, torch.Generator().manual_seed(4)).dense(256)
        fast_N = (fast_BN > 0).double().mean(0)
        pooled = (fast_N + lens_N) / 2
        error_N = (2 * pooled * (1 - pooled) / SAMPLES).sqrt().clamp_min(1 / SAMPLES)
        z_N = (fast_N - lens_N).abs() / error_N
        assert z_N.max() < 6.0, f"{type(source).__name__}: feature {int(z_N.argmax())}"
        hierarchy = source.hierarchy
        fired_BN = fast_BN > 0
        child_C = (hierarchy.parent_of_N >= 0).nonzero().squeeze(1)
        assert not bool((fired_BN[:, child_C] & ~fired_BN[:, hierarchy.parent_of_N[child_C]]).any())
        kids_GD = hierarchy.children_GD
        together_G = ((fired_BN[:, kids_GD.clamp_min(0)] & (kids_GD >= 0)).sum(2) > 1).any(0)
        assert not bool(together_G[hierarchy.exclusive_G].any())
        assert bool(together_G[~hierarchy.exclusive_G].any())  # free siblings do fire together


COMPILE_PROGRAM = """
import torch
import torch._inductor.config as inductor_config
from sae_hacking.toy.data.synthetic_fixed import FixedShapeSource
from tests.toy.synthetic_fixtures import tiny_model
torch.set_num_threads(1)
torch.manual_seed(0)
source = FixedShapeSource(tiny_model(), torch.device("cpu"))
compiled = torch.compile(source.sample_slots, fullgraph=True)
with inductor_config.patch(fallback_random=True):
    torch.manual_seed(5)
    batch = compiled(128, None)
torch.manual_seed(5)
eager = source.sample_slots(128, None)
torch.testing.assert_close(batch.x_BM, eager.x_BM, atol=1e-4, rtol=1e-4)
assert torch.equal(batch.features_BO, eager.features_BO)
print("compiled as one graph")
"""


@pytest.mark.slow
def test_sampling_compiles_as_one_graph() -> None:
    """``torch.compile(fullgraph=True)`` refuses any graph break, such as a host read.

    In a fresh interpreter: under pytest the shape-checking import hook wraps every function in
    checks dynamo cannot trace.
    """
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_PROGRAM], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled as one graph" in result.stdout

"""SynthSAEBench's metrics here equal sae-lens's ``eval_sae_on_synthetic_data`` on the same SAE and
samples; absorption against the hierarchy separates a planted absorbing SAE from a faithful one."""

from pathlib import Path
from typing import Any

import pytest
import torch

from sae_hacking.toy.data.synthetic import SyntheticSource
from sae_hacking.toy.experiments.synthetic.run import synth_bench_scores
from sae_hacking.toy.metrics.hierarchy_absorption import HierarchyAbsorption
from sae_hacking.toy.saes.batchtopk import BatchTopKSAE, BatchTopKShape
from sae_hacking.toy.saes.export import export_sae
from sae_hacking.toy.training.loop import TrainSettings, train
from tests.toy.synthetic_fixtures import tiny_model

SAMPLES, BATCH = 6000, 2000


class Replay:
    """Stands in for sae-lens's ActivationGenerator: hands back recorded batches in order."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches = batches

    def sample(self, batch_size: int) -> torch.Tensor:
        batch = self.batches.pop(0)
        assert batch.shape[0] == batch_size
        return batch


@pytest.fixture(scope="module")
def model_and_source() -> tuple[Any, SyntheticSource]:
    torch.manual_seed(0)
    model = tiny_model()
    return model, SyntheticSource(model, torch.device("cpu"))


@pytest.mark.parametrize("selection", ["batch", "sample"])
def test_metrics_equal_sae_lens_eval_on_the_same_sae_and_samples(
    model_and_source, selection: str, tmp_path: Path
) -> None:
    from sae_lens import SAE
    from sae_lens.synthetic import eval_sae_on_synthetic_data

    model, source = model_and_source
    shape = BatchTopKShape(32, 64, 4.0 if selection == "batch" else 4, selection=selection)  # pyright: ignore[reportArgumentType]
    sae = BatchTopKSAE(shape, torch.Generator().manual_seed(0))
    settings = TrainSettings(steps=150, batch_size=256, lr=3e-3, log_every=150)
    eval_x_BM = source.sample_sparse(512, torch.Generator().manual_seed(9)).x_BM
    train(sae, source, settings, torch.Generator().manual_seed(1), eval_x_BM)
    ours, _, _ = synth_bench_scores(sae, source, SAMPLES, BATCH, torch.Generator().manual_seed(5))

    replayed = torch.Generator().manual_seed(5)
    batches = [source.sample_sparse(BATCH, replayed).dense(256) for _ in range(SAMPLES // BATCH)]
    export_sae(sae, tmp_path / "sae")
    theirs = eval_sae_on_synthetic_data(
        SAE.load_from_disk(tmp_path / "sae"),
        model.feature_dict,
        Replay(batches),  # pyright: ignore[reportArgumentType]
        num_samples=SAMPLES,
        batch_size=BATCH,
    )
    expected = {**theirs.to_dict(), **theirs.to_dict()["classification"]}
    for name, value in ours.record().items():
        assert value == pytest.approx(expected[name], abs=2e-5), name
    assert 0.2 < ours.mcc < 1 and ours.f1_score > 0.05 and ours.dead_latents < 64


def planted(source: SyntheticSource, absorb: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes of an SAE whose latent n is feature n, optionally with every parent absorbed.

    The absorbing SAE silences a parent's latent wherever one of its children fires and lets the
    child's latent carry the parent's direction (its decoder row is child + parent).
    """
    hierarchy = source.hierarchy
    decoder_NM = source.W_NM.clone()
    if absorb:
        child_C = (hierarchy.parent_of_N >= 0).nonzero().squeeze(1)
        decoder_NM[child_C] += source.W_NM[hierarchy.parent_of_N[child_C]]
    return decoder_NM, hierarchy.parent_of_N


def planted_codes(truth_BN: torch.Tensor, parent_N: torch.Tensor, absorb: bool) -> torch.Tensor:
    acts_BN = truth_BN.clone()
    if absorb:
        child_C = (parent_N >= 0).nonzero().squeeze(1)
        has_child_BN = torch.zeros_like(truth_BN, dtype=torch.int32)
        has_child_BN.index_add_(1, parent_N[child_C], (truth_BN[:, child_C] > 0).int())
        acts_BN[has_child_BN > 0] = 0
    return acts_BN


@pytest.mark.parametrize("absorb", [False, True])
def test_absorption_gap_and_absorbers_find_a_planted_absorbing_sae(
    model_and_source, absorb: bool
) -> None:
    _, source = model_and_source
    decoder_NM, parent_N = planted(source, absorb)
    latent_N = torch.arange(source.num_features)
    scorer = HierarchyAbsorption(decoder_NM, source.W_NM, parent_N, latent_N)
    batch = source.sample_sparse(4000, torch.Generator().manual_seed(2))
    truth_BN = batch.dense(source.num_features)
    scorer.add(batch.x_BM, planted_codes(truth_BN, parent_N, absorb), truth_BN)
    summary = scorer.summary()
    absorbers = scorer.absorbers(min_rate=0.5)
    if absorb:
        assert summary["absorption_gap"] == pytest.approx(1.0)
        assert summary["absorption_fraction"] > 0.5
        assert absorbers and all(a.latent == a.child and a.is_child_latent for a in absorbers)
        assert len(absorbers) >= 0.5 * int((parent_N >= 0).sum())
    else:
        assert summary["absorption_gap"] == pytest.approx(0.0)
        # Not 0: in superposition other active features project on the parent direction.
        assert summary["absorption_fraction"] < 0.1
        assert absorbers == []

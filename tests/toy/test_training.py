import torch
from jaxtyping import Float
from torch import Tensor

from sae_hacking.core.similarity import unit_rows
from sae_hacking.toy.protocol import FeatureSource
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import LogPoint, TrainSettings, block_ends, train
from sae_hacking.toy.training.schedule import Schedule


class IndependentFeatures:
    """An easy source: nearly orthogonal unit features, exactly two active per sample."""

    def __init__(
        self, num_features: int, model_dim: int, generator: torch.Generator, active: int = 2
    ) -> None:
        self.active = active
        self._features_NM = unit_rows(torch.randn(num_features, model_dim, generator=generator))

    @property
    def features_NM(self) -> Float[Tensor, "N M"]:
        return self._features_NM

    def sample(
        self, batch_size: int, generator: torch.Generator
    ) -> tuple[Float[Tensor, "B M"], Float[Tensor, "B N"]]:
        noise_BN = torch.rand(batch_size, self._features_NM.shape[0], generator=generator)
        idx_BK = noise_BN.topk(self.active, dim=-1).indices
        magnitudes_BN = torch.zeros_like(noise_BN).scatter_(1, idx_BK, 1.0)
        return magnitudes_BN @ self._features_NM, magnitudes_BN


class Recorder:
    def __init__(self) -> None:
        self.points: list[LogPoint] = []

    def on_log(self, point: LogPoint, sae: object) -> None:
        self.points.append(point)


def test_short_seeded_run_recovers_independent_features() -> None:
    source = IndependentFeatures(12, 24, torch.Generator().manual_seed(0))
    assert isinstance(source, FeatureSource)
    sae = TopKSAE(TopKShape(model_dim=24, width=24, k=2), torch.Generator().manual_seed(1))
    eval_x_BM, _ = source.sample(1024, torch.Generator().manual_seed(2))
    settings = TrainSettings(
        steps=300,
        batch_size=512,
        lr=1e-2,
        schedule=Schedule(warmup_steps=20, decay="cosine"),
        grad_clip=1.0,
        log_every=100,
    )
    recorder = Recorder()
    result = train(sae, source, settings, torch.Generator().manual_seed(3), eval_x_BM, recorder)
    assert result.final.evaluation.scalars["mcc"] >= 0.95
    assert [point.step for point in recorder.points] == [0, 100, 200, 300]
    assert recorder.points[-1].samples == 300 * 512
    assert result.history[-1].train_loss < result.history[0].train_loss


def test_same_seeds_give_identical_weights() -> None:
    def trained() -> Tensor:
        source = IndependentFeatures(8, 16, torch.Generator().manual_seed(0))
        sae = TopKSAE(TopKShape(model_dim=16, width=8, k=2), torch.Generator().manual_seed(1))
        eval_x_BM, _ = source.sample(64, torch.Generator().manual_seed(2))
        settings = TrainSettings(steps=20, batch_size=32, lr=1e-2, log_every=10)
        train(sae, source, settings, torch.Generator().manual_seed(3), eval_x_BM)
        return sae.W_dec_EM.detach().clone()

    assert torch.equal(trained(), trained())


def test_evaluations_fall_every_log_every_steps_and_at_the_end() -> None:
    assert list(block_ends(10, 4)) == [4, 8, 10]
    assert list(block_ends(8, 4)) == [4, 8]
    assert list(block_ends(3, 5)) == [3]

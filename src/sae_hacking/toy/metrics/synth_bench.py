"""SynthSAEBench's metrics, computed as sae-lens's ``eval_sae_on_synthetic_data`` computes them.

Over a stream of batches (activations, the SAE's code and reconstruction, the true magnitudes):
- true and SAE L0 (entries != 0 per sample), dead latents (never != 0);
- shrinkage: mean ||reconstruction|| / ||x|| over samples with ||x|| > 1e-6;
- explained variance: 1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2), sums in float64 on the CPU;
- MCC: Hungarian matching of decoder rows to true features on cost 1 - |cos|, the mean |cos| of the
  matched pairs (over min(E, N) pairs, unlike the toy lab's MCC, which averages over features);
- uniqueness: distinct best-matching features (by |cos| of each decoder row) over the width;
- each latent as a classifier of its best-matching feature: precision, recall, F1 (0 where
  undefined) and accuracy, averaged over latents.
``tests/toy/test_synth_bench.py`` holds these equal to sae-lens's on the same SAE and samples.
"""

from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from sae_hacking.core.similarity import cosine_matrix


@dataclass(frozen=True)
class Matching:
    """The MCC's one-to-one matching: ``latent_D[i]`` decodes ``feature_D[i]`` at ``cos_D[i]``."""

    latent_D: Int[Tensor, " D"]
    feature_D: Int[Tensor, " D"]
    cos_D: Float[Tensor, " D"]

    @property
    def mcc(self) -> float:
        return self.cos_D.abs().mean().item()

    def latent_of(self, num_features: int) -> Int[Tensor, " N"]:
        """Each feature's matched latent (-1 where unmatched)."""
        latent_N = torch.full((num_features,), -1, dtype=torch.long)
        latent_N[self.feature_D] = self.latent_D
        return latent_N


def hungarian_matching(
    decoder_EM: Float[Tensor, "E M"], features_NM: Float[Tensor, "N M"]
) -> Matching:
    """sae-lens's MCC matching: minimise the summed ``1 - |cos|`` of decoder rows and features."""
    cos_EN = cosine_matrix(decoder_EM.detach().float(), features_NM.detach().float()).cpu()
    rows, cols = linear_sum_assignment(1 - cos_EN.abs().numpy())
    latent_D = torch.as_tensor(rows, dtype=torch.long)
    feature_D = torch.as_tensor(cols, dtype=torch.long)
    return Matching(latent_D, feature_D, cos_EN[latent_D, feature_D])


@dataclass(frozen=True)
class SynthBenchResult:
    """SynthSAEBench's numbers (the names of sae-lens's ``SyntheticDataEvalResult``)."""

    true_l0: float
    sae_l0: float
    dead_latents: int
    shrinkage: float
    explained_variance: float
    mcc: float
    uniqueness: float
    precision: float
    recall: float
    f1_score: float
    accuracy: float

    def record(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}


class SynthBenchAccumulator:
    """Streams batches into SynthSAEBench's metrics; ``result`` closes the stream."""

    def __init__(self, decoder_EM: Float[Tensor, "E M"], features_NM: Float[Tensor, "N M"]) -> None:
        cos_EN = cosine_matrix(decoder_EM.detach().float(), features_NM.detach().float())
        self.decoder_EM = decoder_EM.detach()
        self.features_NM = features_NM.detach()
        self.best_feature_E = cos_EN.abs().argmax(dim=1)
        width = decoder_EM.shape[0]
        device = decoder_EM.device
        self.counts_4E = torch.zeros(4, width, dtype=torch.float64, device=device)
        self.fired_E = torch.zeros(width, dtype=torch.bool, device=device)
        self.sum_x_M = torch.zeros(decoder_EM.shape[1], dtype=torch.float64)
        self.true_active = 0.0
        self.sae_active = 0.0
        self.samples = 0
        self.shrinkage_sum = 0.0
        self.shrinkage_samples = 0
        self.squared_norm = 0.0
        self.squared_residual = 0.0

    @torch.no_grad()
    def add(
        self,
        x_BM: Float[Tensor, "B M"],
        recon_BM: Float[Tensor, "B M"],
        acts_BE: Float[Tensor, "B E"],
        truth_BN: Float[Tensor, "B N"],
    ) -> None:
        self.samples += x_BM.shape[0]
        self.true_active += truth_BN.ne(0).float().sum().item()
        sae_fires_BE = acts_BE.ne(0)
        self.sae_active += sae_fires_BE.float().sum().item()
        self.fired_E |= sae_fires_BE.any(dim=0)
        norms_B = x_BM.norm(dim=-1)
        valid_B = norms_B > 1e-6
        ratio_B = recon_BM.norm(dim=-1) / norms_B
        self.shrinkage_sum += ratio_B[valid_B].sum().item()
        self.shrinkage_samples += int(valid_B.sum().item())
        self.sum_x_M += x_BM.sum(dim=0).double().cpu()
        self.squared_norm += x_BM.pow(2).sum().item()
        self.squared_residual += (x_BM - recon_BM).pow(2).sum().item()
        true_fires_BE = truth_BN[:, self.best_feature_E] > 0
        for row, (sae, true) in enumerate([(1, 1), (1, 0), (0, 1), (0, 0)]):
            sae_BE = sae_fires_BE if sae else ~sae_fires_BE
            true_BE = true_fires_BE if true else ~true_fires_BE
            self.counts_4E[row] += (sae_BE & true_BE).sum(dim=0).double()

    def classification(self) -> dict[str, Float[Tensor, " E"]]:
        """Per latent: precision, recall, F1 and accuracy (0 where undefined, as sae-lens)."""
        tp, fp, fn, tn = self.counts_4E.cpu().float()
        zero = torch.zeros_like(tp)
        precision = torch.where(tp + fp > 0, tp / (tp + fp), zero)
        recall = torch.where(tp + fn > 0, tp / (tp + fn), zero)
        f1 = torch.where(
            precision + recall > 0, 2 * precision * recall / (precision + recall), zero
        )
        accuracy = (tp + tn) / (tp + fp + fn + tn).clamp(min=1e-8)
        return {"precision": precision, "recall": recall, "f1_score": f1, "accuracy": accuracy}

    def explained_variance(self) -> float:
        mean_squared_norm = self.squared_norm / self.samples
        total_variance = mean_squared_norm - (self.sum_x_M / self.samples).pow(2).sum().item()
        mse = self.squared_residual / self.samples
        if total_variance < 1e-10:
            return 1.0 if mse < 1e-10 else 0.0
        return 1 - mse / total_variance

    def result(self, matching: Matching) -> SynthBenchResult:
        per_latent = self.classification()
        width = self.decoder_EM.shape[0]
        return SynthBenchResult(
            true_l0=self.true_active / self.samples,
            sae_l0=self.sae_active / self.samples,
            dead_latents=int((~self.fired_E).sum().item()),
            shrinkage=self.shrinkage_sum / max(self.shrinkage_samples, 1),
            explained_variance=self.explained_variance(),
            mcc=matching.mcc,
            uniqueness=len(self.best_feature_E.unique()) / width,
            precision=per_latent["precision"].mean().item(),
            recall=per_latent["recall"].mean().item(),
            f1_score=per_latent["f1_score"].mean().item(),
            accuracy=per_latent["accuracy"].mean().item(),
        )

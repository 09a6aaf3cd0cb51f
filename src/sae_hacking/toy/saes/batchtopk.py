"""Top-k, BatchTopK and Matryoshka BatchTopK SAEs as sae-lens 6 trains them, on the toy trainer.

One class, three selections of latents from the pre-activations ``(x - b_dec) W_enc + b_enc``,
each scaled by its decoder row's norm (sae-lens's ``rescale_acts_by_decoder_norm``, so the
selection ignores how the decoder's norms drift):
- ``sample``: the k largest per sample (top-k, Gao et al. 2024);
- ``batch``: the ``k * B`` largest over the whole batch (BatchTopK, Bussmann et al. 2024). Outside
  training the SAE is a JumpReLU with one threshold, the running mean of the smallest kept value
  (sae-lens saves BatchTopK SAEs that way, and so does ``toy/saes/export.py``);
- ``batch`` with ``matryoshka_widths``: BatchTopK whose loss adds the reconstruction of every inner
  prefix of latents (Bussmann et al. 2025; Nabeshima 2024).

Initialisation and losses follow sae-lens: decoder rows of norm ``decoder_init_norm`` (kaiming
directions), the encoder their transpose, zero biases; squared error summed over the model
dimension and averaged over the batch; AuxK on latents silent for ``dead_after_steps`` steps with
``M // 2`` of them, scaled down while fewer are dead.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.toy.protocol import LossParts
from sae_hacking.toy.saes.sparse_reconstruction import sparse_code_loss
from sae_hacking.toy.saes.weights import TiedInitSAE, kaiming_rows, reconstruction_error

Selection = Literal["sample", "batch"]


@dataclass(frozen=True)
class BatchTopKShape:
    """Everything needed to rebuild a ``BatchTopKSAE``."""

    model_dim: int
    width: int
    k: float | int
    selection: Selection = "batch"
    matryoshka_widths: tuple[int, ...] = ()
    threshold_lr: float = 0.01
    aux_coefficient: float = 1.0
    dead_after_steps: int = 1000
    decoder_init_norm: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.k <= self.width:
            raise ValueError(f"k={self.k} must lie in (0, width={self.width}]")
        if self.selection == "sample" and self.k != int(self.k):
            raise ValueError(f"per-sample top-k needs a whole k, not {self.k}")
        widths = self.matryoshka_widths
        if widths:
            if self.selection != "batch":
                raise ValueError("Matryoshka widths need the batch selection")
            if list(widths) != sorted(set(widths)) or widths[0] < 1 or widths[-1] != self.width:
                raise ValueError(
                    f"Matryoshka widths {widths} must increase and end at the width {self.width}"
                )

    @property
    def architecture(self) -> str:
        if self.matryoshka_widths:
            return "matryoshka_batchtopk"
        return "batchtopk" if self.selection == "batch" else "topk"


class BatchTopKSAE(TiedInitSAE):
    """A ``ToySAE`` choosing latents per sample or per batch, optionally Matryoshka."""

    shape: BatchTopKShape
    threshold: Tensor
    steps_since_fired_E: Tensor

    def __init__(self, shape: BatchTopKShape, generator: torch.Generator) -> None:
        W_dec_EM = kaiming_rows(shape.width, shape.model_dim, shape.decoder_init_norm, generator)
        super().__init__(shape, W_dec_EM, train_decoder_bias=True)
        device = generator.device
        # Double precision as sae-lens: an EMA of small values drifts in float32.
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64, device=device))
        self.register_buffer(
            "steps_since_fired_E", torch.zeros(shape.width, dtype=torch.int64, device=device)
        )

    def decoder_norms(self) -> Float[Tensor, " E"]:
        return self.W_dec_EM.norm(dim=1)

    def preactivations(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        """Pre-activations times decoder norms: what the selection and threshold compare."""
        # The norms scale the (small) weights rather than the B x E result: same numbers, less work.
        norms_E = self.decoder_norms()
        return torch.addmm(self.b_enc_E * norms_E, x_BM - self.b_dec_M, self.W_enc_ME * norms_E)

    def unit_decoder(self) -> Float[Tensor, "E M"]:
        """Decoder rows over their norms: decoding the scaled code with these undoes the scaling."""
        return self.W_dec_EM / self.decoder_norms()[:, None]

    def select(self, pre_BE: Float[Tensor, "B E"]) -> Float[Tensor, "B E"]:
        """The training-time code: ReLU'd top-k per sample or over the batch, dense."""
        return self.select_and_kept(pre_BE)[0]

    def kept(self, pre_BE: Float[Tensor, "B E"]) -> tuple[Int[Tensor, " K"], Float[Tensor, " K"]]:
        """The training-time code's kept entries: flat indices into B x E, and ReLU'd values."""
        batch, width = pre_BE.shape
        if self.shape.selection == "sample":
            vals_BK, idx_BK = pre_BE.topk(int(self.shape.k), dim=1, sorted=False)
            starts_B1 = torch.arange(0, batch * width, width, device=pre_BE.device)[:, None]
            return (idx_BK + starts_B1).flatten(), vals_BK.relu().flatten()
        vals_K, flat_K = batch_top_k(pre_BE.flatten(), int(self.shape.k * batch), self.threshold)
        return flat_K, vals_K

    def sorted_kept(
        self, pre_BE: Float[Tensor, "B E"]
    ) -> tuple[Int[Tensor, " K"], Float[Tensor, " K"]]:
        """``kept``, sorted by sample then latent (a sparse row-major code)."""
        flat_K, vals_K = self.kept(pre_BE)
        flat_K, order_K = flat_K.sort()
        return flat_K, vals_K.index_select(0, order_K)

    def select_and_kept(
        self, pre_BE: Float[Tensor, "B E"]
    ) -> tuple[Float[Tensor, "B E"], Int[Tensor, " K"], Float[Tensor, " K"]]:
        """The training-time code, and the latent and value of each kept entry."""
        flat_K, vals_K = self.kept(pre_BE)
        acts_BE = torch.zeros_like(pre_BE).flatten().scatter_(0, flat_K, vals_K)
        return acts_BE.view_as(pre_BE), flat_K % pre_BE.shape[1], vals_K

    def encode_dense(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B E"]:
        """The code in training mode; in eval mode the exported one (JumpReLU for batch)."""
        pre_BE = self.preactivations(x_BM)
        if self.training or self.shape.selection == "sample":
            return self.select(pre_BE)
        return pre_BE * (pre_BE > self.threshold.to(pre_BE.dtype))

    def decode(self, acts_BE: Float[Tensor, "B E"]) -> Float[Tensor, "B M"]:
        return torch.addmm(self.b_dec_M, acts_BE, self.unit_decoder())

    def reconstruct(self, x_BM: Float[Tensor, "B M"]) -> Float[Tensor, "B M"]:
        return self.decode(self.encode_dense(x_BM))

    def dead_latents(self) -> Bool[Tensor, " E"]:
        return self.steps_since_fired_E > self.shape.dead_after_steps

    def loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        """The training loss; on the CPU, while no latent is dead (no AuxK), through the sparse
        hand-written backward (``sparse_loss``), else through autograd (``dense_loss``)."""
        cpu = x_BM.device.type == "cpu"
        if cpu and not torch.compiler.is_compiling() and not bool(self.dead_latents().any()):
            return self.sparse_loss(x_BM)
        return self.dense_loss(x_BM)

    def sparse_loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        """``dense_loss`` without AuxK, the same numbers and gradients at a fraction of the cost."""
        stops = (*self.shape.matryoshka_widths[:-1], self.width)
        mse_D, latents_K, vals_K = sparse_code_loss(
            x_BM,
            self.W_enc_ME,
            self.b_enc_E,
            self.W_dec_EM,
            self.b_dec_M,
            self.sorted_kept,
            stops,
        )
        self.track(latents_K, vals_K)
        parts: dict[str, float | Tensor] = {"mse": mse_D[-1].detach()}
        for stop, inner in zip(stops[:-1], mse_D[:-1], strict=True):
            parts[f"mse_{stop}"] = inner.detach()
        return LossParts(mse_D.sum(), parts)

    def dense_loss(self, x_BM: Float[Tensor, "B M"]) -> LossParts:
        """The training loss through autograd: every B x E matrix dense, AuxK included."""
        pre_BE = self.preactivations(x_BM)
        acts_BE, latents_K, vals_K = self.select_and_kept(pre_BE)
        unit_EM = self.unit_decoder()
        recon_BM = torch.addmm(self.b_dec_M, acts_BE, unit_EM)
        mse = reconstruction_error(recon_BM, x_BM)
        parts: dict[str, float | Tensor] = {"mse": mse.detach()}
        total = mse
        start = 0
        inner_BM = self.b_dec_M.expand_as(x_BM)
        for stop in self.shape.matryoshka_widths[:-1]:
            inner_BM = inner_BM + acts_BE[:, start:stop] @ unit_EM[start:stop]
            inner = reconstruction_error(inner_BM, x_BM)
            parts[f"mse_{stop}"] = inner.detach()
            total = total + inner
            start = stop
        with torch.no_grad():
            self.track(latents_K, vals_K.detach())
        dead_E = self.dead_latents()
        # On the CPU a check costs nothing, so skip AuxK while no latent is dead (as sae-lens
        # does); on a GPU the check would stall the stream, so the term is always computed.
        if pre_BE.device.type == "cpu" and not bool(dead_E.any()):
            return LossParts(total, parts)
        aux = self.aux_loss(pre_BE, (x_BM - recon_BM).detach(), dead_E, unit_EM)
        parts["auxk"] = aux.detach()
        return LossParts(total + self.shape.aux_coefficient * aux, parts)

    def track(self, latents_K: Int[Tensor, " K"], acts_K: Float[Tensor, " K"]) -> None:
        """Idle counters, and the batch selection's threshold (EMA of the smallest kept value),
        from the kept entries (two passes over B x E fewer than from the dense code)."""
        fired_E = torch.zeros(self.width, device=acts_K.device)
        fired_E.scatter_reduce_(0, latents_K, (acts_K > 0).float(), "amax")
        self.steps_since_fired_E.add_(1).masked_fill_(fired_E > 0, 0)
        if self.shape.selection == "batch":
            smallest = smallest_positive(acts_K).double()
            lr = self.shape.threshold_lr
            updated = (1 - lr) * self.threshold + lr * smallest
            # A batch where nothing fired leaves the threshold alone (no host sync to check).
            self.threshold.copy_(torch.where(smallest.isfinite(), updated, self.threshold))

    def aux_loss(
        self,
        pre_BE: Float[Tensor, "B E"],
        residual_BM: Float[Tensor, "B M"],
        dead_E: Bool[Tensor, " E"],
        unit_EM: Float[Tensor, "E M"],
    ) -> Float[Tensor, ""]:
        """sae-lens's AuxK: the top ``M // 2`` dead latents reconstruct the residual."""
        k_aux = min(self.shape.model_dim // 2, self.width)
        vals_BK, idx_BK = pre_BE.masked_fill(~dead_E, -math.inf).topk(k_aux, dim=1, sorted=False)
        acts_BE = torch.zeros_like(pre_BE).scatter_(1, idx_BK, vals_BK.relu())
        estimate_BM = acts_BE @ unit_EM
        scale = (dead_E.sum() / k_aux).clamp(max=1.0)
        return scale * reconstruction_error(estimate_BM, residual_BM)


def smallest_positive(vals_D: Float[Tensor, "*D"]) -> Float[Tensor, ""]:
    return vals_D.masked_fill(vals_D <= 0, math.inf).min()


# The candidates' floor as a fraction of the running threshold: the smallest kept value moves
# little from batch to batch, so half of its running mean keeps a few times k candidates.
CANDIDATE_FLOOR = 0.5


def batch_top_k(
    flat_D: Float[Tensor, " D"], k: int, threshold: Tensor
) -> tuple[Float[Tensor, " K"], Int[Tensor, " K"]]:
    """``flat_D.relu().topk(k, sorted=False)``, on the CPU from the values above a positive floor
    when at least k are (then the k largest are among them: exact, and no ReLU is needed).

    A full top-k over B x E values was a fifth of a CPU training step at 1k features (selection
    is linear in what it scans); on other devices the check would cost a host sync, so they scan all.
    """
    floor = CANDIDATE_FLOOR * float(threshold) if flat_D.device.type == "cpu" else 0.0
    if floor > 0:
        candidates_C = (flat_D > floor).nonzero().squeeze(1)
        if len(candidates_C) >= k:
            vals_K, position_K = flat_D.index_select(0, candidates_C).topk(k, sorted=False)
            return vals_K, candidates_C.index_select(0, position_K)
    return flat_D.relu().topk(k, sorted=False)

"""A decoder-norm-scaled top-k SAE's reconstruction loss with a hand-written, sparse backward.

The loss is ``BatchTopKSAE.dense_loss`` without AuxK: pre-activations ``(x - b_dec) W_enc + b_enc``
times the decoder norms, a chosen set of K entries kept, decoded by the unit decoder rows plus
``b_dec``, and the squared error summed over M and averaged over B, once per level (the full
width, and every inner Matryoshka prefix). Autograd spends a B x E x M matmul on each of the
gradients of the code, of the decoder and of the centred input, and a chain of small ops on the
norms; here the code's gradient is sampled at the K kept entries only (``sampled_addmm``), the
decoder's and encoder's come from the code as a sparse matrix (K x M work each), and the input's
is never formed (``b_dec`` enters the pre-activations through the bias). At 1k features (B 1024,
M 128, E 256, K 5,734, one CPU thread) a BatchTopK step went from about 11.7 to 8.5 ms of CPU
(benchmarks/synthetic_training.py). Used on the CPU only: sparse CSR kernels inside a captured
CUDA graph are untested, so CUDA keeps autograd.
Tested against autograd through the dense loss in ``tests/toy/test_synthetic_saes.py``.
"""

import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.toy.sparse_index import compressed_rows

# Chooses the kept entries from the scaled pre-activations: flat indices into B x E, sorted, and
# their values (ReLU'd).
Selection = Callable[[Tensor], tuple[Tensor, Tensor]]


def csr(
    row_starts: Int[Tensor, " D"], cols_K: Int[Tensor, " K"], vals_K: Tensor, shape: tuple[int, int]
) -> Tensor:
    # torch warns once per process that sparse CSR is in beta; the ops used here are tested.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(row_starts, cols_K, vals_K, shape, check_invariants=False)


class SparseCodeLoss(torch.autograd.Function):
    """``(mse per level, kept latents, kept values)`` from ``(x, W_enc, b_enc, W_dec, b_dec)``.

    ``stops`` are the levels' widths, increasing, the last the full width; the kept latents and
    values (sorted by sample, then latent) come out for the SAE's bookkeeping, without gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x_BM: Tensor,
        W_enc_ME: Tensor,
        b_enc_E: Tensor,
        W_dec_EM: Tensor,
        b_dec_M: Tensor,
        select: Selection,
        stops: tuple[int, ...],
    ) -> tuple[Tensor, Tensor, Tensor]:
        batch, width = x_BM.shape[0], W_dec_EM.shape[0]
        norms_E = W_dec_EM.norm(dim=1)
        scaled_ME = W_enc_ME * norms_E
        bias_E = torch.addmv(b_enc_E * norms_E, scaled_ME.T, b_dec_M, alpha=-1)
        flat_K, vals_K = select(torch.addmm(bias_E, x_BM, scaled_ME))
        rows_K = flat_K.div(width, rounding_mode="floor")
        latents_K = flat_K - rows_K * width
        row_starts = compressed_rows(rows_K, batch)
        unit_EM = W_dec_EM / norms_E[:, None]
        residuals = []
        for stop in stops:
            weights_K = vals_K if stop == width else vals_K * (latents_K < stop)
            recon_BM = F.embedding_bag(
                latents_K,
                unit_EM,
                row_starts,
                mode="sum",
                per_sample_weights=weights_K,
                include_last_offset=True,
            )
            residuals.append(recon_BM.add_(b_dec_M).sub_(x_BM))
        # A dot product is one BLAS call; square-then-sum is two passes and a B x M temporary.
        mse_D = torch.stack([torch.dot(r.view(-1), r.view(-1)) for r in residuals]) / batch
        ctx.save_for_backward(x_BM, W_enc_ME, b_enc_E, b_dec_M)
        ctx.code = (rows_K, latents_K, vals_K, row_starts)
        ctx.decoder = (norms_E, scaled_ME, unit_EM)
        ctx.residuals = residuals
        ctx.stops = stops
        ctx.mark_non_differentiable(latents_K, vals_K)
        return mse_D, latents_K, vals_K

    @staticmethod
    def backward(  # pyright: ignore[reportIncompatibleMethodOverride]
        ctx: Any, grad_D: Tensor, *_: Tensor
    ) -> tuple[None, Tensor, Tensor, Tensor, Tensor, None, None]:
        x_BM, W_enc_ME, b_enc_E, b_dec_M = ctx.saved_tensors
        rows_K, latents_K, vals_K, row_starts = ctx.code
        norms_E, scaled_ME, unit_EM = ctx.decoder
        batch, width = x_BM.shape[0], unit_EM.shape[0]
        stops: tuple[int, ...] = ctx.stops
        # Level l's reconstruction reads latents below stops[l], so the block of latents
        # [stops[j-1], stops[j]) answers to the sum of the gradients of levels j and above.
        scales = (grad_D * (2 / batch)).unbind(0)
        grads = [r * g for r, g in zip(ctx.residuals, scales, strict=True)]
        above_BM = [grads[-1]]
        for g_BM in reversed(grads[:-1]):
            above_BM.insert(0, above_BM[0] + g_BM)
        pattern = csr(row_starts, latents_K, vals_K, (batch, width))
        # Kept entries again, sorted by latent then sample: the code's transpose.
        order_K = (latents_K * batch + rows_K).argsort()
        rows_T = rows_K.index_select(0, order_K)
        latent_starts = compressed_rows(latents_K.index_select(0, order_K), width)
        code_T = csr(latent_starts, rows_T, vals_K.index_select(0, order_K), (width, batch))
        if len(stops) == 1:
            grad_vals_K = torch.sparse.sampled_addmm(
                pattern, grads[0], unit_EM.T, beta=0.0
            ).values()
            grad_unit_EM = code_T @ grads[0]
        else:
            grad_vals_K = torch.zeros_like(vals_K)
            grad_unit_EM = torch.empty_like(unit_EM)
            start = 0
            for stop, h_BM in zip(stops, above_BM, strict=True):
                sampled_K = torch.sparse.sampled_addmm(pattern, h_BM, unit_EM.T, beta=0.0).values()
                block_K = (latents_K >= start) & (latents_K < stop)
                grad_vals_K = torch.where(block_K, sampled_K, grad_vals_K)
                grad_unit_EM[start:stop] = (code_T @ h_BM)[start:stop]
                start = stop
        grad_vals_K = grad_vals_K * (vals_K > 0)  # ReLU'd (and unkept) entries pass nothing
        grad_b_dec_M = above_BM[0].sum(0)
        # Through the pre-activations x scaled + bias, where scaled = W_enc * norms and
        # bias = b_enc * norms - scaled^T b_dec.
        grad_T = csr(latent_starts, rows_T, grad_vals_K.index_select(0, order_K), (width, batch))
        grad_bias_E = torch.zeros_like(norms_E).index_add_(0, latents_K, grad_vals_K)
        grad_scaled_EM = torch.addr(grad_T @ x_BM, grad_bias_E, b_dec_M, alpha=-1)
        grad_b_dec_M = torch.addmv(grad_b_dec_M, scaled_ME, grad_bias_E, alpha=-1)
        W_enc_EM = W_enc_ME.T
        grad_norms_E = grad_bias_E * b_enc_E + (grad_scaled_EM * W_enc_EM).sum(1)
        # Through unit = W_dec / norms, and norms = |W_dec| itself.
        along_E = (grad_unit_EM * unit_EM).sum(1)
        grad_W_dec_EM = torch.addcmul(
            grad_unit_EM / norms_E[:, None], unit_EM, (grad_norms_E - along_E / norms_E)[:, None]
        )
        grad_W_enc_ME = (grad_scaled_EM * norms_E[:, None]).T
        return None, grad_W_enc_ME, grad_bias_E * norms_E, grad_W_dec_EM, grad_b_dec_M, None, None


def sparse_code_loss(
    x_BM: Float[Tensor, "B M"],
    W_enc_ME: Float[Tensor, "M E"],
    b_enc_E: Float[Tensor, " E"],
    W_dec_EM: Float[Tensor, "E M"],
    b_dec_M: Float[Tensor, " M"],
    select: Selection,
    stops: tuple[int, ...],
) -> tuple[Float[Tensor, " D"], Int[Tensor, " K"], Float[Tensor, " K"]]:
    """Each level's squared error, and the kept latents and values (see ``SparseCodeLoss``)."""
    out = SparseCodeLoss.apply(x_BM, W_enc_ME, b_enc_E, W_dec_EM, b_dec_M, select, stops)
    return out  # pyright: ignore[reportReturnType]

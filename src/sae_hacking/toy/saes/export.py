"""Toy SAEs as sae-lens inference SAEs, and saved in sae-lens's on-disk format.

``SAE.load_from_disk(path)`` then opens them, so every tool that reads sae-lens SAEs reads these.
Decoder-norm scaling is folded into the weights (encoder columns and encoder bias times each
decoder row's norm, decoder rows made unit), which leaves every code and reconstruction unchanged:
BatchTopK and Matryoshka BatchTopK become JumpReLU SAEs with their one threshold (as sae-lens saves
them), top-k a TopK SAE, JumpReLU a JumpReLU SAE. A ``MatryoshkaSAE`` (whose decoder is not
normalised) goes as it is: L1 sparsity is a standard (ReLU) SAE, top-k a TopK SAE.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sae_hacking.toy.saes.batchtopk import BatchTopKSAE
from sae_hacking.toy.saes.jumprelu import JumpReLUSAE
from sae_hacking.toy.saes.matryoshka import MatryoshkaSAE

if TYPE_CHECKING:
    from sae_lens import SAE

ExportableSAE = BatchTopKSAE | JumpReLUSAE | MatryoshkaSAE


@torch.no_grad()
def to_sae_lens(sae: ExportableSAE) -> "SAE":
    """The same SAE as a sae-lens inference SAE, float32 on the CPU."""
    from sae_lens import JumpReLUSAE as LensJumpReLU
    from sae_lens import JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAEConfig
    from sae_lens import TopKSAE as LensTopK

    W_enc_ME = sae.W_enc_ME.detach().float().cpu()
    b_enc_E = sae.b_enc_E.detach().float().cpu()
    W_dec_EM = sae.W_dec_EM.detach().float().cpu()
    b_dec_M = sae.b_dec_M.detach().float().cpu()
    model_dim, width = W_enc_ME.shape
    weights = {"W_enc": W_enc_ME, "b_enc": b_enc_E, "W_dec": W_dec_EM, "b_dec": b_dec_M}
    if isinstance(sae, MatryoshkaSAE):
        if sae.shape.sparsity == "l1":
            lens: SAE = StandardSAE(StandardSAEConfig(d_in=model_dim, d_sae=width))
        else:
            lens = LensTopK(TopKSAEConfig(d_in=model_dim, d_sae=width, k=sae.shape.k))
    elif isinstance(sae, JumpReLUSAE):
        lens = LensJumpReLU(JumpReLUSAEConfig(d_in=model_dim, d_sae=width))
        weights["threshold"] = sae.threshold_E.detach().float().cpu()
    else:
        norms_E = W_dec_EM.norm(dim=1)
        weights = {
            "W_enc": W_enc_ME * norms_E,
            "b_enc": b_enc_E * norms_E,
            "W_dec": W_dec_EM / norms_E[:, None],
            "b_dec": b_dec_M,
        }
        if sae.shape.selection == "sample":
            lens = LensTopK(TopKSAEConfig(d_in=model_dim, d_sae=width, k=int(sae.shape.k)))
        else:
            lens = LensJumpReLU(JumpReLUSAEConfig(d_in=model_dim, d_sae=width))
            threshold = float(sae.threshold.item())
            weights["threshold"] = torch.full((width,), threshold)
    lens.load_state_dict(weights, strict=True)
    lens.eval()
    return lens


def export_sae(sae: ExportableSAE, path: Path) -> Path:
    """Write ``sae`` where ``sae_lens.SAE.load_from_disk(path)`` opens it; returns ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    to_sae_lens(sae).save_model(path)
    return path

"""The SAEs of one run: loaded by release and id (or from local directories), all on one hook, folded."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.llm.saes import (
    TINY_RELEASE,
    check_pairing,
    load_sae,
    load_sae_from_disk,
    tiny_sae,
)

FLAG = "--sae-ids"


def load_one(model: Any, release: str, sae_id: str, device: Any) -> Any:
    """``tiny``; ``DIR/ID`` or ``DIR`` saved by sae-lens; else a sae-lens release and id."""
    if release == TINY_RELEASE:
        return tiny_sae(model, sae_id, device, FLAG)
    root = Path(release)
    if (root / sae_id / "cfg.json").is_file():
        return load_sae_from_disk(root / sae_id, device, flag=FLAG)
    if root.is_dir():
        return load_sae_from_disk(root, device, flag="--sae-release")
    return load_sae(release, sae_id, device, flag=FLAG)


@dataclass(frozen=True)
class FoldedSae:
    """An SAE whose decoder rows have unit norm and whose activations carry the norms.

    SAEBench folds decoder norms into the encoder (``fold_W_dec_norm``) before the eval, so a
    latent's probe projection is its activation times its cosine. SAEs that cannot fold in place
    (sae-lens's TopK: scaling its encoder could change which k win) are folded after encoding
    instead, which is the same reconstruction; SAEBench would use them unfolded.
    """

    sae: Any
    scale_E: Tensor | None  # decoder norms to apply after encoding; None when folded in place

    def encode(self, x_BM: Tensor) -> Tensor:
        latents_BE = self.sae.encode(x_BM.to(self.sae.W_enc.dtype)).float()
        return latents_BE if self.scale_E is None else latents_BE * self.scale_E

    @property
    def decoder_EM(self) -> Tensor:
        W_dec_EM = self.sae.W_dec.detach().float()
        return W_dec_EM if self.scale_E is None else W_dec_EM / self.scale_E[:, None]

    @property
    def width(self) -> int:
        return int(self.sae.cfg.d_sae)

    @property
    def neuronpedia_id(self) -> str | None:
        return getattr(self.sae.cfg.metadata, "neuronpedia_id", None)


def fold(sae: Any) -> FoldedSae:
    """Fold decoder norms into the encoder when the SAE can, else after encoding."""
    try:
        sae.fold_W_dec_norm()
    except NotImplementedError:
        with torch.no_grad():
            return FoldedSae(sae, sae.W_dec.float().norm(dim=1).clamp(min=1e-8))
    return FoldedSae(sae, None)


def load_saes(
    model: Any, release: str, ids: tuple[str, ...], device: Any
) -> tuple[list[FoldedSae], str]:
    """Every SAE, checked against the model and against each other's hook, folded; and the hook."""
    if len(set(ids)) != len(ids):
        raise UserInputError(FLAG, "an SAE id is given twice")
    saes = []
    hook_name = None
    for sae_id in ids:
        sae = load_one(model, release, sae_id, device)
        hook = check_pairing(model.cfg, sae, FLAG)
        if hook_name is not None and hook != hook_name:
            raise UserInputError(
                FLAG,
                f"'{sae_id}' reads '{hook}' but '{ids[0]}' reads '{hook_name}'; "
                "one run evaluates SAEs of one hook",
            )
        hook_name = hook
        sae.eval()
        saes.append(fold(sae))
    assert hook_name is not None
    return saes, hook_name

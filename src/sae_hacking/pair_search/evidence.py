"""What the pair report shows beside the scores: decoder cosines and what each ablation moves most
downstream."""

from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open
from torch import Tensor

from sae_hacking.errors import UserInputError
from sae_hacking.io.effects import EffectStore
from sae_hacking.neuronpedia import neuronpedia_url

# The weights file of a local sae-lens SAE directory.
SAE_WEIGHTS = "sae_weights.safetensors"
# Reader latents listed per ablated latent.
TOP_MOVED = 5


def decoder_rows(ablator: dict[str, Any], model: str, latents: list[int]) -> Float[Tensor, "D M"]:
    """The ablator SAE's decoder rows of ``latents``: read straight from a local sae-lens
    directory (no sae-lens import, only those rows), else loaded as the runs loaded the SAE."""
    release, sae_id = str(ablator["release"]), str(ablator["id"])
    weights = Path(release) / SAE_WEIGHTS
    if weights.is_file():
        try:
            with safe_open(str(weights), framework="pt") as handle:
                rows = handle.get_slice("W_dec")
                return torch.stack([rows[i] for i in latents]).float()
        except (OSError, KeyError, SafetensorError) as error:
            raise UserInputError(
                "--ablation-dir", f"cannot read the ablator's decoder from '{weights}' ({error})"
            ) from error
    from sae_hacking.llm.models import load_model
    from sae_hacking.llm.options import TINY_RELEASE
    from sae_hacking.llm.saes import load_sae, tiny_sae

    if release == TINY_RELEASE:
        sae = tiny_sae(load_model(model), sae_id)
    else:
        sae = load_sae(release, sae_id, flag="--ablation-dir")
    return sae.W_dec.detach()[torch.tensor(latents, dtype=torch.long)].float().cpu()


def decoder_cosines(
    decoder_DM: Float[Tensor, "D M"], first_P: Int[Tensor, " P"], second_P: Int[Tensor, " P"]
) -> Float[Tensor, " P"]:
    """Cosine of each pair's decoder rows; ``first_P`` and ``second_P`` index ``decoder_DM``."""
    return torch.nn.functional.cosine_similarity(decoder_DM[first_P], decoder_DM[second_P], dim=1)


def most_moved(
    store: EffectStore, latents: list[int], top: int = TOP_MOVED
) -> dict[int, list[dict[str, Any]]]:
    """For each ablated latent, the effect entries its ablation moves most on average (largest
    |mean clean - ablated|): reader latents, their pre-activations, or dimensions of the reader
    hook's activations (the store's effect space); latents linked to Neuronpedia where known."""
    reader = store.manifest["reader"]
    space = str(reader.get("effect_space", "latents"))
    neuronpedia_id = None if space == "activations" else reader.get("neuronpedia_id")
    row_of = {int(latent): row for row, latent in enumerate(store.latents_R.tolist())}
    moved: dict[int, list[dict[str, Any]]] = {}
    for latent in latents:
        row = row_of[latent]
        mean_Y = store.rows(row, row + 1)[0] / max(int(store.counts_R[row]), 1)
        biggest = mean_Y.abs().topk(min(top, mean_Y.shape[0])).indices.tolist()
        moved[latent] = [
            {
                "latent": int(r),
                "space": space,
                "mean_effect": float(mean_Y[r]),
                "url": neuronpedia_url(neuronpedia_id, int(r)),
            }
            for r in biggest
            if float(mean_Y[r]) != 0.0
        ]
    return moved

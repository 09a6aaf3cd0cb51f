"""The language-model hunt's three steps, run on toy samples with the same core functions.

Each toy sample is a one-token prompt: the ablator SAE reads ``x``, the downstream map and the
reader play the later layers and the reader SAE. The steps call what the language-model scripts
call: ``core.cooccurrence.add_counts_`` for exact counts, ``core.ablation.choose_ablations`` /
``decoder_directions`` / ``ablation_deltas`` for which latents to ablate and what ablating one
subtracts (the SAE's error term kept: ``x - a_i d_i``, not the reconstruction), the effect-row
accumulator of ``io.effects`` (effect = clean - ablated, summed per ablator latent), and the
pair scores of ``core.pair_scores`` with a lookup into the packed co-occurrence triangle.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sae_hacking.core.ablation import ablation_deltas, choose_ablations, decoder_directions
from sae_hacking.core.cooccurrence import active_latents, add_counts_
from sae_hacking.core.pair_scores import exclusion_confidence, expected_cooccurrence
from sae_hacking.core.similarity import unit_rows
from sae_hacking.core.triangle import pair_index, triangle_size
from sae_hacking.io.effects import RowAccumulator
from sae_hacking.toy.experiments.hunt.model import Downstream, Reader
from sae_hacking.toy.experiments.hunt.scoring import PairTable
from sae_hacking.toy.protocol import FeatureSource, ToySAE

Sampler = Callable[[int], Float[Tensor, "B M"]]


def sampler(source: FeatureSource, generator: torch.Generator) -> Sampler:
    """Fresh activations from ``source``, ``n`` at a time."""
    return lambda n: source.sample(n, generator)[0]


def batches(n_samples: int, batch_size: int) -> list[int]:
    """Batch sizes that add up to ``n_samples``."""
    full, rest = divmod(n_samples, batch_size)
    return [batch_size] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class Cooccurrences:
    """Exact counts over ``tokens`` samples: pairs (packed upper triangle) and per-latent firings."""

    counts_P: Int[Tensor, " P"]
    firing_E: Int[Tensor, " E"]
    tokens: int

    @property
    def width(self) -> int:
        return int(self.firing_E.shape[0])

    def lookup(self, first_P: Tensor, second_P: Tensor) -> Tensor:
        """The pair search's co-occurrence lookup (``first < second``)."""
        return self.counts_P[pair_index(first_P, second_P, self.width)]


@torch.no_grad()
def count_cooccurrences(
    ablator: ToySAE, draw: Sampler, n_samples: int, batch_size: int
) -> Cooccurrences:
    """Count, over ``n_samples`` fresh samples, how often each pair of ablator latents fires together."""
    width = ablator.width
    device = draw(1).device
    counts_P = torch.zeros(triangle_size(width), dtype=torch.int64, device=device)
    firing_E = torch.zeros(width, dtype=torch.int64, device=device)
    for size in batches(n_samples, batch_size):
        acts_B1E = ablator.encode_dense(draw(size))[:, None, :]
        counted_B1 = torch.ones(size, 1, dtype=torch.bool, device=device)
        add_counts_(counts_P, firing_E, active_latents(acts_B1E, counted_B1))
    return Cooccurrences(counts_P, firing_E, n_samples)


@dataclass(frozen=True)
class EffectRows:
    """Summed effects (clean - ablated reader vectors) of the ablated latents, sorted by latent."""

    latents_R: Int[Tensor, " R"]
    rows_RD: Float[Tensor, "R D"]
    counts_R: Int[Tensor, " R"]


@torch.no_grad()
def ablation_effects(
    ablator: ToySAE,
    downstream: Downstream,
    reader: Reader,
    draw: Sampler,
    n_samples: int,
    batch_size: int,
    abridge_to: int,
    spaces: tuple[str, ...] = ("latents",),
    ablatable_E: Tensor | None = None,
) -> dict[str, EffectRows]:
    """Ablate each sample's top ``abridge_to`` ablator latents one at a time; sum their effects,
    read in each of ``spaces`` (the same ablations for every space)."""
    width = ablator.width
    device = draw(1).device
    if ablatable_E is None:
        ablatable_E = torch.ones(width, dtype=torch.bool, device=device)
    no_selection = torch.zeros(0, dtype=torch.long, device=device)
    decoder_EM = ablator.decoder_directions().float()
    rows = {s: RowAccumulator(width, reader.width(downstream, s), device) for s in spaces}
    for size in batches(n_samples, batch_size):
        x_BM = draw(size)
        acts_BE = ablator.encode_dense(x_BM)
        counted_B1 = torch.ones(size, 1, dtype=torch.bool, device=device)
        choice = choose_ablations(
            acts_BE[:, None, :], counted_B1, min(abridge_to, width), ablatable_E, no_selection
        )
        sample_K, slot_K = (choice.valid_BK & choice.chosen_B[:, None]).nonzero(as_tuple=True)
        latent_K = choice.latents_BK[sample_K, slot_K]
        # Toy decoders apply their rows as stored (no rescaling by norm).
        directions_KM = decoder_directions(decoder_EM, latent_K, rescale_by_norm=False)
        acts_K1 = acts_BE[sample_K, latent_K][:, None]
        ablated_KM = x_BM[sample_K] - ablation_deltas(acts_K1, directions_KM)[:, 0]
        clean_KD, ablated_KD = downstream(x_BM)[sample_K], downstream(ablated_KM)
        for space, accumulator in rows.items():
            accumulator.add(latent_K, reader(clean_KD, space) - reader(ablated_KD, space))
    return {space: EffectRows(*accumulator.take()) for space, accumulator in rows.items()}


def pair_table(
    latents_R: Int[Tensor, " R"],
    rows: dict[str, Float[Tensor, "R D"]],
    cooccurrences: Cooccurrences,
) -> PairTable:
    """Every pair (i < j) of ``latents_R``: the cosine of its rows under each measure, its
    co-occurrence count, the count expected under independence and the exclusion confidence."""
    device = latents_R.device
    n_rows = int(latents_R.shape[0])
    i_P, j_P = torch.triu_indices(n_rows, n_rows, offset=1, device=device)
    first_P, second_P = latents_R[i_P], latents_R[j_P]
    observed_P = cooccurrences.lookup(first_P, second_P)
    firing_E = cooccurrences.firing_E.to(device)
    expected_P = expected_cooccurrence(firing_E[first_P], firing_E[second_P], cooccurrences.tokens)
    similarity = {}
    for name, rows_RD in rows.items():
        # Through the R x R Gram matrix: gathering both rows of every pair would hold P x D.
        unit_RD = unit_rows(rows_RD.float())
        similarity[name] = (unit_RD @ unit_RD.T)[i_P, j_P]
    return PairTable(
        first_P,
        second_P,
        observed_P,
        expected_P,
        exclusion_confidence(observed_P, expected_P),
        similarity,
        firing_E,
    )

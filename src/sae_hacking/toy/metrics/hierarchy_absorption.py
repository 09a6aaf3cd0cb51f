"""Absorption over a whole true hierarchy, streamed over batches: what sae-lens's metrics lack.

For every parent feature p of the hierarchy (``parent_N[c] == p`` for its children c), with main
latent ``latent_N[p]``:
- absorption fraction and full-absorption rate: the toy lab's definitions
  (``toy/metrics/absorption.py``), pooled over all batches' parent-with-child samples;
- the absorption gap: P(main latent fires | p fires, no child fires) - P(main latent fires | p fires
  with a child). An SAE that has absorbed p into its children fires p's latent when p is alone and
  not when a child is there: a gap near 1. Zero for an SAE that tracks p;
- which latents absorb which children: over samples where p and child c fire and p's main latent is
  silent, the latent carrying the largest share ``z_e (W_dec[e] . u_p)`` of the parent direction;
  per child, the most frequent such latent and how often it is the one (over all samples where p
  and c fire). This is the ground truth an absorption hunt is scored against.
"""

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.core.similarity import unit_rows
from sae_hacking.toy.metrics.absorption import (
    AbsorptionThresholds,
    absorption_scores,
    main_latent_mask,
)

DEFAULT_THRESHOLDS = AbsorptionThresholds()


@dataclass(frozen=True)
class ChildAbsorber:
    """The latent that most often carries parent p's direction when p's latent is silent beside c."""

    child: int
    parent: int
    latent: int
    rate: float
    is_child_latent: bool
    samples: int


class HierarchyAbsorption:
    """Accumulates absorption, the absorption gap and child absorbers over batches."""

    def __init__(
        self,
        decoder_EM: Float[Tensor, "E M"],
        features_NM: Float[Tensor, "N M"],
        parent_N: Int[Tensor, " N"],
        latent_N: Int[Tensor, " N"],
        thresholds: AbsorptionThresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        device = decoder_EM.device
        self.decoder_EM = decoder_EM.detach()
        self.features_NM = features_NM.detach()
        self.parent_N = parent_N.to(device)
        self.latent_N = latent_N.to(device)
        self.thresholds = thresholds
        self.width = decoder_EM.shape[0]
        self.main_NE = main_latent_mask(self.latent_N, self.width)
        self.children_C = (self.parent_N >= 0).nonzero().squeeze(1)
        self.parent_C = self.parent_N[self.children_C]
        self.parents_A = self.parent_C.unique()
        self.proj_EN = self.decoder_EM @ unit_rows(self.features_NM).T
        num_parents = len(self.parents_A)
        self.row_of_N = torch.full_like(self.parent_N, -1)
        self.row_of_N[self.parents_A] = torch.arange(num_parents, device=device)
        self.samples_A = torch.zeros(num_parents, dtype=torch.float64, device=device)
        self.fraction_sum_A = torch.zeros_like(self.samples_A)
        self.full_sum_A = torch.zeros_like(self.samples_A)
        # Rows: (alone, latent fires alone, with child, latent fires with child) per parent.
        self.gap_counts_4A = torch.zeros(4, num_parents, dtype=torch.float64, device=device)
        self.child_samples_C = torch.zeros(len(self.children_C), dtype=torch.float64, device=device)
        self.absorber_counts: dict[tuple[int, int], int] = {}

    @torch.no_grad()
    def add(
        self,
        x_BM: Float[Tensor, "B M"],
        acts_BE: Float[Tensor, "B E"],
        truth_BN: Float[Tensor, "B N"],
    ) -> None:
        report = absorption_scores(
            x_BM,
            acts_BE,
            self.decoder_EM,
            self.features_NM,
            truth_BN,
            self.parent_N,
            self.main_NE,
            self.thresholds,
        )
        rows_A = self.row_of_N[report.parents_A.to(self.row_of_N.device)]
        samples_A = report.samples_A.to(self.samples_A)
        self.samples_A.index_add_(0, rows_A, samples_A)
        self.fraction_sum_A.index_add_(0, rows_A, report.fraction_A.to(self.samples_A) * samples_A)
        self.full_sum_A.index_add_(0, rows_A, report.full_rate_A.to(self.samples_A) * samples_A)
        fired_BN = truth_BN > 0
        self.count_gap(fired_BN, acts_BE > 0)
        self.count_absorbers(fired_BN, acts_BE)

    def count_gap(self, fired_BN: Bool[Tensor, "B N"], fires_BE: Bool[Tensor, "B E"]) -> None:
        with_child_BN = torch.zeros_like(fired_BN, dtype=torch.int32)
        with_child_BN.index_add_(1, self.parent_C, fired_BN[:, self.children_C].int())
        parents_A = self.parents_A
        parent_fired_BA = fired_BN[:, parents_A]
        child_BA = with_child_BN[:, parents_A] > 0
        latent_A = self.latent_N[parents_A]
        latent_fires_BA = fires_BE[:, latent_A.clamp_min(0)] & (latent_A >= 0)
        alone_BA = parent_fired_BA & ~child_BA
        together_BA = parent_fired_BA & child_BA
        self.gap_counts_4A[0] += alone_BA.sum(0)
        self.gap_counts_4A[1] += (alone_BA & latent_fires_BA).sum(0)
        self.gap_counts_4A[2] += together_BA.sum(0)
        self.gap_counts_4A[3] += (together_BA & latent_fires_BA).sum(0)

    def count_absorbers(self, fired_BN: Bool[Tensor, "B N"], acts_BE: Float[Tensor, "B E"]) -> None:
        both_BC = fired_BN[:, self.children_C] & fired_BN[:, self.parent_C]
        self.child_samples_C += both_BC.sum(0)
        parent_latent_C = self.latent_N[self.parent_C]
        silent_BC = (acts_BE[:, parent_latent_C.clamp_min(0)] <= 0) | (parent_latent_C < 0)
        b_J, c_J = (both_BC & silent_BC).nonzero(as_tuple=True)
        if len(b_J) == 0:
            return
        parent_J = self.parent_C[c_J]
        share_JE = acts_BE[b_J] * self.proj_EN[:, parent_J].T
        best_share_J, best_latent_J = share_JE.max(dim=1)
        carried_J = best_share_J > 0
        keys_J = c_J[carried_J] * self.width + best_latent_J[carried_J]
        keys, counts = keys_J.unique(return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            pair = divmod(key, self.width)
            self.absorber_counts[pair] = self.absorber_counts.get(pair, 0) + count

    def absorbers(self, min_rate: float = 0.0) -> list[ChildAbsorber]:
        """Per child, its most frequent absorber (rate over samples where parent and child fire)."""
        best: dict[int, tuple[int, int]] = {}
        for (c, latent), count in self.absorber_counts.items():
            if c not in best or count > best[c][1]:
                best[c] = (latent, count)
        found = []
        for c, (latent, count) in sorted(best.items()):
            samples = int(self.child_samples_C[c].item())
            rate = count / max(samples, 1)
            if rate < min_rate:
                continue
            child = int(self.children_C[c].item())
            found.append(
                ChildAbsorber(
                    child=child,
                    parent=int(self.parent_C[c].item()),
                    latent=latent,
                    rate=rate,
                    is_child_latent=latent == int(self.latent_N[child].item()),
                    samples=samples,
                )
            )
        return found

    def per_parent(self) -> dict[str, Tensor]:
        """Per parent (``parents``): samples, fraction, full rate, and the gap's two rates."""
        samples_A = self.samples_A.clamp_min(1)
        alone, fires_alone, together, fires_together = self.gap_counts_4A.clamp_min(0)
        rate_alone_A = fires_alone / alone.clamp_min(1)
        rate_together_A = fires_together / together.clamp_min(1)
        return {
            "parents": self.parents_A.cpu(),
            "samples": self.samples_A.cpu(),
            "fraction": (self.fraction_sum_A / samples_A).cpu(),
            "full_rate": (self.full_sum_A / samples_A).cpu(),
            "fires_alone": rate_alone_A.cpu(),
            "fires_with_child": rate_together_A.cpu(),
            "gap": (rate_alone_A - rate_together_A).cpu(),
            "measured": ((alone > 0) & (together > 0)).cpu(),
        }

    def summary(self) -> dict[str, Any]:
        """Means over parents that had samples, and the absorber counts."""
        table = self.per_parent()
        sampled = table["samples"] > 0
        measured = table["measured"]
        absorbers = self.absorbers()

        def mean(values: Tensor, mask: Tensor) -> float:
            return values[mask].mean().item() if bool(mask.any()) else float("nan")

        return {
            "absorption_fraction": mean(table["fraction"], sampled),
            "full_absorption_rate": mean(table["full_rate"], sampled),
            "absorption_gap": mean(table["gap"], measured),
            "parents_scored": int(sampled.sum().item()),
            "children_with_absorber_rate_over_half": sum(a.rate >= 0.5 for a in absorbers),
            "children_absorbed_by_own_latent": sum(
                a.rate >= 0.5 and a.is_child_latent for a in absorbers
            ),
        }

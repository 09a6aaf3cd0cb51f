"""Slow, obvious references of SAEBench 0.6's absorption formulas: one word at a time, Python floats."""

import torch
from torch import Tensor

EPS = 1e-8


def absorption_of_word(
    latents_E: Tensor,
    acts_M: Tensor,
    direction_M: Tensor,
    decoder_EM: Tensor,
    main: list[int],
    absorber_cosine: float,
    full_cosine: float,
    projection_threshold: float,
    max_absorbers: int,
) -> tuple[float, bool]:
    """(absorption fraction, full absorption) of one word, following the definitions step by step."""
    unit = direction_M / direction_M.norm()
    cosines = [float(torch.nn.functional.cosine_similarity(unit, d, dim=0)) for d in decoder_EM]
    projections = [float(a) * c for a, c in zip(latents_E.tolist(), cosines, strict=True)]
    total = float(acts_M @ unit)
    main_projection = sum(projections[m] for m in main)
    candidates = sorted(
        (
            p
            for e, (p, c) in enumerate(zip(projections, cosines, strict=True))
            if e not in main and c >= absorber_cosine and p > 0
        ),
        reverse=True,
    )[:max_absorbers]
    absorbed = sum(candidates)
    if total == 0 or main_projection >= total or absorbed / total < projection_threshold:
        fraction = 0.0
    elif main_projection <= 0:
        fraction = 1.0
    else:
        credited = min(absorbed, total - main_projection)
        fraction = min(max(credited / (credited + main_projection), 0.0), 1.0)

    top = max(range(len(projections)), key=lambda e: projections[e])
    full = (
        all(float(latents_E[m]) < EPS for m in main)
        and cosines[top] >= full_cosine
        and total > 0
        and projections[top] / total >= projection_threshold
    )
    return fraction, full


def jump_rule(f1_by_k: list[float], ranking: list[int], jump: float) -> list[int]:
    """The F1-jump rule as SAEBench states it, in a plain loop."""
    best, accepted = -100.0, []
    for k in range(1, len(f1_by_k) + 1):
        if f1_by_k[k - 1] > best + jump:
            best = f1_by_k[k - 1]
            accepted = ranking[:k]
        else:
            break
    return accepted

"""The hunt on a sae-lens synthetic model: every method against the measured child absorbers, and
why the pair scores miss there.

Per seed, one ablator is trained and hunted at the default firing bar (half the model's mean
magnitude) and at the toy bar of 0.5. For each run: each method at its default threshold and its
best F1 over the sweep; then, for the true pairs and the rest, the median co-occurrence over its
chance level and the median effect cosine; what the ranked score keeps without its sibling
filter; and the ranked score's false pairs by how their latents' features are related in the
hierarchy (each latent stands for the feature it is matched to and the children it absorbs).

    uv run benchmarks/hunt_synthetic.py                       # synth-sae-bench-1k, seeds 0 and 1
    uv run benchmarks/hunt_synthetic.py --model synth-sae-bench-4k --seeds 0
"""

import argparse
import tempfile
from collections import Counter
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from sae_hacking.core.pair_scores import absorption_score
from sae_hacking.devices import resolve_device
from sae_hacking.toy.experiments.hunt.config import HuntConfig
from sae_hacking.toy.experiments.hunt.run import HuntResult, run, train_ablator
from sae_hacking.toy.experiments.hunt.scoring import METHODS, LatentPair

console = Console()
TOY_BAR = 0.5
# Closest first: a pair is named by the closest relation of any two of its latents' features.
RELATIONS = ("same feature", "parent", "grandparent+", "siblings", "same tree", "unrelated")


def ancestors(feature: int, parent_N: list[int]) -> list[int]:
    chain = []
    while parent_N[feature] >= 0:
        feature = parent_N[feature]
        chain.append(feature)
    return chain


def relation(a: int, b: int, parent_N: list[int]) -> str:
    if a == b:
        return "same feature"
    up_a, up_b = ancestors(a, parent_N), ancestors(b, parent_N)
    if a in up_b or b in up_a:
        return "parent" if parent_N[a] == b or parent_N[b] == a else "grandparent+"
    if up_a and up_a[:1] == up_b[:1]:
        return "siblings"
    if up_a and up_b and up_a[-1] == up_b[-1]:
        return "same tree"
    return "unrelated"


def false_pairs_by_relation(result: HuntResult, parent_N: list[int]) -> Counter[str]:
    """The ranked score's false pairs, named by the closest relation of their latents' features."""
    detail = result.truth.detail
    features: dict[int, set[int]] = {}
    for feature, latent in enumerate(detail["main_latent_of_feature"]):
        features.setdefault(latent, set()).add(feature)
    for absorber in detail["child_absorbers"]:
        features.setdefault(absorber["latent"], set()).add(absorber["child"])
    counts: Counter[str] = Counter()
    for a, b in result.found - result.truth.pairs:
        named = [relation(f, g, parent_N) for f in features.get(a, ()) for g in features.get(b, ())]
        counts[min(named, key=RELATIONS.index, default="unrelated")] += 1
    return counts


def diagnosis(result: HuntResult, config: HuntConfig) -> dict[str, float | int]:
    table = result.table
    keys_P = table.keys(table.first_P, table.second_P)
    truth: list[LatentPair] = sorted(result.truth.pairs)
    truth_T = table.keys(torch.tensor([a for a, _ in truth]), torch.tensor([b for _, b in truth]))
    true_P = torch.isin(keys_P, truth_T)
    ratio_P = table.cooccurrence_P / table.expected_P.clamp_min(1e-9)
    effect_P = table.similarity["effect"]
    unfiltered_P = absorption_score(effect_P, table.confidence_P) >= config.score_threshold
    return {
        "co-occurrence / chance, true pairs (median)": ratio_P[true_P].median().item(),
        "co-occurrence / chance, other pairs (median)": ratio_P[~true_P].median().item(),
        "effect cosine, true pairs (median)": effect_P[true_P].median().item(),
        "effect cosine, other pairs (median)": effect_P[~true_P].median().item(),
        "effect cosine, other pairs (90th percentile)": effect_P[~true_P].quantile(0.9).item(),
        "ranked without the sibling filter: found": int(unfiltered_P.sum()),
        "ranked without the sibling filter: true": int((unfiltered_P & true_P).sum()),
        "ranked: found": len(result.found),
        "ranked: true": len(result.found & result.truth.pairs),
    }


def print_methods(name: str, result: HuntResult) -> None:
    table = Table(title=f"{name}: {len(result.truth.pairs)} absorbed pairs")
    for column in ("method", "found", "P", "R", "F1", "best F1 (at)"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method in METHODS:
        score = result.at_default[method.name]
        best = max(result.sweeps[method.name], key=lambda s: s.f1)
        at = f" ({best.threshold:g})" if method.thresholded else ""
        precision = f"{score.precision:.2f}" if score.predicted else "–"
        table.add_row(
            method.name,
            f"{score.predicted:,}",
            precision,
            f"{score.recall:.2f}",
            f"{score.f1:.2f}",
            f"{best.f1:.2f}{at}",
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--model", default="synth-sae-bench-1k")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output-dir", type=Path, default=None, help="keep each run's hunt.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        output_dir = args.output_dir or Path(scratch)
        for seed in (int(s) for s in args.seeds.split(",")):
            base = HuntConfig(
                synthetic_model=args.model, seed=seed, device=args.device, output_dir=output_dir
            )
            trained = train_ablator(base, resolve_device(args.device))
            parent_N = trained.source.parent_N.tolist()
            toy_bar = HuntConfig(
                synthetic_model=args.model,
                seed=seed,
                device=args.device,
                output_dir=output_dir,
                firing_threshold=TOY_BAR,
            )
            for name, config in (("default bar", base), (f"bar {TOY_BAR}", toy_bar)):
                result = run(config, trained)
                print_methods(f"{args.model}, seed {seed}, {name}", result)
                for key, value in diagnosis(result, config).items():
                    console.print(
                        f"  {key}: {value:.3g}" if isinstance(value, float) else f"  {key}: {value}"
                    )
                relations = false_pairs_by_relation(result, parent_N)
                console.print(f"  ranked false pairs by relation: {dict(relations)}")


if __name__ == "__main__":
    main()

"""The toy hunt's methods side by side: precision / recall / F1 of each, per setting, over seeds.

Every setting of the downstream map and reader runs the same trained ablator per seed (the ablator
does not depend on them), and each method is scored at its default threshold. Settings are
``downstream/reader[/effect space]``; the table pools true positives, predictions and truth over
the seeds and gives the per-seed range of F1.

    uv run benchmarks/hunt_methods.py                        # 25 x 3 defaults, seeds 0-2
    uv run benchmarks/hunt_methods.py --seeds 0,1,2,3,4 --settings random/sae,readout/sae/latents
    uv run benchmarks/hunt_methods.py --hierarchy misleading --settings parents/sae \
        --reader-width 64 --reader-k 8 --steps 1500 --samples 20000   # decoder cosines mislead

Beside each method's score at its default threshold, a second table gives its best F1 over the
threshold sweep (pooled over seeds), so a method that only needed another threshold shows it; the
last gives P / R per seed. ``--output-dir`` keeps each run's hunt.json (truth and pairs found).
"""

import argparse
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from sae_hacking.devices import resolve_device
from sae_hacking.toy.experiments.hunt.config import HuntConfig
from sae_hacking.toy.experiments.hunt.run import HuntResult, run, train_ablator
from sae_hacking.toy.experiments.hunt.scoring import METHODS, Score

SETTINGS = ("readout/readout", "random/readout", "readout/sae", "random/sae")


def config_of(setting: str, seed: int, output_dir: Path, extra: dict[str, object]) -> HuntConfig:
    downstream, reader, *space = setting.split("/")
    changes: dict[str, object] = {"downstream": downstream, "reader": reader, **extra}
    if space:
        changes["effect_space"] = space[0]
    return HuntConfig(seed=seed, output_dir=output_dir, **changes)  # pyright: ignore[reportArgumentType]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--hierarchy", default="25x3")
    parser.add_argument("--model-dim", type=int, default=128)
    parser.add_argument("--firing-threshold", type=float, default=0.5)
    parser.add_argument("--fit-thresholds", default="none")
    parser.add_argument("--ablator-k", type=int, default=8)
    parser.add_argument("--reader-width", type=int, default=256)
    parser.add_argument("--reader-k", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="keep each run's directory (hunt.json: truth and pairs found) here; default: discarded",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = args.settings.split(",")
    extra: dict[str, object] = {
        "hierarchy": args.hierarchy,
        "model_dim": args.model_dim,
        "firing_threshold": args.firing_threshold,
        "fit_thresholds": args.fit_thresholds,
        "ablator_k": args.ablator_k,
        "reader_width": args.reader_width,
        "reader_k": args.reader_k,
        "steps": args.steps,
        "samples": args.samples,
    }
    results: dict[str, list[HuntResult]] = {s: [] for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = args.output_dir or Path(tmp)
        for seed in seeds:
            first = config_of(settings[0], seed, output_dir, extra)
            trained = train_ablator(first, resolve_device(first.device))
            for setting in settings:
                results[setting].append(run(config_of(setting, seed, output_dir, extra), trained))
    table = Table(title=f"{args.hierarchy}, seeds {args.seeds}: P / R / F1 pooled (F1 per seed)")
    table.add_column("setting")
    for method in METHODS:
        table.add_column(method.name, justify="right")
    best = Table(title="best F1 over the threshold sweep, pooled over seeds (at threshold)")
    best.add_column("setting")
    for method in METHODS:
        best.add_column(method.name, justify="right")
    for setting, runs in results.items():
        cells = []
        for method in METHODS:
            scores = [r.at_default[method.name] for r in runs]
            p, r, f1 = pooled(scores)
            low, high = min(s.f1 for s in scores), max(s.f1 for s in scores)
            cells.append(f"{p:.2f} / {r:.2f} / {f1:.2f} ({low:.2f}-{high:.2f})")
        table.add_row(setting, *cells)
        best_cells = []
        for method in METHODS:
            sweeps = [r.sweeps[method.name] for r in runs]
            at_bar = [pooled([sweep[i] for sweep in sweeps]) for i in range(len(sweeps[0]))]
            i_best = max(range(len(at_bar)), key=lambda i: at_bar[i][2])
            bar = sweeps[0][i_best].threshold
            best_cells.append(f"{at_bar[i_best][2]:.2f} ({bar:g})")
        best.add_row(setting, *best_cells)
    per_seed = Table(title="P / R per seed")
    per_seed.add_column("setting")
    per_seed.add_column("seed", justify="right")
    per_seed.add_column("absorbed pairs", justify="right")
    for method in METHODS:
        per_seed.add_column(method.name, justify="right")
    for setting, runs in results.items():
        for seed, result in zip(seeds, runs, strict=True):
            scores = [result.at_default[m.name] for m in METHODS]
            cells = [f"{s.precision:.2f} / {s.recall:.2f}" for s in scores]
            per_seed.add_row(setting, str(seed), str(len(result.truth.pairs)), *cells)
    Console(width=250).print(table)
    Console(width=250).print(best)
    Console(width=250).print(per_seed)


def pooled(scores: list[Score]) -> tuple[float, float, float]:
    """Precision, recall and F1 of true positives, predictions and truth summed over seeds."""
    tp = sum(s.true_positives for s in scores)
    predicted = sum(s.predicted for s in scores)
    actual = sum(s.actual for s in scores)
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


if __name__ == "__main__":
    main()

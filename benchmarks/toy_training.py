"""Toy SAE training speed: this toolkit's trainer against sae-lens's ``train_toy_sae``, side by side.

Both train a top-k SAE on the same data config, on one torch thread (on CPU), for the same number
of samples at the same batch size and learning rate, and both are scored by the same Hungarian MCC
of decoder rows to the true features. Tasks:

* tree: 25 parents x 3 children (100 features) in 64 dims, P(parent) 0.16, P(child | parent) 0.25.
  sae-lens samples it with its own ``ActivationGenerator`` + ``hierarchy_modifier``; this toolkit
  with ``toy.tree.TreeSource``. Same feature directions.
* original: 30 parents with two perturbed children (perturbation 0.4) in 50 dims, 2 parents per
  sample. sae-lens has no sampler for it, so its trainer is fed this toolkit's sampler: that row
  compares training loops only.

Timings are wall-clock for the whole training call (setup and the final evaluation included).

    uv run benchmarks/toy_training.py [--device cuda] [--samples 10000000] [--batch-size 1024]
        [--our-batch-size 4096 --our-lr 1e-3]   # this toolkit at its own defaults
"""

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

# sae-lens's trainer draws a tqdm bar per run; the table is what this script is for.
os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.synthetic import (
    ActivationGenerator,
    FeatureDictionary,
    HierarchyNode,
    hierarchy_modifier,
    train_toy_sae,
)
from torch import Tensor

from sae_hacking.core.matching import hungarian_mcc
from sae_hacking.core.similarity import cosine_matrix
from sae_hacking.toy.data.perturbed_children import PerturbedChildren
from sae_hacking.toy.data.tree import TreeSource
from sae_hacking.toy.data.tree_spec import PRESETS
from sae_hacking.toy.protocol import FeatureSource
from sae_hacking.toy.saes.topk import TopKSAE, TopKShape
from sae_hacking.toy.training.loop import TrainSettings, train
from sae_hacking.toy.training.schedule import Schedule


@dataclass(frozen=True)
class Task:
    name: str
    source: FeatureSource
    width: int
    k: int
    # What sae-lens's trainer samples from: its own generator, or a wrapper around ours.
    saelens_activations: Callable[[int], Tensor]


@dataclass(frozen=True)
class Measurement:
    samples_per_second: float
    mcc: float


def tree_task(device: torch.device, seed: int) -> Task:
    forest = PRESETS["25x3"]
    source = TreeSource.build(forest, 64, torch.Generator(device).manual_seed(seed))
    # Depth-first feature order: parent a at 4a, its children at 4a + 1 .. 4a + 3.
    roots = [
        HierarchyNode(
            feature_index=4 * a,
            children=[HierarchyNode(feature_index=4 * a + c) for c in (1, 2, 3)],
        )
        for a in range(25)
    ]
    probabilities = torch.tensor([0.16, 0.25, 0.25, 0.25] * 25, device=device)
    generator = ActivationGenerator(
        100, probabilities, modify_activations=hierarchy_modifier(roots), device=device
    )
    return Task("tree 25x3, 100 features, 64 dims", source, 100, 7, generator)


def original_task(device: torch.device, seed: int) -> Task:
    source = PerturbedChildren.random(30, 50, 0.4, 2, torch.Generator(device).manual_seed(seed))
    stream = torch.Generator(device).manual_seed(seed + 100)

    def magnitudes(batch_size: int) -> Tensor:
        return source.sample(batch_size, stream)[1]

    return Task("original, 30 parents x 2 children, 50 dims", source, 60, 2, magnitudes)


def mcc_of(decoder_EM: Tensor, features_NM: Tensor) -> float:
    return hungarian_mcc(cosine_matrix(features_NM.float(), decoder_EM.detach().float()).cpu())


def run_ours(task: Task, args: argparse.Namespace, device: torch.device, seed: int) -> Measurement:
    model_dim = task.source.features_NM.shape[1]
    sae = TopKSAE(
        TopKShape(model_dim, task.width, task.k), torch.Generator(device).manual_seed(seed)
    )
    eval_x_BM, _ = task.source.sample(4096, torch.Generator(device).manual_seed(seed + 1))
    batch_size = args.our_batch_size or args.batch_size
    steps = args.samples // batch_size
    settings = TrainSettings(steps, batch_size, args.our_lr or args.lr, Schedule(), log_every=steps)
    started = time.perf_counter()
    train(sae, task.source, settings, torch.Generator(device).manual_seed(seed + 2), eval_x_BM)
    seconds = time.perf_counter() - started
    return Measurement(steps * batch_size / seconds, mcc_of(sae.W_dec_EM, task.source.features_NM))


def run_saelens(
    task: Task, args: argparse.Namespace, device: torch.device, seed: int
) -> Measurement:
    features_NM = task.source.features_NM
    num_features, model_dim = features_NM.shape
    torch.manual_seed(seed)
    dictionary = FeatureDictionary(num_features, model_dim, initializer=None, device=device)
    dictionary.feature_vectors.data = features_NM.clone()
    config = TopKTrainingSAEConfig(d_in=model_dim, d_sae=task.width, k=task.k, device=str(device))
    sae = TopKTrainingSAE(config)
    steps = args.samples // args.batch_size
    started = time.perf_counter()
    train_toy_sae(
        sae,
        dictionary,
        task.saelens_activations,  # pyright: ignore[reportArgumentType]
        training_samples=steps * args.batch_size,
        batch_size=args.batch_size,
        lr=args.lr,
        device=device,
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return Measurement(steps * args.batch_size / seconds, mcc_of(sae.W_dec, features_NM))


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--samples", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--our-batch-size", type=int, help="this toolkit's batch [--batch-size]")
    parser.add_argument("--our-lr", type=float, help="this toolkit's learning rate [--lr]")
    parser.add_argument("--seeds", type=int, default=1, help="repeats; the table shows medians")
    parser.add_argument("--tasks", default="tree,original")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(args.device)
    builders = {"tree": tree_task, "original": original_task}
    rows: list[tuple[str, list[Measurement], list[Measurement]]] = []
    for name in args.tasks.split(","):
        ours: list[Measurement] = []
        theirs: list[Measurement] = []
        for seed in range(args.seeds):
            task = builders[name](device, seed)
            theirs.append(run_saelens(task, args, device, seed))
            ours.append(run_ours(task, args, device, seed))
        rows.append((builders[name](device, 0).name, ours, theirs))
    print(
        f"device {device}, one torch thread, {args.samples:,} samples, batch {args.batch_size}, "
        f"lr {args.lr} (ours: batch {args.our_batch_size or args.batch_size}, "
        f"lr {args.our_lr or args.lr}), medians of {args.seeds} seed(s)"
    )
    header = "| task | sae-lens samples/s | ours samples/s | speed-up | sae-lens MCC | ours MCC |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|")
    for task_name, ours, theirs in rows:
        ours_rate = median([m.samples_per_second for m in ours])
        theirs_rate = median([m.samples_per_second for m in theirs])
        # The speed-up is the median of per-seed ratios: each pair ran back to back, so a
        # shared machine's load moves both of a pair together.
        pairs = zip(ours, theirs, strict=True)
        ratio = median([o.samples_per_second / t.samples_per_second for o, t in pairs])
        print(
            f"| {task_name} | {theirs_rate:,.0f} | {ours_rate:,.0f} | {ratio:.2f}x "
            f"| {median([m.mcc for m in theirs]):.3f} | {median([m.mcc for m in ours]):.3f} |"
        )
    print("per seed (sae-lens / ours): samples/s, MCC")
    for task_name, ours, theirs in rows:
        for seed, (o, t) in enumerate(zip(ours, theirs, strict=True)):
            print(
                f"  {task_name}, seed {seed}: {t.samples_per_second:,.0f} / "
                f"{o.samples_per_second:,.0f}, {t.mcc:.3f} / {o.mcc:.3f}"
            )


if __name__ == "__main__":
    main()

"""First-letter absorption: this toolkit against SAEBench 0.6 itself, same model, SAEs, words and prompts.

SAEBench (``sae-bench`` 0.6.0) pins numpy < 2, so it runs in its own virtual environment (made
once with uv, ``--venv``, default ``.saebench-venv``) through ``saebench_worker.py``; the two
sides exchange files. The inputs: the planted first-letter model (``first_letter.plant``: 30 words
a letter, absorption planted at 1.0, 0.5 and 0.3 on five letters) saved as a model directory, its
absorbing SAE and an absorption-free one as sae-lens directories, and this toolkit's word split
and prompts, which SAEBench's probe data and absorption step both use.

Prints, per SAE and letter, SAEBench's and this toolkit's absorption fraction and full-absorption
rate (the whole pipelines: each trains its own probes), the metric alone (SAEBench's calculator
given this toolkit's probe and main latents: per word), whether both read the same activations,
and both wall times with one torch thread (imports excluded on both sides).

    uv run benchmarks/first_letter_vs_saebench.py [--venv DIR] [--work-dir DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from statistics import mean

import numpy as np
import torch

from sae_hacking.first_letter.activations import word_activations
from sae_hacking.first_letter.config import FirstLetterConfig
from sae_hacking.first_letter.plant import save_letter_plant
from sae_hacking.first_letter.probe import batch_size_for
from sae_hacking.first_letter.run import FirstLetterResult, run, task_prompts
from sae_hacking.llm.models import load_model

SAEBENCH = "sae-bench==0.6.0"
REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "saebench_worker.py"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# Whole pipelines, per letter: each side trains its own letter probe (different random streams),
# and a partial absorber's fraction moves with the probe's weight on the part of the activation
# every word shares (SAEBench's denominator x . u includes it, no latent carries it).
PIPELINE_TOLERANCE = 0.05
# The metric alone, per word: the same formula in float32 on the same inputs.
METRIC_TOLERANCE = 1e-4


def ensure_venv(venv: Path) -> Path:
    """The venv's python, making the venv and installing sae-bench into it the first time."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing {SAEBENCH} into {venv} (once)", flush=True)
        subprocess.run(["uv", "venv", "--python", "3.11", str(venv)], check=True)
        subprocess.run(["uv", "pip", "install", "--python", str(python), SAEBENCH], check=True)
    return python


def worker_inputs(config: FirstLetterConfig, result: FirstLetterResult, tokenizer) -> dict:
    train, test = task_prompts(tokenizer, config)
    first = result.saes[0]
    return {
        "seed": config.seed,
        "hook": result.hook_name,
        "layer": int(result.hook_name.split(".")[1]),
        "template": config.prompt_template,
        "icl_examples": config.icl_examples,
        "train": [{"word": p.word, "text": p.text, "letter": p.letter} for p in train],
        "test": [{"word": p.word, "text": p.text, "letter": p.letter} for p in test],
        "sae_ids": list(config.ids),
        "llm_batch_size": config.batch_size,
        # the batch sizes this toolkit used (SAEBench's, shrunk on small vocabularies)
        "probe_batch_size": batch_size_for(len(train), config.probe_batch_size),
        "latent_probe_batch_size": batch_size_for(len(train), config.latent_probe_batch_size),
        "epochs": config.probe_epochs,
        "max_k": config.max_k,
        "jump": config.f1_jump_threshold,
        "our_probe_weight": result.probe.weight_CD.tolist(),
        "our_main_latents": {s.sae_id: [r.main_latents for r in s.letters] for s in result.saes},
        "our_true_positives": {r.letter: list(r.word_fractions) for r in first.letters},
    }


def activation_difference(config: FirstLetterConfig, hook: str, saved: Path) -> float:
    """Max |this toolkit's word activations - SAEBench's| over the train and test prompts."""
    model = load_model(config.model)
    train, test = task_prompts(model.tokenizer, config)
    data = np.load(saved)
    worst = 0.0
    for prompts, name in ((train, "X_train"), (test, "X_test")):
        ours, found = word_activations(model, prompts, config.prompt_template, hook, 64)
        assert bool(found.all())
        worst = max(worst, float((ours - torch.from_numpy(data[name])).abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--venv", type=Path, default=REPO / ".saebench-venv")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--words-per-letter", type=int, default=30)
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    torch.set_num_threads(1)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="first_letter_vs_saebench_"))
    plant = save_letter_plant(work, words_per_letter=args.words_per_letter)
    config = FirstLetterConfig(
        model=str(plant.model_dir),
        sae_release=str(plant.sae_dir),
        sae_ids=plant.sae_ids,
        device="cpu",
        threads=1,
        ablation=False,
        output_dir=work / "ours",
    )
    import matplotlib.pyplot  # noqa: F401  (the report's import, excluded like SAEBench's imports)

    ours = run(config)
    with_paper = run(replace(config, ablation=True))
    from transformers import AutoTokenizer

    inputs = worker_inputs(config, ours, AutoTokenizer.from_pretrained(str(plant.model_dir)))
    (work / "inputs.json").write_text(json.dumps(inputs))
    log = work / "saebench.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(python), str(WORKER), str(work)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ONE_THREAD},
        )
    if done.returncode:
        sys.exit(f"SAEBench's side failed; its output is in {log}")
    theirs = json.loads((work / "saebench.json").read_text())

    print(
        f"\nsame inputs: max |activation difference| {activation_difference(config, ours.hook_name, Path(theirs['activations'])):.2e}"
    )
    pipeline_diffs, full_diffs, metric_diffs, full_disagreements = [], [], [], 0
    for sae in ours.saes:
        print(
            f"\n{sae.sae_id}: letter, true positives (ours/SAEBench), main latents, absorption fraction, full-absorption rate"
        )
        print(
            "  letter   TP         main latents            fraction ours  SAEBench  |diff|   full ours  SAEBench"
        )
        for r in sae.letters:
            other = theirs["letters"][sae.sae_id].get(r.letter)
            if other is None and not r.probe_true_positives:
                continue
            other = other or {
                "probe_true_positives": 0,
                "main_latents": [],
                "absorption_fraction": 0.0,
                "full_absorption_rate": 0.0,
            }
            diff = abs(r.absorption_fraction - other["absorption_fraction"])
            full_diff = abs(r.full_absorption_rate - other["full_absorption_rate"])
            pipeline_diffs.append(diff)
            full_diffs.append(full_diff)
            mains = f"{r.main_latents}/{other['main_latents']}"
            print(
                f"  {r.letter}  {r.probe_true_positives:4d}/{other['probe_true_positives']:<4d}  {mains:28s}"
                f"  {r.absorption_fraction:8.4f}  {other['absorption_fraction']:8.4f}  {diff:7.4f}"
                f"   {r.full_absorption_rate:8.4f}  {other['full_absorption_rate']:8.4f}"
            )
            words = theirs["metric_only"][sae.sae_id].get(r.letter, {})
            for word, fraction in r.word_fractions.items():
                their_fraction, _ = words[word]
                metric_diffs.append(abs(fraction - their_fraction))
            full_disagreements += abs(r.full_absorptions - sum(full for _, full in words.values()))
    print(
        f"\nwhole pipelines, per letter: absorption fraction max |diff| {max(pipeline_diffs):.4f},"
        f" mean {mean(pipeline_diffs):.4f}; full-absorption rate max |diff| {max(full_diffs):.4f},"
        f" mean {mean(full_diffs):.4f} (tolerance {PIPELINE_TOLERANCE})"
    )
    print(
        f"the metric alone (same probe and main latents), per word: max |diff| {max(metric_diffs):.2e}"
        f" over {len(metric_diffs)} words; full-absorption counts differing: {full_disagreements}"
        f" (tolerance {METRIC_TOLERANCE})"
    )
    saebench_seconds = theirs["seconds"]["total"]
    print("\nwall time, one torch thread, two SAEs (imports excluded):")
    print(
        f"  {'SAEBench 0.6.0 (setup + per SAE)':48s} {saebench_seconds:8.1f} s  (setup {theirs['seconds']['setup']:.1f} s, per SAE "
        + ", ".join(f"{v:.1f}" for v in theirs["seconds"]["per_sae"].values())
        + ")"
    )
    print(
        f"  {'this toolkit, SAEBench metric':48s} {ours.seconds:8.1f} s  {saebench_seconds / ours.seconds:5.1f}x faster"
    )
    print(
        f"  {'this toolkit, + paper criterion (exact ablation)':48s} {with_paper.seconds:8.1f} s  {saebench_seconds / with_paper.seconds:5.1f}x faster"
    )
    ok = max(pipeline_diffs) <= PIPELINE_TOLERANCE and max(metric_diffs) <= METRIC_TOLERANCE
    ok = ok and full_disagreements == 0
    print("\nagreement within tolerance:", "yes" if ok else "NO")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

"""The hunt's methods on the planted language model, through the three scripts, against the truth.

Builds the planted case (``llm/planted_hunt.py``: 24 fully absorbing words, ten letters with two
absorbers each; with ``--trained`` a trained ablator and reader on 3,000 prompts), runs gemma_cooccurrences -> gemma_selective_ablate -> look_for_pairs, and prints
precision / recall / F1 of: the original's scoring (sign patterns, cosine 0.5, never
co-occurring), decoder cosine alone and with the co-occurrence bar, co-occurrence alone, effect
cosine with the co-occurrence bar, and the ranked score (at the default generality ratio and at
others, 1 applying no generality rule). All over the latents the ablation step ablated.

    uv run benchmarks/hunt_planted.py
    uv run benchmarks/hunt_planted.py --effect-space activations   # effects in the reader hook
    uv run benchmarks/hunt_planted.py --trained    # trained ablator and reader, measured truth
"""

import argparse
import json
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from sae_hacking.gemma_cooccurrences import app as cooccurrence_app
from sae_hacking.gemma_selective_ablate import app as ablate_app
from sae_hacking.io.cooccurrence_results import load_cooccurrence
from sae_hacking.io.effects import EffectStore
from sae_hacking.llm.planted_hunt import write_planted_hunt, write_trained_planted_hunt
from sae_hacking.llm.saes import load_sae_from_disk
from sae_hacking.look_for_pairs import app as pairs_app

DECODER_COSINE = 0.45


RATIOS = (1.0, 1.5, 3.0, 5.0)


def invoke(app: object, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)  # pyright: ignore[reportArgumentType]
    if result.exit_code != 0:
        raise SystemExit(result.output)


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def scored(found: set[tuple[int, int]], truth: frozenset[tuple[int, ...]]) -> tuple[str, ...]:
    hits = len(found & truth)
    p, r = hits / max(len(found), 1), hits / len(truth)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return f"{len(found)}", f"{p:.2f}", f"{r:.2f}", f"{f1:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--trained", action="store_true")
    parser.add_argument("--effect-space", default="latents")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        case = write_trained_planted_hunt(root) if args.trained else write_planted_hunt(root)
        truth = frozenset(tuple(sorted(p)) for p in case.truth)
        model = ["--model", str(case.model_dir), "--device", "cpu"]
        corpus = ["--dataset-path", str(case.corpus), "--max-tokens-in-prompt", "32"]
        sae = ["--sae-release", str(case.ablator_dir), "--batch-size", "64"]
        invoke(cooccurrence_app, [*model, *corpus, *sae, "--output-dir", str(root / "cooc")])
        cooc = only_run(root / "cooc")
        saes = ["--ablator-sae-release", str(case.ablator_dir)]
        saes += ["--reader-sae-release", str(case.reader_dir), "--cooccurrence-dir", str(cooc)]
        # Every prompt of the corpus is ablated (600 hand-built, 3,000 trained).
        prompts = len(case.corpus.read_text(encoding="utf-8").splitlines())
        sizes = ["--n-prompts", str(prompts), "--abridge-ablations-to", "40", "--batch-size", "32"]
        sizes += ["--effect-space", args.effect_space]
        invoke(ablate_app, [*model, *corpus, *saes, *sizes, "--output-dir", str(root / "abl")])
        ablation = only_run(root / "abl")

        def search(name: str, *flags: str) -> set[tuple[int, int]]:
            out = root / name
            inputs = ["--ablation-dir", str(ablation), "--cooccurrence-dir", str(cooc)]
            invoke(pairs_app, [*inputs, "--device", "cpu", *flags, "--output-dir", str(out)])
            pairs = json.loads((only_run(out) / "pairs.json").read_text(encoding="utf-8"))
            return {
                (
                    min(p["first"]["latent"], p["second"]["latent"]),
                    max(p["first"]["latent"], p["second"]["latent"]),
                )
                for p in pairs["pairs"]
            }

        found = {
            "original": search("original", "--sign", "--cosine-sim-threshold", "0.5"),
            "effect+never": search("effect", "--cosine-sim-threshold", str(DECODER_COSINE)),
            "ranked": search("ranked", "--scoring", "ranked"),
        }
        # The generality rule's sensitivity: 1 applies no rule (siblings by distinct tokens only).
        for ratio in RATIOS:
            found[f"ranked, ratio {ratio:g}"] = search(
                f"ratio{ratio:g}", "--scoring", "ranked", "--generality-ratio", str(ratio)
            )
        # Decoder cosine and co-occurrence alone, over the same ablated latents.
        latents_R = EffectStore(ablation / "effects", "--ablation-dir").latents_R
        decoder_EM = load_sae_from_disk(case.ablator_dir).W_dec.detach()
        unit_RM = torch.nn.functional.normalize(decoder_EM[latents_R], dim=1)
        i_P, j_P = torch.triu_indices(len(latents_R), len(latents_R), offset=1)
        first_P, second_P = latents_R[i_P], latents_R[j_P]
        cosine_P = (unit_RM[i_P] * unit_RM[j_P]).sum(dim=1)
        results = load_cooccurrence(cooc)
        never_P = results.pair_counts(first_P, second_P) == 0

        def pairs(keep_P: torch.Tensor) -> set[tuple[int, int]]:
            return set(zip(first_P[keep_P].tolist(), second_P[keep_P].tolist(), strict=True))

        found["decoder"] = pairs(cosine_P >= DECODER_COSINE)
        found["decoder+never"] = pairs((cosine_P >= DECODER_COSINE) & never_P)
        found["never"] = pairs(never_P)
    kind = "trained SAEs, measured" if args.trained else "hand-built SAEs, planted"
    table = Table(
        title=f"planted language model, {kind}: {len(truth)} absorbed pairs, "
        f"effects in reader {args.effect_space}"
    )
    for column in ("method", "found", "P", "R", "F1"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for name in found:
        table.add_row(name, *scored(found[name], truth))
    Console(width=120).print(table)


if __name__ == "__main__":
    main()

"""SAEBench 0.6's absorption eval on inputs written by first_letter_vs_saebench.py (runs in its own venv).

Reads ``WORK/inputs.json`` (the words, the exact train/test prompts, the hook, the probe settings,
and the toolkit's own probe and main latents), the model directory ``WORK/model`` and the sae-lens
directories ``WORK/saes/ID``, and writes ``WORK/saebench.json``. Imports only sae-bench and its
dependencies. Two passes:

1. SAEBench's pipeline, timed: the letter probe (``gen_and_save_df_acts_probing``,
   ``train_linear_probe_for_task``, ``save_probe_and_data``: ``create_and_train_probe`` less its
   own vocabulary draw), then per SAE ``run_k_sparse_probing_experiment`` and
   ``run_feature_absortion_experiment`` and ``main._aggregate_results_df``, the steps of
   ``main.run_eval``. Fed our inputs in two places: ``FeatureAbsorptionCalculator._build_prompts``
   returns our prompt of each word (SAEBench draws fresh examples there), and its model answers
   the request for ``blocks.{layer}.hook_resid_post`` with the SAE's hook, which SAEBench
   hard-codes there (the planted SAEs read ``blocks.0.hook_resid_pre``).
2. The metric alone: ``FeatureAbsorptionCalculator.calculate_absorption`` with the toolkit's
   probe direction and main latents on the toolkit's true-positive words.

    WORK/venv/bin/python benchmarks/saebench_worker.py WORK
"""
# sae-bench is installed only in its own venv, not in the project's
# pyright: reportMissingImports=false

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

TOKEN_POSITION = -6  # the word in "{word} has the first letter:", SAEBench's default


class AliasedHook:
    """The model, reading ``hook`` when SAEBench's calculator asks for ``alias``."""

    def __init__(self, model: Any, hook: str, alias: str) -> None:
        self.model, self.hook, self.alias = model, hook, alias

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def run_with_cache(self, inputs: Any, names_filter: list[str]) -> tuple[Any, dict]:
        if names_filter != [self.alias]:
            raise ValueError(f"SAEBench asked for {names_filter}, expected [{self.alias}]")
        logits, cache = self.model.run_with_cache(inputs, names_filter=[self.hook])
        return logits, {self.alias: cache[self.hook]}


def load_model(path: Path) -> Any:
    """The planted model with plain transformer-lens code: config JSON, safetensors, tokenizer."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    raw = json.loads((path / "transformer_lens_config.json").read_text())
    raw["dtype"] = getattr(torch, raw.get("dtype", "float32"))
    known = HookedTransformerConfig.__dataclass_fields__
    cfg = HookedTransformerConfig(
        **{k: v for k, v in raw.items() if k in known and k not in ("n_params", "d_vocab_out")}
    )
    model = HookedTransformer(
        cfg, tokenizer=AutoTokenizer.from_pretrained(str(path)), default_padding_side="left"
    )
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    model.eval()
    return model


def load_sae(path: Path) -> Any:
    """A sae-lens directory, decoder norms folded as SAEBench's ``load_and_format_sae`` does."""
    from sae_lens import SAE

    sae = SAE.load_from_disk(str(path), device="cpu")
    sae.fold_W_dec_norm()
    return sae.eval()


def main() -> None:
    work = Path(sys.argv[1])
    torch.set_num_threads(1)
    from sae_bench.evals.absorption import feature_absorption_calculator as calculator_module
    from sae_bench.evals.absorption.feature_absorption import (
        run_feature_absortion_experiment,
    )
    from sae_bench.evals.absorption.k_sparse_probing import run_k_sparse_probing_experiment
    from sae_bench.evals.absorption.main import _aggregate_results_df
    from sae_bench.evals.absorption.probing import (
        gen_and_save_df_acts_probing,
        save_probe_and_data,
        train_linear_probe_for_task,
    )
    from sae_bench.evals.absorption.prompting import SpellingPrompt, first_letter
    from sae_bench.evals.absorption.vocab import LETTERS

    inputs = json.loads((work / "inputs.json").read_text())
    torch.manual_seed(inputs["seed"])
    hook, layer, template = inputs["hook"], inputs["layer"], inputs["template"]
    prompts = inputs["train"] + inputs["test"]
    by_word = {p["word"].strip(): p["text"] for p in prompts}

    def our_prompts(_self: Any, words: list[str]) -> list[SpellingPrompt]:
        return [
            SpellingPrompt(base=by_word[w.strip()], answer=first_letter(w), word=w) for w in words
        ]

    calculator_class = calculator_module.FeatureAbsorptionCalculator
    calculator_class._build_prompts = our_prompts

    def dataset(split: str) -> list[tuple[Any, int]]:
        return [
            (
                SpellingPrompt(base=p["text"], answer=first_letter(p["word"]), word=p["word"]),
                p["letter"],
            )
            for p in inputs[split]
        ]

    out = work / "saebench"
    probes_dir = out / "probes"
    started = time.perf_counter()
    model = load_model(work / "model")
    saes = {sae_id: load_sae(work / "saes" / sae_id) for sae_id in inputs["sae_ids"]}
    aliased = AliasedHook(model, hook, f"blocks.{layer}.hook_resid_post")
    layer_dir = probes_dir / model.cfg.model_name / f"layer_{layer}"
    train_df, test_df, train_acts, test_acts = gen_and_save_df_acts_probing(
        model,
        dataset("train"),
        dataset("test"),
        path=layer_dir,
        hook_point=hook,
        batch_size=inputs["llm_batch_size"],
        position_idx=TOKEN_POSITION,
    )
    probe, probe_data = train_linear_probe_for_task(
        train_df,
        test_df,
        torch.device("cpu"),
        train_acts,
        test_acts,
        batch_size=inputs["probe_batch_size"],
        num_epochs=inputs["epochs"],
    )
    save_probe_and_data(probe, probe_data, layer_dir)
    setup_seconds = time.perf_counter() - started

    results: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for sae_id, sae in saes.items():
        began = time.perf_counter()
        # the arguments main.run_eval passes to both steps
        common = {
            "sae": sae,
            "layer": layer,
            "sae_name": sae_id,
            "max_k_value": inputs["max_k"],
            "prompt_template": template,
            "prompt_token_pos": TOKEN_POSITION,
            "device": "cpu",
            "probes_dir": probes_dir,
            "force": True,
        }
        metrics_df = run_k_sparse_probing_experiment(
            model=model,
            experiment_dir=out / "k_sparse_probing",
            f1_jump_threshold=inputs["jump"],
            k_sparse_probe_batch_size=inputs["latent_probe_batch_size"],
            k_sparse_probe_num_epochs=inputs["epochs"],
            precalc_k_sparse_probe_sae_acts=True,
            verbose=False,
            **common,
        )
        raw_df = run_feature_absortion_experiment(
            model=aliased,
            experiment_dir=out / "feature_absorption",
            sparse_probing_experiment_dir=out / "k_sparse_probing",
            feature_split_f1_jump_threshold=inputs["jump"],
            **common,
        )
        agg_df = _aggregate_results_df(raw_df)
        seconds[sae_id] = time.perf_counter() - began
        letters = {}
        for _, row in agg_df.iterrows():
            letter = str(row["letter"])
            words = raw_df[raw_df["letter"] == letter]
            letters[letter] = {
                "f1_probe": float(metrics_df[metrics_df["letter"] == letter]["f1_probe"].item()),
                "main_latents": [int(x) for x in row["split_feats"]],
                "probe_true_positives": int(row["num_probe_true_positives"]),
                "absorption_fraction": float(row["mean_absorption_fraction"]),
                "full_absorption_rate": float(row["full_absorption_rate"]),
                "word_fractions": dict(
                    zip(words["token"], map(float, words["absorption_fraction"]), strict=True)
                ),
            }
        results[sae_id] = letters
    total_seconds = time.perf_counter() - started

    # The metric alone: the toolkit's probe direction and main latents, its true-positive words.
    weight_CM = torch.tensor(inputs["our_probe_weight"])
    metric_only: dict[str, Any] = {}
    for sae_id, sae in saes.items():
        calculator = calculator_class(
            model=aliased,
            icl_word_list=[p["word"] for p in prompts],
            max_icl_examples=inputs["icl_examples"],
            base_template=template,
            word_token_pos=TOKEN_POSITION,
        )
        per_letter = {}
        for c, letter in enumerate(LETTERS):
            words = inputs["our_true_positives"][letter]
            main_latents = inputs["our_main_latents"][sae_id][c]
            if not words:
                continue
            result = calculator.calculate_absorption(
                sae,
                words=words,
                probe_direction=weight_CM[c],
                main_feature_ids=main_latents,
                layer=layer,
                show_progress=False,
            )
            per_letter[letter] = {
                r.word: [float(r.absorption_fraction), bool(r.is_full_absorption)]
                for r in result.word_results
            }
        metric_only[sae_id] = per_letter

    (work / "saebench.json").write_text(
        json.dumps(
            {
                "seconds": {"setup": setup_seconds, "per_sae": seconds, "total": total_seconds},
                "letters": results,
                "metric_only": metric_only,
                "activations": str(layer_dir / "data.npz"),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()

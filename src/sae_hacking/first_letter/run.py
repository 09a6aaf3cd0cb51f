"""The first-letter absorption run: load, check, make the run directory, evaluate every SAE, report."""

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress

from sae_hacking.devices import command_line, resolve_device
from sae_hacking.errors import UserInputError
from sae_hacking.first_letter.activations import word_activations
from sae_hacking.first_letter.config import FirstLetterConfig
from sae_hacking.first_letter.evaluate import SaeResult, Shared, evaluate_sae
from sae_hacking.first_letter.exact_ablation import letter_token_ids
from sae_hacking.first_letter.metric import Thresholds
from sae_hacking.first_letter.probe import (
    Probe,
    batch_size_for,
    f1_columns,
    one_hot,
    train_probe,
)
from sae_hacking.first_letter.report import write_report
from sae_hacking.first_letter.saes import load_saes
from sae_hacking.first_letter.vocab import Prompt, build_prompts, split_words, task_words
from sae_hacking.io.rundir import default_output_dir, make_run_dir, write_config
from sae_hacking.llm.models import load_model, model_config, parse_dtype

SCRIPT = "first_letter_absorption"
console = Console(stderr=True)


@dataclass(frozen=True)
class FirstLetterResult:
    run_dir: Path
    hook_name: str
    saes: list[SaeResult]
    seconds: float
    probe: Probe  # the letter probe every SAE shares


def task_prompts(tokenizer: Any, config: FirstLetterConfig) -> tuple[list[Prompt], list[Prompt]]:
    """The train and test prompts of a run: what ``config.seed`` draws, in the run's order."""
    rng = random.Random(config.seed)
    words = task_words(tokenizer, config.max_words, rng)
    train_words, test_words = split_words(words, config.train_fraction, rng)
    if not train_words or not test_words:
        raise UserInputError(
            "--max-words", f"{len(words)} words cannot fill a train and a test set"
        )
    return (
        build_prompts(train_words, config.prompt_template, config.icl_examples, rng),
        build_prompts(test_words, config.prompt_template, config.icl_examples, rng),
    )


def thresholds_of(config: FirstLetterConfig) -> Thresholds:
    return Thresholds(
        absorber_cosine=config.absorber_cosine,
        full_absorption_cosine=config.full_absorption_cosine,
        projection_threshold=config.projection_threshold,
        max_absorbers=config.max_absorbers,
    )


def run(config: FirstLetterConfig) -> FirstLetterResult:
    """Evaluate every SAE of ``config`` and write the run directory; return its results."""
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    dtype = parse_dtype(config.dtype)
    model_config(config.model)  # a bad name fails here, before any download
    model = load_model(config.model, device, dtype)
    saes, hook_name = load_saes(model, config.release, config.ids, device)
    train_prompts, test_prompts = task_prompts(model.tokenizer, config)
    letter_ids = letter_token_ids(model.tokenizer) if config.ablation else None

    run_dir = make_run_dir(config.output_dir or default_output_dir(), SCRIPT)
    write_config(run_dir, config, command_line())
    if config.ablation and letter_ids is None:  # said once the run is sure to go ahead
        console.print("the answers ' A'..' Z' are not single tokens: no ablation criterion")
    with Progress(console=console, transient=True) as progress:
        train_acts, train_found = word_activations(
            model, train_prompts, config.prompt_template, hook_name, config.batch_size, progress
        )
        test_acts, test_found = word_activations(
            model, test_prompts, config.prompt_template, hook_name, config.batch_size, progress
        )
    lost = int((~train_found).sum() + (~test_found).sum())
    if lost:
        console.print(f"{lost} words are merged with their neighbours by the tokenizer: left out")
    train_acts = train_acts[train_found.to(train_acts.device)]
    test_acts = test_acts[test_found.to(test_acts.device)]
    test_prompts = [p for p, keep in zip(test_prompts, test_found.tolist(), strict=True) if keep]
    train_labels = torch.tensor(
        [p.letter for p, keep in zip(train_prompts, train_found.tolist(), strict=True) if keep],
        device=train_acts.device,
    )
    test_labels = torch.tensor([p.letter for p in test_prompts], device=test_acts.device)

    generator = torch.Generator().manual_seed(config.seed)
    probe = train_probe(
        lambda index: train_acts[index],
        train_labels,
        train_acts.shape[1],
        26,
        config.probe_epochs,
        batch_size_for(train_acts.shape[0], config.probe_batch_size),
        generator,
    )
    predicted = probe.scores(test_acts) > 0
    probe_f1 = f1_columns(predicted, one_hot(test_labels, 26).bool())
    true_positive = predicted.gather(1, test_labels[:, None]).squeeze(1)
    shared = Shared(
        model=model,
        hook_name=hook_name,
        template=config.prompt_template,
        train_acts_NM=train_acts,
        train_labels_N=train_labels,
        test_prompts=test_prompts,
        test_acts_TM=test_acts,
        test_labels_T=test_labels,
        probe=probe,
        probe_f1_C=probe_f1.cpu(),
        true_positive_T=true_positive,
        letter_ids=letter_ids,
    )
    results = []
    for sae_id, sae in zip(config.ids, saes, strict=True):
        console.print(f"evaluating {sae_id}", highlight=False)
        results.append(
            evaluate_sae(
                shared,
                sae,
                sae_id,
                thresholds_of(config),
                max_k=config.max_k,
                jump=config.f1_jump_threshold,
                epochs=config.probe_epochs,
                batch_size=batch_size_for(train_acts.shape[0], config.latent_probe_batch_size),
                l1=config.l1_decay,
                min_probe_f1=config.min_probe_f1,
                ablation_delta=config.ablation_delta,
                generator=generator,
            )
        )
    seconds = time.perf_counter() - started
    write_report(run_dir, config, hook_name, results, seconds)
    return FirstLetterResult(run_dir, hook_name, results, seconds, probe)

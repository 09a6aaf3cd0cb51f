"""One SAE's evaluation, given the shared activations and probe: splitting, absorption, verdicts."""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sae_hacking.first_letter.exact_ablation import paper_criterion
from sae_hacking.first_letter.ksparse import k_sparse_probing, latent_ranking
from sae_hacking.first_letter.metric import Thresholds, probe_cosines, word_absorption
from sae_hacking.first_letter.probe import Probe
from sae_hacking.first_letter.saes import FoldedSae
from sae_hacking.first_letter.vocab import LETTERS, Prompt

# Precompute all latents when they fit in this many floats; else encode per batch, as SAEBench.
DENSE_LIMIT = 2**27
CHUNK = 1024


@dataclass(frozen=True)
class Shared:
    """What every SAE of a run shares: prompts, hook activations, labels and the probe."""

    model: Any
    hook_name: str
    template: str
    train_acts_NM: Float[Tensor, "N M"]
    train_labels_N: Int[Tensor, " N"]
    test_prompts: Sequence[Prompt]
    test_acts_TM: Float[Tensor, "T M"]
    test_labels_T: Int[Tensor, " T"]
    probe: Probe
    probe_f1_C: Float[Tensor, " C"]
    true_positive_T: Bool[Tensor, " T"]
    letter_ids: list[int] | None


@dataclass(frozen=True)
class Absorber:
    """A latent that absorbed a letter on some of its words."""

    latent: int
    words: int
    cosine: float
    examples: list[str]


@dataclass(frozen=True)
class LetterResult:
    letter: str
    probe_f1: float
    test_words: int
    probe_true_positives: int
    included: bool
    main_latents: list[int]
    split_count: int
    f1_by_k: list[float]
    absorption_fraction: float
    full_absorption_rate: float
    full_absorptions: int
    paper_absorption_rate: float | None
    absorbers: list[Absorber] = field(default_factory=list)
    word_fractions: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SaeResult:
    sae_id: str
    width: int
    neuronpedia_id: str | None
    letters: list[LetterResult]

    def mean(self, name: str) -> float | None:
        values = [getattr(r, name) for r in self.letters if r.included]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None


def encode_all(encode: Callable[[Tensor], Tensor], acts_NM: Tensor) -> Tensor:
    return torch.cat([encode(acts_NM[s : s + CHUNK]) for s in range(0, acts_NM.shape[0], CHUNK)])


def gathered(
    encode: Callable[[Tensor], Tensor], acts_NM: Tensor, ranking_CK: Tensor
) -> Float[Tensor, "N C K"]:
    return torch.cat(
        [encode(acts_NM[s : s + CHUNK])[:, ranking_CK] for s in range(0, acts_NM.shape[0], CHUNK)]
    )


def absorbers_by_count(
    fractions_T: Tensor, absorbers_TK: Tensor, words: list[str], cosine_E: Tensor
) -> list[Absorber]:
    """Every latent among some word's absorbers, most words first, with example words."""
    tally: Counter[int] = Counter()
    examples: dict[int, list[str]] = {}
    for t in (fractions_T > 0).nonzero().flatten().tolist():
        for latent in absorbers_TK[t].tolist():
            if latent >= 0:
                tally[latent] += 1
                examples.setdefault(latent, []).append(words[t])
    return [
        Absorber(latent, n, float(cosine_E[latent]), examples[latent][:5])
        for latent, n in tally.most_common()
    ]


def evaluate_sae(
    shared: Shared,
    sae: FoldedSae,
    sae_id: str,
    thresholds: Thresholds,
    *,
    max_k: int,
    jump: float,
    epochs: int,
    batch_size: int,
    l1: float,
    min_probe_f1: float,
    ablation_delta: float,
    generator: torch.Generator,
) -> SaeResult:
    encode = sae.encode
    width = sae.width
    train = shared.train_acts_NM
    with torch.no_grad():
        if train.shape[0] * width <= DENSE_LIMIT:
            dense_NE = encode_all(encode, train)

            def rows(index_B: Tensor) -> Tensor:
                return dense_NE[index_B]
        else:

            def rows(index_B: Tensor) -> Tensor:
                with torch.no_grad():
                    return encode(train[index_B])

    ranking_CK, _ = latent_ranking(
        rows, shared.train_labels_N, width, max_k, epochs, batch_size, l1, generator
    )
    with torch.no_grad():
        splits = k_sparse_probing(
            gathered(encode, train, ranking_CK),
            shared.train_labels_N,
            gathered(encode, shared.test_acts_TM, ranking_CK),
            shared.test_labels_T,
            ranking_CK,
            jump,
        )
    decoder_EM = sae.decoder_EM
    letters = []
    for c, letter in enumerate(LETTERS):
        words_T = shared.test_labels_T == c
        chosen_T = words_T & shared.true_positive_T
        index = chosen_T.nonzero().flatten()
        main = splits.main_latents[c]
        direction_M = shared.probe.weight_CD[c].float()
        cosine_E = probe_cosines(direction_M, decoder_EM)
        prompts = [shared.test_prompts[i] for i in index.tolist()]
        words = [p.word for p in prompts]
        n = len(prompts)
        fraction, full, paper = 0.0, 0, None
        absorbers: list[Absorber] = []
        word_fractions: dict[str, float] = {}
        if n:
            acts_TM = shared.test_acts_TM[index]
            with torch.no_grad():
                scores = word_absorption(
                    encode_all(encode, acts_TM), acts_TM, direction_M, cosine_E, main, thresholds
                )
            fraction = float(scores.fraction_T.sum()) / n
            full = int(scores.full_T.sum())
            absorbers = absorbers_by_count(scores.fraction_T, scores.absorbers_TK, words, cosine_E)
            word_fractions = dict(zip(words, scores.fraction_T.tolist(), strict=True))
            if shared.letter_ids is not None:
                verdicts = paper_criterion(
                    shared.model,
                    sae,
                    prompts,
                    shared.template,
                    shared.hook_name,
                    main,
                    cosine_E,
                    shared.letter_ids,
                    thresholds.full_absorption_cosine,
                    ablation_delta,
                )
                paper = float(verdicts.absorbed_T.sum()) / n
        probe_f1 = float(shared.probe_f1_C[c])
        letters.append(
            LetterResult(
                letter=letter,
                probe_f1=probe_f1,
                test_words=int(words_T.sum()),
                probe_true_positives=n,
                included=probe_f1 > min_probe_f1 and n > 0,
                main_latents=main,
                split_count=splits.split_count(c),
                f1_by_k=splits.f1_CK[c].tolist(),
                absorption_fraction=fraction,
                full_absorption_rate=full / n if n else 0.0,
                full_absorptions=full,
                paper_absorption_rate=paper,
                absorbers=absorbers,
                word_fractions=word_fractions,
            )
        )
    return SaeResult(sae_id, width, sae.neuronpedia_id, letters)

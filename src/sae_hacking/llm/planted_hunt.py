"""The absorption hunt's planted language-model case: model, ablator, reader, corpus and truth on disk.

``write_planted_hunt`` saves what the language-model scripts take: the planted model as a model
directory (``--model DIR``), the absorbing JumpReLU ablator at the embeddings and a reader SAE at
``blocks.1.hook_resid_post`` as sae-lens directories (``--sae-release DIR``), a corpus of one
prompt per line (``--dataset-path``), and ``truth.json`` with the planted (letter latent, word
latent) pairs. The reader is hand-built like the ablator: a JumpReLU latent per letter direction
and one per token's own direction, so the copy head's letter at the last token is read by exactly
one reader latent and cut off below its threshold.

``write_trained_planted_hunt`` saves the same case with trained SAEs instead: a BatchTopK ablator
trained on the model's embeddings over a corpus of Zipf-distributed words, whose absorption is
measured from its activations, and a BatchTopK reader trained on the later layer.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sae_hacking.llm.planted import (
    LETTERS,
    PlantedModel,
    PlantedSpec,
    absorbing_sae,
    build_planted_model,
    save_planted,
)

READER_HOOK = "blocks.1.hook_resid_post"
ABLATOR_HOOK = "blocks.0.hook_resid_pre"
TEMPLATE = "has the first letter:"


def letter_reader_sae(
    planted: PlantedModel, hook_name: str = READER_HOOK, threshold_fraction: float = 0.25
) -> Any:
    """A sae-lens JumpReLU SAE: latent ``i < 26`` reads letter ``i``, then one per word direction."""
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    spec = planted.spec
    assert spec.d_model is not None
    directions_EM = torch.cat([planted.letter_dirs_AM, planted.word_dirs_CM])
    width = directions_EM.shape[0]
    threshold_E = torch.cat(
        [
            torch.full((len(LETTERS),), threshold_fraction * spec.letter_norm),
            torch.full((planted.word_dirs_CM.shape[0],), threshold_fraction * spec.word_norm),
        ]
    )
    cfg = JumpReLUSAEConfig(
        d_in=spec.d_model,
        d_sae=width,
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(hook_name=hook_name, model_name="planted"),
    )
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(directions_EM.T)
        sae.W_dec.copy_(directions_EM)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.copy_(threshold_E)
    return sae


def planted_corpus(
    planted: PlantedModel, prompts: int, words_per_prompt: int, seed: int = 0
) -> list[str]:
    """Prompts of random words ending in the first-letter template, one line each.

    Every word is equally likely, so a letter latent fires about ``words_per_letter`` times as
    often as one word's latent, as a letter latent on a language model fires on many words.
    """
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(planted.words), (prompts, words_per_prompt), generator=generator)
    return [" ".join(planted.words[i] for i in row.tolist()) + f" {TEMPLATE}" for row in picks]


@dataclass(frozen=True)
class PlantedHunt:
    """Where the planted case lies on disk, and its truth."""

    model_dir: Path
    ablator_dir: Path
    reader_dir: Path
    corpus: Path
    truth: frozenset[tuple[int, int]]


def write_planted_hunt(
    root: Path,
    absorption: dict[str, float] | None = None,
    prompts: int = 600,
    words_per_prompt: int = 16,
    spec: PlantedSpec | None = None,
) -> PlantedHunt:
    """Build and save the planted case under ``root``.

    The default absorption (``default_absorption``): for the first ten letters the first two
    words absorb their letter fully (siblings: two absorbers of one letter), for the next four
    one word does.
    """
    planted = build_planted_model(spec or PlantedSpec())
    if absorption is None:
        absorption = default_absorption(planted)
    ablator = absorbing_sae(planted, absorption, hook_name=ABLATOR_HOOK)
    reader = letter_reader_sae(planted)
    model_dir, ablator_dir, reader_dir = root / "model", root / "ablator", root / "reader"
    save_planted(planted, model_dir)
    ablator.sae.save_model(ablator_dir)
    reader.save_model(reader_dir)
    corpus = root / "corpus.txt"
    lines = planted_corpus(planted, prompts, words_per_prompt)
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    truth = frozenset((letter, word) for letter, word, _ in ablator.absorbed_pairs)
    (root / "truth.json").write_text(
        json.dumps(
            {
                "absorbed_pairs": [
                    {"letter_latent": a, "word_latent": w, "strength": s}
                    for a, w, s in ablator.absorbed_pairs
                ]
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return PlantedHunt(model_dir, ablator_dir, reader_dir, corpus, truth)


def default_absorption(planted: PlantedModel) -> dict[str, float]:
    """Full absorption by two words of each of the first ten letters and one of the next four."""
    by_letter: dict[str, list[str]] = {}
    for word, letter in zip(planted.words, planted.word_letters, strict=True):
        by_letter.setdefault(letter, []).append(word)
    absorption: dict[str, float] = {}
    for letter in LETTERS[:10]:
        absorption.update(dict.fromkeys(by_letter[letter][:2], 1.0))
    for letter in LETTERS[10:14]:
        absorption[by_letter[letter][0]] = 1.0
    return absorption


def zipf_corpus(
    planted: PlantedModel, prompts: int, words_per_prompt: int, exponent: float, seed: int = 0
) -> list[str]:
    """Prompts of words drawn with Zipf frequencies (the r-th most frequent word in a random order
    has weight ``r ** -exponent``), ending in the first-letter template."""
    generator = torch.Generator().manual_seed(seed)
    n_words = len(planted.words)
    rank_C = torch.randperm(n_words, generator=generator)
    weights_C = torch.zeros(n_words)
    weights_C[rank_C] = torch.arange(1, n_words + 1, dtype=torch.float32) ** -exponent
    picks = torch.multinomial(
        weights_C, prompts * words_per_prompt, replacement=True, generator=generator
    )
    rows = picks.view(prompts, words_per_prompt)
    return [" ".join(planted.words[i] for i in row.tolist()) + f" {TEMPLATE}" for row in rows]


@dataclass(frozen=True)
class HookActivations:
    """Activations at the ablator's and the reader's hooks on every real token (BOS left out)."""

    ablator_TM: Tensor
    reader_TM: Tensor
    tokens_T: Tensor


@torch.no_grad()
def hook_activations(planted: PlantedModel, lines: list[str]) -> HookActivations:
    cache: dict[str, Tensor] = {}

    def keep(acts: Tensor, hook: Any) -> None:
        cache[hook.name] = acts

    batch = planted.tokenizer(lines, return_tensors="pt", padding=True)
    tokens_BS, mask_BS = batch["input_ids"], batch["attention_mask"]
    with planted.model.hooks(fwd_hooks=[(ABLATOR_HOOK, keep), (READER_HOOK, keep)]):
        planted.model(tokens_BS, attention_mask=mask_BS)
    real_BS = mask_BS.bool() & (tokens_BS != planted.tokenizer.bos_token_id)
    return HookActivations(
        cache[ABLATOR_HOOK][real_BS], cache[READER_HOOK][real_BS], tokens_BS[real_BS]
    )


class ActivationRows:
    """A ``FeatureSource`` that draws rows of stored activations, for the toy trainer.

    Its nominal features are the planted letter and word directions (the trainer's logged
    metrics only).
    """

    def __init__(self, acts_TM: Tensor, features_NM: Tensor) -> None:
        self.acts_TM = acts_TM
        self._features_NM = features_NM

    @property
    def features_NM(self) -> Tensor:
        return self._features_NM

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows_B = torch.randint(self.acts_TM.shape[0], (batch_size,), generator=generator)
        return self.acts_TM[rows_B], torch.zeros(batch_size, self._features_NM.shape[0])


def train_batchtopk(
    source: ActivationRows, width: int, k: float, steps: int, generator: torch.Generator
) -> Any:
    """A BatchTopK SAE trained by the toy trainer on ``source``'s activations."""
    from sae_hacking.toy.saes.batchtopk import BatchTopKSAE, BatchTopKShape
    from sae_hacking.toy.training.loop import TrainSettings, train

    model_dim = source.acts_TM.shape[1]
    sae = BatchTopKSAE(BatchTopKShape(model_dim, width, k), generator)
    settings = TrainSettings(steps, 512, 3e-3, log_every=steps)
    train(sae, source, settings, generator, source.acts_TM[:2048])
    return sae.eval()


def save_for_sae_lens(sae: Any, hook_name: str, path: Path) -> Any:
    """Export a toy SAE to a sae-lens directory reading ``hook_name``; returns the sae-lens SAE."""
    from sae_hacking.toy.saes.export import to_sae_lens

    lens = to_sae_lens(sae)
    lens.cfg.metadata.hook_name = hook_name
    lens.cfg.metadata.model_name = "planted"
    lens.save_model(path)
    return lens


@torch.no_grad()
def measured_absorption(
    planted: PlantedModel, ablator: Any, acts: HookActivations, min_share: float = 0.5
) -> list[dict[str, Any]]:
    """The absorption a trained ablator has, read from its activations.

    Each letter's latent is the one whose decoder is closest to the letter direction among the
    latents that fire on the letter's words (a dead latent can absorb nothing, and no hunt that
    reads activations can see it; a letter whose own latent died is represented by the live
    latent nearest its direction, which its other words' latents then absorb). On the
    tokens of each word, its word latent is the latent (other than the letter's) that fires most;
    the pair (letter latent, word latent) is absorbing when, on at least ``min_share`` of the
    word's tokens, the word latent fires and the letter latent is silent, and the word latent's
    decoder carries the letter (cosine >= 0.1 with its direction, SAEBench's absorber bar).
    """
    codes_TE = ablator.encode(acts.ablator_TM)
    unit_EM = torch.nn.functional.normalize(ablator.W_dec.detach(), dim=1)
    cosine_EA = unit_EM @ planted.letter_dirs_AM.T
    # A latent that never fires on a letter's words is not that letter's latent, however close
    # its decoder: a letter latent that died in training leaves the letter to the live latents.
    fires_AE = torch.zeros(len(LETTERS), codes_TE.shape[1], dtype=torch.bool)
    for letter, token in zip(planted.word_letters, planted.word_token_ids, strict=True):
        fires_AE[LETTERS.index(letter)] |= (codes_TE[acts.tokens_T == token] > 0).any(dim=0)
    letter_latent_A = cosine_EA.masked_fill(~fires_AE.T, -2.0).argmax(dim=0)
    pairs = []
    for word, letter, token in zip(
        planted.words, planted.word_letters, planted.word_token_ids, strict=True
    ):
        on_T = acts.tokens_T == token
        if not bool(on_T.any()):
            continue
        letter_index = LETTERS.index(letter)
        letter_latent = int(letter_latent_A[letter_index])
        codes_DE = codes_TE[on_T]
        others_DE = codes_DE.clone()
        others_DE[:, letter_latent] = 0.0
        word_latent = int(others_DE.mean(dim=0).argmax())
        absorbed_D = (codes_DE[:, word_latent] > 0) & (codes_DE[:, letter_latent] <= 0)
        share = float(absorbed_D.float().mean())
        carries = float(cosine_EA[word_latent, letter_index]) >= 0.1
        if share >= min_share and carries:
            pairs.append(
                {
                    "letter_latent": letter_latent,
                    "word_latent": word_latent,
                    "strength": share,
                    "word": word,
                    "tokens": int(on_T.sum()),
                }
            )
    return pairs


def write_trained_planted_hunt(
    root: Path,
    prompts: int = 3000,
    words_per_prompt: int = 16,
    exponent: float = 1.0,
    ablator_k: float = 1.5,
    reader_k: float = 4.0,
    steps: int = 1500,
    seed: int = 0,
) -> PlantedHunt:
    """The planted case with trained SAEs: a BatchTopK ablator trained on the embeddings of a
    Zipf corpus (a tight k makes frequent words absorb their letter: one latent per token
    instead of two) and a BatchTopK reader trained on ``READER_HOOK``; the truth is the
    absorption measured from the ablator's activations (``measured_absorption``).

    3,000 prompts (63k tokens): a letter latent firing on a few rare words meets a frequent word
    about once by chance in that many tokens, so its silence beside the word becomes evidence
    (with 600 prompts the absorbed pairs' exclusion confidence had median 0.21)."""
    planted = build_planted_model(PlantedSpec(seed=seed))
    lines = zipf_corpus(planted, prompts, words_per_prompt, exponent, seed)
    acts = hook_activations(planted, lines)
    generator = torch.Generator().manual_seed(seed)
    features_NM = torch.cat([planted.letter_dirs_AM, planted.word_dirs_CM])
    width = features_NM.shape[0]
    ablator = train_batchtopk(
        ActivationRows(acts.ablator_TM, features_NM), width, ablator_k, steps, generator
    )
    reader = train_batchtopk(
        ActivationRows(acts.reader_TM, features_NM), width, reader_k, steps, generator
    )
    model_dir, ablator_dir, reader_dir = root / "model", root / "ablator", root / "reader"
    save_planted(planted, model_dir)
    lens_ablator = save_for_sae_lens(ablator, ABLATOR_HOOK, ablator_dir)
    save_for_sae_lens(reader, READER_HOOK, reader_dir)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    absorbed = measured_absorption(planted, lens_ablator, acts)
    (root / "truth.json").write_text(
        json.dumps({"absorbed_pairs": absorbed}, indent=1), encoding="utf-8"
    )
    truth = frozenset((p["letter_latent"], p["word_latent"]) for p in absorbed)
    return PlantedHunt(model_dir, ablator_dir, reader_dir, corpus, truth)

"""A planted language model: a tiny transformer whose features, and an SAE's absorption, are known.

Every word token's embedding is its first letter's direction (the parent feature) plus a direction
of its own (the child feature), so "which latents absorb which letter" has a known answer. Layer 0
has one hand-built attention head that copies the letter direction of the most recent word to
every later position, and the unembedding reads letter directions as the letter tokens, so in
``"{word} has the first letter:"`` the model predicts the word's first letter at the last token,
as Gemma does, and ablating a latent at the word moves that prediction. Layer 1 is empty (zero
weights), so ``blocks.1.hook_resid_post`` is a later site that reads the copied letters.

``absorbing_sae`` builds the matching ablator: a sae-lens JumpReLU SAE with one latent per letter
and one per word whose chosen words absorb their letter at a known strength. The model saves to
a local directory (transformer-lens config JSON, safetensors weights, a tokenizer saved with
``save_pretrained``) that every language-model script takes as ``--model DIR``.

Residual layout (d_model ``M``): letter directions are the first 26 coordinates (orthonormal);
then a constant direction every token carries, a position direction (position / n_ctx), and a
"this is a word" direction; word, template and answer tokens get random unit directions in the
remaining coordinates: exactly orthonormal when ``d_model`` leaves room for one per token (the
default), else random unit vectors (nearly orthogonal, so latents leak a little onto each other).
"""

import json
import string
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

LETTERS = string.ascii_uppercase
TEMPLATE_WORDS = ("has", "the", "first", "letter")
SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>")
NEWLINE = "▁\n"  # the word-level tokenizer's newline piece (Metaspace marks it like a word)
VOWELS = "aeiou"
CONSONANTS = "bcdfghjklmnprstvwz"
MODEL_CONFIG_FILE = "transformer_lens_config.json"
MODEL_WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class PlantedSpec:
    """What a planted model is made of; equal specs build identical models."""

    words_per_letter: int = 8
    # None: wide enough that every token's own direction is exactly orthogonal to every other's.
    d_model: int | None = None
    n_ctx: int = 128
    letter_norm: float = 4.0
    word_norm: float = 4.0
    seed: int = 0


@dataclass
class PlantedModel:
    """The model, its tokenizer and the truth: each word, its letter and its directions."""

    model: Any  # sae_lens.HookedSAETransformer
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    spec: PlantedSpec
    words: list[str]
    word_letters: list[str]
    word_token_ids: list[int]
    letter_token_ids: list[int]
    letter_dirs_AM: Float[Tensor, "A M"]
    word_dirs_CM: Float[Tensor, "C M"]


def planted_words(spec: PlantedSpec) -> list[str]:
    """``words_per_letter`` pronounceable lowercase words per letter, distinct, from the seed."""
    generator = torch.Generator().manual_seed(spec.seed)
    words: list[str] = []
    seen: set[str] = set(TEMPLATE_WORDS)
    for letter in LETTERS.lower():
        made = 0
        while made < spec.words_per_letter:
            length = 3 + int(torch.randint(4, (1,), generator=generator))
            word = letter
            for position in range(1, length):
                pool = VOWELS if (position % 2 == 1) != (letter in VOWELS) else CONSONANTS
                word += pool[int(torch.randint(len(pool), (1,), generator=generator))]
            if word not in seen:
                seen.add(word)
                words.append(word)
                made += 1
    return words


def planted_tokenizer(words: list[str]) -> Any:
    """A word-level tokenizer: BOS first, left padding, spaces as Gemma's "▁", ":" split off."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = [*SPECIAL, NEWLINE, ":"]
    pieces += [f"▁{w}" for w in TEMPLATE_WORDS]
    pieces += [f"▁{letter}" for letter in LETTERS]
    pieces += [f"▁{w}" for w in words]
    vocab = {piece: index for index, piece in enumerate(pieces)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", "isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always"),
            pre_tokenizers.Punctuation(),
        ]
    )
    bos = vocab["<bos>"]
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]
    )
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
        add_bos_token=True,
        name_or_path="planted",
    )


def planted_config(spec: PlantedSpec, d_vocab: int) -> Any:
    """Two attention-only layers, no norms, learned positions (the copy head needs a recency ramp)."""
    from transformer_lens import HookedTransformerConfig

    assert spec.d_model is not None

    return HookedTransformerConfig(
        model_name="planted",
        n_layers=2,
        d_model=spec.d_model,
        d_head=spec.d_model,
        n_heads=1,
        d_vocab=d_vocab,
        n_ctx=spec.n_ctx,
        attn_only=True,
        normalization_type=None,
        positional_embedding_type="standard",
        default_prepend_bos=True,
        act_fn="relu",
        dtype=torch.float32,
        device="cpu",
    )


def _unit_rows(count: int, width: int, generator: torch.Generator) -> Tensor:
    """``count`` unit rows of ``width``: orthonormal where they fit, random otherwise."""
    rows = torch.randn(count, width, generator=generator, dtype=torch.float64)
    if count <= width:
        q, _ = torch.linalg.qr(rows.T)
        return q.T.float()
    return (rows / rows.norm(dim=-1, keepdim=True)).float()


def build_planted_model(spec: PlantedSpec = PlantedSpec()) -> PlantedModel:
    """Build the planted model and its tokenizer (CPU, float32)."""
    from sae_hacking.llm.models import new_hooked_model

    letters = len(LETTERS)
    constant, position, wordness = letters, letters + 1, letters + 2
    words = planted_words(spec)
    tokenizer = planted_tokenizer(words)
    vocab: dict[str, int] = tokenizer.get_vocab()
    d_vocab = len(vocab)
    if spec.d_model is None:
        spec = replace(spec, d_model=-(-(letters + 3 + d_vocab) // 16) * 16)
    assert spec.d_model is not None
    free = spec.d_model - (letters + 3)
    if free < 16:
        raise ValueError(f"d_model {spec.d_model} leaves {free} free dimensions; use at least 45")
    generator = torch.Generator().manual_seed(spec.seed + 1)

    # Every non-special token gets its own random direction in the free coordinates.
    own_VM = torch.zeros(d_vocab, spec.d_model)
    own_VM[:, letters + 3 :] = _unit_rows(d_vocab, free, generator)
    W_E = own_VM.clone()
    W_E[:, constant] = 1.0
    word_ids = [vocab[f"▁{w}"] for w in words]
    letter_ids = [vocab[f"▁{letter}"] for letter in LETTERS]
    word_letters = [w[0].upper() for w in words]
    for word_id, letter in zip(word_ids, word_letters, strict=True):
        W_E[word_id] = spec.word_norm * own_VM[word_id]
        W_E[word_id, LETTERS.index(letter)] = spec.letter_norm
        W_E[word_id, constant] = 1.0
        W_E[word_id, wordness] = 1.0
    W_pos = torch.zeros(spec.n_ctx, spec.d_model)
    W_pos[:, position] = torch.arange(spec.n_ctx, dtype=torch.float32) / spec.n_ctx

    # The copy head: score(i -> j) = 24 * is_word(j) + 2 * j, so every position attends to the
    # latest word before it (earlier words lose at least 2 per position, template tokens 24).
    M = spec.d_model
    W_Q = torch.zeros(M, M)
    W_K = torch.zeros(M, M)
    W_Q[constant, 0] = 24.0
    W_K[wordness, 0] = 1.0
    W_Q[constant, 1] = 2.0 * spec.n_ctx
    W_K[position, 1] = 1.0
    scale = M**0.5  # transformer-lens divides scores by sqrt(d_head)
    W_Q *= scale
    # Value/output: copy the letter coordinates (the word's letter direction) to the reader.
    W_V = torch.zeros(M, M)
    W_O = torch.zeros(M, M)
    W_V[:letters, :letters] = torch.eye(letters)
    W_O[:letters, :letters] = torch.eye(letters)
    # Unembedding: letter direction -> its letter token, so the copied letter is the prediction.
    W_U = torch.zeros(M, d_vocab)
    for index, letter_id in enumerate(letter_ids):
        W_U[index, letter_id] = 1.0

    cfg = planted_config(spec, d_vocab)
    state = {
        "embed.W_E": W_E,
        "pos_embed.W_pos": W_pos,
        "unembed.W_U": W_U,
        "unembed.b_U": torch.zeros(d_vocab),
        "blocks.0.attn.W_Q": W_Q[None],
        "blocks.0.attn.W_K": W_K[None],
        "blocks.0.attn.W_V": W_V[None],
        "blocks.0.attn.W_O": W_O[None],
    }
    model = new_hooked_model(cfg, tokenizer)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, param in params.items():
            param.copy_(state[name] if name in state else torch.zeros_like(param))
    return PlantedModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        words=words,
        word_letters=word_letters,
        word_token_ids=word_ids,
        letter_token_ids=letter_ids,
        letter_dirs_AM=torch.eye(letters, M),
        word_dirs_CM=own_VM[word_ids],
    )


def save_planted(planted: PlantedModel, path: Path) -> None:
    """Save the model as a local model directory plus ``planted.json`` (the truth)."""
    from sae_hacking.llm.models import save_model_dir

    save_model_dir(planted.model, planted.tokenizer, path)
    truth = {
        "spec": asdict(planted.spec),
        "words": planted.words,
        "word_letters": planted.word_letters,
        "word_token_ids": planted.word_token_ids,
        "letter_token_ids": planted.letter_token_ids,
    }
    (path / "planted.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")


@dataclass(frozen=True)
class PlantedSAE:
    """An absorbing ablator SAE and its truth: which latent is which, and who absorbs whom."""

    sae: Any  # sae_lens JumpReLUSAE
    letter_latents: dict[str, int]
    word_latents: dict[str, int]
    # (letter latent, absorbing word latent, strength): the planted absorption.
    absorbed_pairs: list[tuple[int, int, float]]


def absorbing_sae(
    planted: PlantedModel,
    absorption: Mapping[str, float],
    hook_name: str = "blocks.0.hook_resid_pre",
    threshold_fraction: float = 0.25,
) -> PlantedSAE:
    """A JumpReLU SAE: latent ``i < 26`` reads letter ``i``, latent ``26 + w`` reads word ``w``.

    ``absorption[word] = s`` plants absorption of strength ``s`` in (0, 1]: on that word the letter
    latent's activation drops to ``(1 - s)`` of the letter norm (silent, below its threshold, at
    ``s = 1``; SAE-style absorption fraction ``s``), and the word latent's decoder carries the
    missing ``s`` share of the letter direction, so the reconstruction is unchanged. Inputs must be
    activations at ``hook_name`` whose word part is exactly the embedding (true for
    ``blocks.0.hook_resid_pre`` and, at word positions, ``hook_embed``).
    """
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    spec = planted.spec
    assert spec.d_model is not None
    unknown = sorted(set(absorption) - set(planted.words))
    if unknown:
        raise ValueError(f"not words of the planted model: {', '.join(unknown[:5])}")
    letters = len(LETTERS)
    width = letters + len(planted.words)
    M = spec.d_model
    W_enc_ME = torch.zeros(M, width)
    W_dec_EM = torch.zeros(width, M)
    threshold_E = torch.zeros(width)
    W_enc_ME[:, :letters] = planted.letter_dirs_AM.T
    W_dec_EM[:letters] = planted.letter_dirs_AM
    threshold_E[:letters] = threshold_fraction * spec.letter_norm
    pairs: list[tuple[int, int, float]] = []
    for index, (word, letter) in enumerate(zip(planted.words, planted.word_letters, strict=True)):
        latent = letters + index
        direction_M = planted.word_dirs_CM[index]
        W_enc_ME[:, latent] = direction_M
        W_dec_EM[latent] = direction_M
        threshold_E[latent] = threshold_fraction * spec.word_norm
        strength = float(absorption.get(word, 0.0))
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"absorption of '{word}' is {strength}; use a value in [0, 1]")
        if strength == 0.0:
            continue
        letter_index = LETTERS.index(letter)
        # On this word the letter latent reads letter_norm * (1 - s): subtract s * letter_norm
        # along the word's own direction (which has norm word_norm on the word).
        W_enc_ME[:, letter_index] -= strength * spec.letter_norm / spec.word_norm * direction_M
        # The word latent fires at word_norm; its decoder carries s * letter_norm of the letter.
        W_dec_EM[latent] += (
            strength * spec.letter_norm / spec.word_norm * planted.letter_dirs_AM[letter_index]
        )
        pairs.append((letter_index, latent, strength))
    cfg = JumpReLUSAEConfig(
        d_in=M,
        d_sae=width,
        dtype="float32",
        device="cpu",
        metadata=SAEMetadata(hook_name=hook_name, model_name="planted"),
    )
    sae = JumpReLUSAE(cfg)
    with torch.no_grad():
        sae.W_enc.copy_(W_enc_ME)
        sae.W_dec.copy_(W_dec_EM)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.threshold.copy_(threshold_E)
    return PlantedSAE(
        sae=sae,
        letter_latents={letter: i for i, letter in enumerate(LETTERS)},
        word_latents={w: letters + i for i, w in enumerate(planted.words)},
        absorbed_pairs=pairs,
    )

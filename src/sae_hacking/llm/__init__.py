"""Loading language models, SAEs and corpora through transformer-lens, sae-lens and datasets.

Public API (what every language-model script imports):

- models: ``load_model(name, device, dtype)``, ``tiny_model(...)``, ``model_config(name)``,
  ``hook_width(cfg, hook)``, ``stop_layer(hook)``, ``parse_dtype``.
- SAEs: ``resolve_sae(model, release, sae_id, device)`` (sae-lens release, local directory, or
  ``tiny``), ``load_sae(release, sae_id, device)``, ``load_sae_from_disk(path)``,
  ``random_sae(kind, sample_TM, width, hook, generator)``, ``check_pairing(cfg, sae)``,
  ``sae_hook_name(sae)``, ``firing_latents(sae, x)`` (exactly ``encode(x) > 0``, faster).
- corpora: ``CorpusSpec``, ``iter_texts(spec, rank, world, skip)``,
  ``iter_token_batches(texts, tokenizer, batch_size, max_tokens)``, ``TokenBatch``.
- ranks: ``init_ranks(device)``, ``RankInfo``, ``sum_across_ranks``.

Names are imported on first use (``from sae_hacking.llm import tiny_model`` loads
``llm.models`` then), so importing one submodule, or a config that names a default model, never
pays for transformer-lens and sae-lens (about 18 s here).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae_hacking.llm.corpus import (
        CorpusSpec,
        TokenBatch,
        iter_texts,
        iter_token_batches,
        tokenize_batch,
    )
    from sae_hacking.llm.distributed import RankInfo, init_ranks, rank_device, sum_across_ranks
    from sae_hacking.llm.models import (
        hook_layer,
        hook_width,
        load_model,
        model_config,
        parse_dtype,
        stop_layer,
        tiny_model,
    )
    from sae_hacking.llm.options import (
        DEFAULT_ABLATOR_ID,
        DEFAULT_MODEL,
        DEFAULT_READER_ID,
        DEFAULT_RELEASE,
        TINY_ABLATOR_ID,
        TINY_MODEL,
        TINY_READER_ID,
        TINY_RELEASE,
    )
    from sae_hacking.llm.saes import (
        check_pairing,
        firing_latents,
        hook_activations,
        load_sae,
        load_sae_from_disk,
        random_sae,
        resolve_sae,
        sae_hook_name,
        tiny_sae,
    )
    from sae_hacking.llm.tokenizer import tiny_tokenizer, train_tiny_tokenizer

_SUBMODULES = ("options", "corpus", "distributed", "tokenizer", "models", "saes")

__all__ = [
    "DEFAULT_ABLATOR_ID",
    "DEFAULT_MODEL",
    "DEFAULT_READER_ID",
    "DEFAULT_RELEASE",
    "TINY_ABLATOR_ID",
    "TINY_MODEL",
    "TINY_READER_ID",
    "TINY_RELEASE",
    "CorpusSpec",
    "RankInfo",
    "TokenBatch",
    "check_pairing",
    "firing_latents",
    "hook_activations",
    "hook_layer",
    "hook_width",
    "init_ranks",
    "iter_texts",
    "iter_token_batches",
    "load_model",
    "load_sae",
    "load_sae_from_disk",
    "model_config",
    "parse_dtype",
    "random_sae",
    "rank_device",
    "resolve_sae",
    "sae_hook_name",
    "stop_layer",
    "sum_across_ranks",
    "tiny_model",
    "tiny_sae",
    "tiny_tokenizer",
    "tokenize_batch",
    "train_tiny_tokenizer",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        for submodule in _SUBMODULES:
            module = importlib.import_module(f"sae_hacking.llm.{submodule}")
            if name in vars(module):
                return vars(module)[name]
    raise AttributeError(f"module 'sae_hacking.llm' has no attribute '{name}'")

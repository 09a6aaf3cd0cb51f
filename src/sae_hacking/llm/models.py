"""Language models by transformer-lens name or local directory, the offline ``tiny`` stand-in, and hook geometry.

Every model is a sae-lens ``HookedSAETransformer`` so SAEs can be spliced in with ``add_sae``.
"""

import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from sae_lens import HookedSAETransformer
from transformer_lens import HookedTransformerConfig
from transformer_lens.loading_from_pretrained import (
    get_official_model_name,
    get_pretrained_model_config,
)

from sae_hacking.config import ConfigError
from sae_hacking.errors import UserInputError
from sae_hacking.llm.options import DEFAULT_MODEL, RANDOM_PREFIX, TINY_MODEL
from sae_hacking.llm.planted import MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE
from sae_hacking.llm.tokenizer import tiny_tokenizer

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}

_D_MODEL_HOOKS = (
    "hook_resid_pre",
    "hook_resid_mid",
    "hook_resid_post",
    "hook_mlp_out",
    "hook_attn_out",
    "hook_mlp_in",
    "hook_attn_in",
)
_BLOCK_HOOK = re.compile(r"^blocks\.(\d+)\.(.+)$")


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    # transformer-lens 3 marks HookedTransformer deprecated in favour of its bridge; sae-lens's
    # HookedSAETransformer (what add_sae and run_with_cache_with_saes need) still subclasses it.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*HookedTransformer.*deprecated", category=DeprecationWarning
        )
        yield


def parse_dtype(name: str, flag: str = "--dtype") -> torch.dtype:
    """``float32|bfloat16|float16`` to a torch dtype."""
    if name not in DTYPES:
        raise UserInputError(flag, f"unknown dtype '{name}'; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def tiny_config(n_layers: int = 6, d_model: int = 64, n_ctx: int = 256) -> HookedTransformerConfig:
    """A Gemma-2-shaped config (RMS pre+post norms, gated GELU MLP, GQA, local/global attention, soft caps)."""
    return HookedTransformerConfig(
        model_name=TINY_MODEL,
        n_layers=n_layers,
        d_model=d_model,
        d_head=16,
        n_heads=4,
        n_key_value_heads=2,
        d_mlp=4 * d_model,
        d_vocab=len(tiny_tokenizer()),
        n_ctx=n_ctx,
        act_fn="gelu_pytorch_tanh",
        normalization_type="RMS",
        positional_embedding_type="rotary",
        rotary_base=10000.0,
        use_attn_scale=True,
        window_size=32,
        use_local_attn=True,
        attn_types=["local", "global"] * (n_layers // 2) + ["local"] * (n_layers % 2),
        attn_scores_soft_cap=50.0,
        output_logits_soft_cap=30.0,
        gated_mlp=True,
        final_rms=True,
        use_normalization_before_and_after=True,
        default_prepend_bos=True,
        eps=1e-6,
        dtype=torch.float32,
        device="cpu",
    )


def tiny_model(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    n_layers: int = 6,
    d_model: int = 64,
) -> HookedSAETransformer:
    """A random Gemma-2-shaped model with the tiny tokenizer, identical for equal arguments."""
    cfg = tiny_config(n_layers=n_layers, d_model=d_model)
    # Every weight is redrawn from our own generator.
    model = new_hooked_model(cfg, tiny_tokenizer())
    draw_random_weights_(model, torch.Generator().manual_seed(seed))
    model.to(torch.device(device), print_details=False)
    model.to(dtype, print_details=False)
    return model


@torch.no_grad()
def draw_random_weights_(model: HookedSAETransformer, generator: torch.Generator) -> None:
    """Redraw every weight in place on ``generator``'s device: norm weights 1, biases 0,
    embeddings standard normal, other matrices normal with variance 1 / fan-in."""
    for name, param in model.named_parameters():
        if name.endswith(".w") or name.endswith("ln_final.w"):
            param.fill_(1.0)
        elif name.split(".")[-1].startswith("b_"):
            param.zero_()
        else:
            fan_in = param.shape[-2] if param.dim() >= 2 else param.shape[0]
            scale = 1.0 if name.startswith("embed") else fan_in**-0.5
            drawn = torch.randn(param.shape, generator=generator, device=generator.device)
            param.copy_(drawn * scale)


def new_hooked_model(cfg: HookedTransformerConfig, tokenizer: Any) -> HookedSAETransformer:
    """An untrained model of ``cfg`` (weights from a forked RNG, so callers' streams are untouched)."""
    with torch.random.fork_rng(devices=[]), _quiet_deprecation():
        return HookedSAETransformer(cfg, tokenizer=tokenizer, default_padding_side="left")


def is_model_dir(name: str) -> bool:
    """Whether ``--model`` names a local model directory (see ``save_model_dir``)."""
    return (Path(name) / MODEL_CONFIG_FILE).is_file()


def save_model_dir(model: HookedSAETransformer, tokenizer: Any, path: Path) -> None:
    """Save a model users can pass as ``--model DIR``: transformer-lens config, weights, tokenizer."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    config = {
        key: value
        for key, value in model.cfg.to_dict().items()
        if isinstance(value, str | int | float | bool | list) or value is None
    }
    config["dtype"] = str(model.cfg.dtype).removeprefix("torch.")
    config["device"] = "cpu"
    (path / MODEL_CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    weights = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(weights, str(path / MODEL_WEIGHTS_FILE))
    tokenizer.save_pretrained(str(path))


def _dir_config(path: Path, flag: str = "--model") -> HookedTransformerConfig:
    try:
        raw = json.loads((path / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
        raw["dtype"] = DTYPES[raw.get("dtype", "float32")]
        for derived in ("n_params", "d_vocab_out"):
            raw.pop(derived, None)
        known = HookedTransformerConfig.__dataclass_fields__
        return HookedTransformerConfig(**{k: v for k, v in raw.items() if k in known})
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
        raise UserInputError(
            flag, f"'{path / MODEL_CONFIG_FILE}' is not a readable model config ({error})"
        ) from error


def load_model_dir(
    path: Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> HookedSAETransformer:
    """Load a model saved by ``save_model_dir``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    cfg = _dir_config(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        weights = load_file(str(path / MODEL_WEIGHTS_FILE))
    except (OSError, ValueError, SafetensorError) as error:
        raise UserInputError(
            "--model", f"cannot load the model in '{path}' ({type(error).__name__}: {error})"
        ) from error
    model = new_hooked_model(cfg, tokenizer)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise UserInputError(
            "--model", f"the weights in '{path}' do not fit its config: {error}"
        ) from error
    model.to(torch.device(device), print_details=False)
    model.to(dtype, print_details=False)
    return model


def random_config(cfg: HookedTransformerConfig) -> HookedTransformerConfig:
    """``cfg``'s architecture with the tiny tokenizer: a real model's shapes without the hub.

    The vocabulary keeps the real size (the unembedding costs what it costs); the tokenizer's
    ids are a subset of it.
    """
    fields = cfg.to_dict()
    fields.update(model_name=f"{RANDOM_PREFIX}{cfg.model_name}", tokenizer_name=None)
    fields["d_vocab"] = max(cfg.d_vocab, len(tiny_tokenizer()))
    fields["d_vocab_out"] = max(cfg.d_vocab_out, fields["d_vocab"])
    return HookedTransformerConfig.from_dict(fields)


@torch.no_grad()
def random_model(
    cfg: HookedTransformerConfig, device: torch.device | str, dtype: torch.dtype
) -> HookedSAETransformer:
    """A model of ``cfg`` with random weights (seed 0) drawn where it runs: a 2B-parameter
    model's 10 GB of float32 never pass through the host when ``device`` is a GPU."""
    device = torch.device(device)
    fields = cfg.to_dict()
    fields.update(device=str(device), dtype=dtype, init_weights=False)
    cfg = HookedTransformerConfig.from_dict(fields)
    with torch.device(device), torch.random.fork_rng(devices=[]), _quiet_deprecation():
        model = HookedSAETransformer(cfg, tokenizer=tiny_tokenizer(), default_padding_side="left")
    draw_random_weights_(model, torch.Generator(device).manual_seed(0))
    return model.eval()


def model_config(name: str, flag: str = "--model") -> HookedTransformerConfig:
    """The model's config without its weights (offline for transformer-lens's known models)."""
    if name == TINY_MODEL:
        return tiny_config()
    if is_model_dir(name):
        return _dir_config(Path(name), flag)
    if name.startswith(RANDOM_PREFIX):
        return random_config(model_config(name.removeprefix(RANDOM_PREFIX), flag))
    try:
        official = get_official_model_name(name)
    except ValueError as error:
        raise UserInputError(
            flag, f"'{name}' is not a transformer-lens model name; try {DEFAULT_MODEL} or tiny"
        ) from error
    try:
        return get_pretrained_model_config(official)
    except OSError as error:
        raise UserInputError(flag, f"cannot read the config of '{name}': {error}") from error


def prompt_length(
    requested: int | None, default: int, model: str, field: str = "max_tokens_in_prompt"
) -> int:
    """Tokens per prompt, BOS included: ``requested``, else ``default`` capped at the model's context.

    Past the context transformer-lens's rotary embedding fails mid-run with an IndexError, so a
    request for more is refused here, before anything runs.
    """
    n_ctx = model_config(model).n_ctx
    if requested is None:
        return min(default, n_ctx)
    if requested > n_ctx:
        raise ConfigError(field, f"{requested} exceeds the {n_ctx}-token context of '{model}'")
    return requested


def load_model(
    name: str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> HookedSAETransformer:
    """Load ``tiny``, a local model directory, or a transformer-lens model by name, unprocessed
    (activations as in HF, as SAEs expect)."""
    if name == TINY_MODEL:
        return tiny_model(device=device, dtype=dtype)
    if is_model_dir(name):
        return load_model_dir(Path(name), device=device, dtype=dtype)
    if name.startswith(RANDOM_PREFIX):
        return random_model(model_config(name), device, dtype)
    model_config(name)
    try:
        with _quiet_deprecation():
            model = HookedSAETransformer.from_pretrained_no_processing(
                name, device=str(device), dtype=dtype, default_padding_side="left"
            )
    except OSError as error:
        raise UserInputError(
            "--model",
            f"cannot load '{name}' ({type(error).__name__}); check the network, HF_HUB_OFFLINE and, "
            "for gated models such as Gemma, HF_TOKEN",
        ) from error
    return model


def hook_layer(hook_name: str) -> int:
    """The block a hook sits in (-1 for hooks before the first block)."""
    match = _BLOCK_HOOK.match(hook_name)
    return int(match.group(1)) if match else -1


def hook_width(cfg: HookedTransformerConfig, hook_name: str) -> int | None:
    """The width an SAE reads at ``hook_name``, or None where the hook is unknown to this model."""
    if hook_name in ("hook_embed", "hook_pos_embed", "ln_final.hook_normalized"):
        return cfg.d_model
    match = _BLOCK_HOOK.match(hook_name)
    if match is None or int(match.group(1)) >= cfg.n_layers:
        return None
    rest = match.group(2)
    if rest in _D_MODEL_HOOKS:
        return cfg.d_model
    if rest in ("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear"):
        return cfg.d_mlp
    if rest in ("attn.hook_z", "attn.hook_q", "attn.hook_result"):
        return cfg.n_heads * cfg.d_head
    return None


def stop_layer(hook_name: str) -> int:
    """``stop_at_layer`` that runs a model just far enough to compute ``hook_name``."""
    return hook_layer(hook_name) + 1

"""SAEs: sae-lens releases, local sae-lens directories, random calibrated stand-ins, pairing checks.

sae-lens 6: ``SAE.from_pretrained`` returns the SAE alone; its hook is ``sae.cfg.metadata.hook_name``;
the error term is passed to ``add_sae``/``run_with_cache_with_saes``, never set on the SAE here.
"""

import difflib
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from jaxtyping import Bool, Float
from sae_lens import SAE, HookedSAETransformer
from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory
from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
from sae_lens.saes.sae import SAEMetadata
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from torch import Tensor
from transformer_lens import HookedTransformerConfig

from sae_hacking.errors import UserInputError
from sae_hacking.llm.models import hook_width, stop_layer
from sae_hacking.llm.options import TINY_ABLATOR_ID, TINY_RELEASE
from sae_hacking.llm.tokenizer import TINY_TEXT
from sae_hacking.memory import check_fits

TINY_TARGET_L0 = 24.0
SaeKind = Literal["jumprelu", "topk"]


def _closest(word: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(near)}?" if near else ""


def release_flag(flag: str) -> str:
    """The release flag that goes with an id flag: ``--ablator-sae-id`` -> ``--ablator-sae-release``,
    ``--sae-ids`` -> ``--sae-release``."""
    for suffix in ("-id", "-ids"):
        if flag.endswith(suffix):
            return flag.removesuffix(suffix) + "-release"
    return flag


def check_release_id(release: str, sae_id: str, flag: str = "--sae-id") -> None:
    """Refuse an unknown release or an id the release lacks, from sae-lens's registry (no network)."""
    directory = get_pretrained_saes_directory()
    if release not in directory:
        if "/" in release and _is_repo_id(release):
            return  # a Hugging Face repo id: only the hub can say what it holds
        if "/" in release:
            raise UserInputError(
                release_flag(flag),
                f"'{release}' is neither a sae-lens release, a Hugging Face repo id "
                "(owner/name) nor a directory holding cfg.json",
            )
        raise UserInputError(
            release_flag(flag),
            f"'{release}' is not a sae-lens release{_closest(release, list(directory))}",
        )
    ids = list(directory[release].saes_map)
    if sae_id not in ids:
        raise UserInputError(
            flag, f"'{sae_id}' is not an SAE of release '{release}'{_closest(sae_id, ids)}"
        )


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def load_sae(
    release: str,
    sae_id: str,
    device: torch.device | str = "cpu",
    dtype: str = "float32",
    flag: str = "--sae-id",
) -> SAE[Any]:
    """Load an SAE by sae-lens release and id (checked against the registry before any download)."""
    check_release_id(release, sae_id, flag)
    try:
        return SAE.from_pretrained(release, sae_id, device=str(device), dtype=dtype)
    except (OSError, EntryNotFoundError, HFValidationError) as error:
        raise UserInputError(
            flag,
            f"cannot load '{release}' '{sae_id}' ({type(error).__name__}); check the names, the network "
            "and HF_HUB_OFFLINE, or pass a local directory",
        ) from error


def load_sae_from_disk(
    path: Path, device: torch.device | str = "cpu", flag: str = "--sae-path"
) -> SAE[Any]:
    """Load an SAE saved by sae-lens (``cfg.json`` + ``sae_weights.safetensors``)."""
    if not (path / "cfg.json").is_file():
        raise UserInputError(flag, f"'{path}' has no cfg.json; give a directory saved by sae-lens")
    return SAE.load_from_disk(path, device=str(device))


def sae_hook_name(sae: SAE[Any], flag: str = "--sae-id") -> str:
    """The hook an SAE reads, from its sae-lens 6 metadata."""
    hook_name = sae.cfg.metadata.hook_name
    if not isinstance(hook_name, str):
        raise UserInputError(flag, "the SAE's config names no hook (metadata.hook_name)")
    return hook_name


def check_pairing(cfg: HookedTransformerConfig, sae: SAE[Any], flag: str = "--sae-id") -> str:
    """Refuse an SAE whose hook the model lacks or whose d_in is not the model's width there."""
    hook_name = sae_hook_name(sae, flag)
    width = hook_width(cfg, hook_name)
    if width is None:
        raise UserInputError(
            flag, f"the SAE reads hook '{hook_name}', which model '{cfg.model_name}' does not have"
        )
    if sae.cfg.d_in != width:
        raise UserInputError(
            flag,
            f"the SAE reads {sae.cfg.d_in} dimensions but '{cfg.model_name}' is {width} wide at "
            f"'{hook_name}'; pick an SAE trained on this model",
        )
    return hook_name


@torch.no_grad()
def firing_latents(sae: SAE[Any], x_TM: Float[Tensor, "T M"]) -> Bool[Tensor, "T E"]:
    """Which latents fire on each input, exactly ``sae.encode(x) > 0``."""
    return firing_and_activations(sae, x_TM)[0]


def firing_and_activations(
    sae: SAE[Any], x_TM: Float[Tensor, "T M"]
) -> tuple[Bool[Tensor, "T E"], Float[Tensor, "T E"]]:
    """Which latents fire on each input (exactly ``sae.encode(x) > 0``) and tensors equal to
    their activations where they fire (elsewhere anything).

    A plain JumpReLU SAE fires where ``pre > threshold`` and ``relu(pre) > 0``, i.e. where
    ``pre > max(threshold, 0)``, and its activation there is ``pre``: one comparison instead of
    the ReLU, mask and product over T x E (on the d_model 256, 4096-latent stand-in that cut the
    encode from ~0.45 s to ~0.25 s over 11k tokens on one thread; see benchmarks/cooccurrence.py).
    Other SAEs go through ``encode``.
    """
    if type(sae) is JumpReLUSAE and isinstance(sae.activation_fn, torch.nn.ReLU):
        # The same expression as JumpReLUSAE.encode, so the floats compared are identical.
        hidden_pre = sae.hook_sae_acts_pre(sae.process_sae_in(x_TM) @ sae.W_enc + sae.b_enc)
        return hidden_pre > sae.threshold.clamp(min=0), hidden_pre
    acts_TE = sae.encode(x_TM)
    return acts_TE > 0, acts_TE


@torch.no_grad()
def hook_activations(
    model: HookedSAETransformer, texts: Sequence[str], hook_name: str
) -> Float[Tensor, "T M"]:
    """Activations at ``hook_name`` on the real (not pad, not BOS) tokens of ``texts``."""
    assert model.tokenizer is not None
    batch = model.tokenizer(list(texts), padding=True, return_tensors="pt")
    tokens_BS = batch["input_ids"].to(model.cfg.device)
    mask_BS = batch["attention_mask"].to(model.cfg.device).bool()
    mask_BS &= tokens_BS != model.tokenizer.bos_token_id
    _, cache = model.run_with_cache(
        tokens_BS,
        attention_mask=mask_BS.long(),
        names_filter=[hook_name],
        stop_at_layer=stop_layer(hook_name),
    )
    acts = cache[hook_name]
    return acts.reshape(*acts.shape[:2], -1)[mask_BS].float()


def _firing_rates(width: int, target_l0: float, generator: torch.Generator) -> Float[Tensor, " E"]:
    # Real SAEs have a few frequent latents and a long tail of rare ones: log-uniform rates
    # over three decades, scaled so they sum to the target L0.
    log_rates_E = torch.rand(width, generator=generator) * -3.0
    rates_E = 10.0**log_rates_E
    return (rates_E * (target_l0 / rates_E.sum())).clamp(max=0.5)


@torch.no_grad()
def random_sae(
    kind: SaeKind,
    sample_TM: Float[Tensor, "T M"],
    width: int,
    hook_name: str,
    generator: torch.Generator,
    target_l0: float = TINY_TARGET_L0,
    model_name: str = "tiny",
) -> SAE[Any]:
    """A random sae-lens SAE reading ``hook_name``, calibrated on ``sample_TM`` to about ``target_l0``.

    JumpReLU thresholds are set per latent at the sample quantile of a drawn firing rate (random
    thresholds fire on nothing or everything); a TopK SAE gets k = round(target_l0).
    """
    d_in = sample_TM.shape[1]
    metadata = SAEMetadata(hook_name=hook_name, model_name=model_name, neuronpedia_id=None)
    sae: SAE[Any]
    if kind == "jumprelu":
        sae = JumpReLUSAE(
            JumpReLUSAEConfig(d_in=d_in, d_sae=width, device="meta", metadata=metadata)
        )
    else:
        k = max(1, round(target_l0))
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=width, k=k, device="meta", metadata=metadata))
    sae.to_empty(device="cpu")
    sae.cfg.device = "cpu"
    W_dec_EM = torch.randn(width, d_in, generator=generator)
    W_dec_EM /= W_dec_EM.norm(dim=1, keepdim=True)
    sample_TM = sample_TM.float().cpu()
    b_dec_M = sample_TM.mean(0)
    sae.W_dec.copy_(W_dec_EM)
    sae.W_enc.copy_(W_dec_EM.T)
    sae.b_dec.copy_(b_dec_M)
    sae.b_enc.zero_()
    if isinstance(sae, JumpReLUSAE):
        pre_TE = (sample_TM - b_dec_M) @ W_dec_EM.T
        sorted_TE = pre_TE.sort(dim=0).values
        rates_E = _firing_rates(width, target_l0, generator)
        rows_E = ((1.0 - rates_E) * (sorted_TE.shape[0] - 1)).round().long()
        sae.threshold.copy_(sorted_TE.gather(0, rows_E[None]).squeeze(0).clamp(min=0.0))
    return sae


def tiny_sae(
    model: HookedSAETransformer,
    sae_id: str,
    device: torch.device | str = "cpu",
    flag: str = "--sae-id",
) -> SAE[Any]:
    """The random stand-in named ``<hook>/<jumprelu|topk>/<width>``, the same for the same id."""
    parts = sae_id.split("/")
    if len(parts) != 3 or parts[1] not in ("jumprelu", "topk") or not parts[2].isdigit():
        raise UserInputError(
            flag,
            f"'{sae_id}' is not a tiny SAE id; use <hook>/<jumprelu|topk>/<width>, e.g. {TINY_ABLATOR_ID}",
        )
    hook_name, kind, width = parts[0], parts[1], int(parts[2])
    d_in = hook_width(model.cfg, hook_name)
    if d_in is None:
        raise UserInputError(flag, f"'{hook_name}' is not a hook of model '{model.cfg.model_name}'")
    if width < 1:
        raise UserInputError(flag, f"'{sae_id}' has {width} latents; give at least 1")
    generator = torch.Generator().manual_seed(zlib.crc32(sae_id.encode()))
    sample_TM = hook_activations(model, TINY_TEXT.splitlines(), hook_name)
    # Encoder and decoder, plus the sample's pre-activations and their sorted copy (calibration).
    n_bytes = 4 * width * (2 * d_in + 2 * sample_TM.shape[0] + 8)
    check_fits(n_bytes, flag, f"a tiny SAE of {width:,} latents")
    sae = random_sae(
        "jumprelu" if kind == "jumprelu" else "topk",
        sample_TM,
        width,
        hook_name,
        generator,
        model_name=model.cfg.model_name,
    )
    return sae.to(torch.device(device))


def resolve_sae(
    model: HookedSAETransformer,
    release: str,
    sae_id: str,
    device: torch.device | str = "cpu",
    flag: str = "--sae-id",
) -> SAE[Any]:
    """The SAE a script's ``--sae-release``/``--sae-id`` name (``tiny`` or a local directory too), checked against the model."""
    if release == TINY_RELEASE:
        sae = tiny_sae(model, sae_id, device, flag)
    elif Path(release).is_dir():
        # The directory, not the id, chose this SAE: name its flag (--sae-release,
        # --ablator-sae-release, ...) in any error.
        flag = release_flag(flag)
        sae = load_sae_from_disk(Path(release), device, flag=flag)
    else:
        sae = load_sae(release, sae_id, device, flag=flag)
    check_pairing(model.cfg, sae, flag)
    check_width(sae, flag)
    return sae


def check_width(sae: SAE[Any], flag: str = "--sae-id") -> None:
    """Refuse an SAE without latents (nothing to count, ablate or show)."""
    if sae.cfg.d_sae < 1:
        raise UserInputError(flag, f"the SAE has {sae.cfg.d_sae} latents; give one with at least 1")

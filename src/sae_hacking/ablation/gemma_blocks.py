"""Gemma-2 blocks computed from a HookedTransformer's weights, for queries at chosen positions only.

transformer-lens runs every query against every key, with hooks, masks rebuilt per call and
grouped key heads copied per query head. An ablation read at one token needs far less: keys and
values where the stream changed, queries only where a later block reads them. These functions do
that arithmetic for exactly the block transformer-lens builds from a Gemma-2 config (RMS norms
before and after attention and MLP, grouped-query attention, rotary positions, soft-capped scores,
sliding-window local layers, gated tanh-GELU MLP); ``unsupported_reason`` names what is not.

Head axes have no shape letter: tensors with heads keep them flattened into ``D`` at function
boundaries and are viewed per head only inside the attention.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from sae_lens import HookedSAETransformer
from torch import Tensor
from transformer_lens import HookedTransformerConfig

_ARCHITECTURES = (None, "Gemma2ForCausalLM")


def unsupported_reason(cfg: HookedTransformerConfig) -> str | None:
    """Why these blocks would not reproduce the model's, or None when they do."""
    needed: dict[str, object] = {
        "normalization_type": "RMS",
        "use_normalization_before_and_after": True,
        "gated_mlp": True,
        "act_fn": "gelu_pytorch_tanh",
        "positional_embedding_type": "rotary",
        "rotary_adjacent_pairs": False,
        "attention_dir": "causal",
        "use_qk_norm": False,
        "clip_qkv": None,
        "use_split_qkv_input": False,
        "use_attn_in": False,
        "ungroup_grouped_query_attention": False,
        "use_NTK_by_parts_rope": False,
        "use_yarn_rope": False,
        "use_dynamic_ntk_rope": False,
        "use_logn_attn": False,
        "use_attention_sinks": False,
        "scale_attn_by_inverse_layer_idx": False,
        "load_in_4bit": False,
        "parallel_attn_mlp": False,
        "attn_only": False,
        "n_devices": 1,
    }
    if cfg.original_architecture not in _ARCHITECTURES:
        return f"architecture {cfg.original_architecture} is not Gemma-2"
    for field, value in needed.items():
        if getattr(cfg, field, value) != value:
            return f"{field}={getattr(cfg, field)!r} (Gemma-2 blocks need {value!r})"
    return None


@dataclass(frozen=True)
class BlockWeights:
    """One block's weights as ``F.linear`` takes them (output rows, heads flattened), biases None when zero.

    ``D`` is a different width in each field (query heads, key and value heads, MLP), so the fields
    are not shape-checked together.
    """

    ln1_M: Tensor
    ln1_post_M: Tensor
    ln2_M: Tensor
    ln2_post_M: Tensor
    W_Q_DM: Tensor
    b_Q_D: Tensor | None
    W_KV_DM: Tensor
    b_KV_D: Tensor | None
    W_O_MD: Tensor
    b_O_M: Tensor | None
    W_gate_DM: Tensor
    W_in_DM: Tensor
    b_in_D: Tensor | None
    W_out_MD: Tensor
    b_out_M: Tensor | None
    rotary_cos: Tensor
    rotary_sin: Tensor
    n_heads: int
    n_kv_heads: int
    d_head: int
    rotary_dim: int
    query_scale: float
    soft_cap: float | None
    window: int | None
    eps: float
    norm_in_float32: bool


def _rows(W_HMD: Tensor) -> Tensor:
    """(heads, in, d_head) to (heads * d_head, in), the layout ``F.linear`` multiplies fastest."""
    return W_HMD.permute(0, 2, 1).reshape(-1, W_HMD.shape[1]).contiguous()


def _bias(*parts: Tensor) -> Tensor | None:
    bias = torch.cat([part.reshape(-1) for part in parts])
    return bias if bool(bias.any()) else None


def block_weights(model: HookedSAETransformer, layer: int) -> BlockWeights:
    """The weights of block ``layer`` (call after a forward that reached the longest sequence)."""
    cfg = model.cfg
    # transformer-lens types its blocks as plain Modules; these are TransformerBlocks.
    block: Any = model.blocks[layer]
    attn, mlp = block.attn, block.mlp
    grouped = cfg.n_key_value_heads is not None
    W_K = attn._W_K if grouped else attn.W_K
    W_V = attn._W_V if grouped else attn.W_V
    b_K = attn._b_K if grouped else attn.b_K
    b_V = attn._b_V if grouped else attn.b_V
    cap = cfg.attn_scores_soft_cap
    soft_cap = float(cap) if cap is not None and cap > 0 else None
    local = attn.attn_type == "local"
    assert cfg.rotary_dim is not None
    return BlockWeights(
        ln1_M=block.ln1.w,
        ln1_post_M=block.ln1_post.w,
        ln2_M=block.ln2.w,
        ln2_post_M=block.ln2_post.w,
        W_Q_DM=_rows(attn.W_Q),
        b_Q_D=_bias(attn.b_Q),
        W_KV_DM=torch.cat([_rows(W_K), _rows(W_V)]),
        b_KV_D=_bias(b_K, b_V),
        W_O_MD=attn.W_O.reshape(-1, cfg.d_model).T.contiguous(),
        b_O_M=_bias(attn.b_O),
        W_gate_DM=mlp.W_gate.T.contiguous(),
        W_in_DM=mlp.W_in.T.contiguous(),
        b_in_D=_bias(mlp.b_in),
        W_out_MD=mlp.W_out.T.contiguous(),
        b_out_M=_bias(mlp.b_out),
        rotary_cos=attn.rotary_cos,
        rotary_sin=attn.rotary_sin,
        n_heads=cfg.n_heads,
        n_kv_heads=W_K.shape[0],
        d_head=cfg.d_head,
        rotary_dim=cfg.rotary_dim,
        # Folding the score scale and the soft cap's inner division into the queries saves two
        # passes over the score tensor; it moves results by float rounding only.
        query_scale=1.0 / float(attn.attn_scale * (soft_cap or 1.0)),
        soft_cap=soft_cap,
        window=cfg.window_size if local else None,
        eps=cfg.eps,
        norm_in_float32=cfg.dtype not in (torch.float32, torch.float64),
    )


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x: Tensor) -> Tensor:
    """``F.gelu(x, approximate="tanh")`` in five vectorized passes (the fused CPU kernel is ~3x slower).

    Equal to it within float rounding (max abs difference ~5e-7 at unit scale).
    """
    # new_full fills on the device; new_tensor would copy from the host and make CUDA wait.
    inner = torch.addcmul(x.new_full((), _GELU_C), x, x, value=_GELU_C * 0.044715)
    return inner.mul_(x).tanh_().add_(1.0).mul_(x).mul_(0.5)


def rms_norm(x_XM: Float[Tensor, "... M"], w_M: Float[Tensor, " M"], w: BlockWeights) -> Tensor:
    """transformer-lens's RMSNorm: scale in float32 for low-precision models, then the weight."""
    dtype = x_XM.dtype
    if w.norm_in_float32:
        x_XM = x_XM.float()
    inverse_scale = torch.rsqrt(x_XM.square().mean(-1, keepdim=True).add_(w.eps))
    return (x_XM * inverse_scale).to(dtype).mul_(w_M)


def position_ids(attention_mask_BS: Int[Tensor, "B S"]) -> Int[Tensor, "B S"]:
    """Rotary positions counted from each prompt's first real token (pads at 0), as transformer-lens."""
    return (attention_mask_BS.cumsum(dim=1) - 1).clamp(min=0)


@dataclass(frozen=True)
class Rotary:
    """Rotary factors at some positions: (rows, positions, 1, rotary_dim) each.

    ``sin`` carries the sign of the half-rotation, so rotating is ``x * cos + roll(x) * sin``.
    """

    cos: Tensor
    sin: Tensor

    def at(self, index_K: Int[Tensor, " K"]) -> "Rotary":
        """Each row's position ``index_K``, keeping a length-1 position axis."""
        rows_K = torch.arange(self.cos.shape[0], device=self.cos.device)
        return Rotary(self.cos[rows_K, index_K][:, None], self.sin[rows_K, index_K][:, None])


def rotary(w: BlockWeights, positions_BS: Int[Tensor, "B S"]) -> Rotary:
    """The block's rotary factors at ``positions_BS``."""
    half = w.rotary_dim // 2
    sin = w.rotary_sin[positions_BS]
    sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
    return Rotary(w.rotary_cos[positions_BS][:, :, None], sin[:, :, None])


def _rotate(x: Tensor, factors: Rotary, w: BlockWeights) -> Tensor:
    """Rotary embedding of ``x`` (rows, positions, heads, d_head)."""
    x_rot, x_pass = x[..., : w.rotary_dim], x[..., w.rotary_dim :]
    rolled = torch.roll(x_rot, w.rotary_dim // 2, dims=-1)
    rotated = torch.addcmul(x_rot * factors.cos, rolled, factors.sin)
    return rotated if x_pass.shape[-1] == 0 else torch.cat([rotated, x_pass], dim=-1)


@dataclass(frozen=True)
class KeysValues:
    """Rotated keys and values of one block, head-major: (rows, kv heads, positions, d_head)."""

    keys: Tensor
    values: Tensor

    def after(self, prefix: "KeysValues") -> "KeysValues":
        """These positions appended to ``prefix``'s."""
        return KeysValues(
            torch.cat([prefix.keys, self.keys], dim=2),
            torch.cat([prefix.values, self.values], dim=2),
        )

    def rows(self, index_K: Int[Tensor, " K"], stop: int) -> "KeysValues":
        """Rows ``index_K``, positions before ``stop``."""
        return KeysValues(self.keys[index_K, :, :stop], self.values[index_K, :, :stop])


def keys_values(w: BlockWeights, resid_BSM: Float[Tensor, "B S M"], factors: Rotary) -> KeysValues:
    """The block's keys and values for the stream entering it."""
    n_rows, n_pos = resid_BSM.shape[:2]
    kv = F.linear(rms_norm(resid_BSM, w.ln1_M, w), w.W_KV_DM, w.b_KV_D)
    kv = kv.view(n_rows, n_pos, 2 * w.n_kv_heads, w.d_head)
    keys = _rotate(kv[:, :, : w.n_kv_heads], factors, w)
    return KeysValues(
        keys.transpose(1, 2).contiguous(), kv[:, :, w.n_kv_heads :].transpose(1, 2).contiguous()
    )


def attention_out(
    w: BlockWeights,
    resid_BQM: Float[Tensor, "B Q M"],
    factors: Rotary,
    kv: KeysValues,
    allowed_BQS: Bool[Tensor, "B Q S"],
) -> Float[Tensor, "B Q M"]:
    """hook_attn_out at the query rows ``resid_BQM``, attending to ``kv`` where ``allowed_BQS``.

    Query heads sharing a key head are stacked along the query axis, so grouped keys are read in
    place instead of being copied per query head.
    """
    n_rows, n_q = resid_BQM.shape[:2]
    group = w.n_heads // w.n_kv_heads
    x = rms_norm(resid_BQM, w.ln1_M, w)
    q = F.linear(x, w.W_Q_DM, w.b_Q_D).view(n_rows, n_q, w.n_heads, w.d_head)
    q = _rotate(q, factors, w).mul_(w.query_scale)
    q = q.view(n_rows, n_q, w.n_kv_heads, group, w.d_head).permute(0, 2, 3, 1, 4)
    q = q.reshape(n_rows, w.n_kv_heads, group * n_q, w.d_head)
    scores = torch.matmul(q, kv.keys.transpose(2, 3))
    if w.soft_cap is not None:
        scores = scores.tanh_().mul_(w.soft_cap)
    scores = scores.view(n_rows, w.n_kv_heads, group, n_q, -1)
    scores.masked_fill_(~allowed_BQS[:, None, None], float("-inf"))
    pattern = torch.softmax(scores.view(n_rows, w.n_kv_heads, group * n_q, -1), dim=-1)
    z = torch.matmul(pattern, kv.values).view(n_rows, w.n_heads, n_q, w.d_head)
    z = z.transpose(1, 2).reshape(n_rows, n_q, -1)
    out = F.linear(z, w.W_O_MD, w.b_O_M)
    return rms_norm(out, w.ln1_post_M, w)


def mlp_out(w: BlockWeights, resid_mid_BSM: Float[Tensor, "B S M"]) -> Float[Tensor, "B S M"]:
    """hook_mlp_out for the stream after attention."""
    x = rms_norm(resid_mid_BSM, w.ln2_M, w)
    hidden = gelu_tanh(F.linear(x, w.W_gate_DM)).mul_(F.linear(x, w.W_in_DM))
    if w.b_in_D is not None:
        hidden.add_(w.b_in_D)
    return rms_norm(F.linear(hidden, w.W_out_MD, w.b_out_M), w.ln2_post_M, w)


def allowed_keys(
    query_pos_BQ: Int[Tensor, "B Q"], key_real_BS: Bool[Tensor, "B S"], window: int | None
) -> Bool[Tensor, "B Q S"]:
    """Which keys each query may attend to: real, not later, within the window on local layers.

    A query always sees itself, so pad queries get a finite (unused) output instead of NaNs that
    would reach real tokens through zero attention weights.
    """
    key_pos_S = torch.arange(key_real_BS.shape[1], device=key_real_BS.device)
    offset_BQS = query_pos_BQ[:, :, None] - key_pos_S
    allowed_BQS = key_real_BS[:, None, :] & (offset_BQS >= 0)
    if window is not None:
        allowed_BQS &= offset_BQS < window
    return allowed_BQS | (offset_BQS == 0)


def block_forward(
    w: BlockWeights, resid_pre_BSM: Float[Tensor, "B S M"], attention_mask_BS: Int[Tensor, "B S"]
) -> Float[Tensor, "B S M"]:
    """A whole block, every position (for checking against transformer-lens's block)."""
    n_rows, n_pos = attention_mask_BS.shape
    factors = rotary(w, position_ids(attention_mask_BS))
    query_pos_BS = torch.arange(n_pos, device=resid_pre_BSM.device).expand(n_rows, n_pos)
    allowed_BSS = allowed_keys(query_pos_BS, attention_mask_BS.bool(), w.window)
    kv = keys_values(w, resid_pre_BSM, factors)
    resid_mid_BSM = resid_pre_BSM + attention_out(w, resid_pre_BSM, factors, kv, allowed_BSS)
    return resid_mid_BSM + mlp_out(w, resid_mid_BSM)

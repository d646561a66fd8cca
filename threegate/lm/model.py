"""A Llama decoder in pure JAX over a flat dict of Hugging Face-named weights.

Shapes: `b` batch, `t` query positions, `s` key positions (cache slots), `v` vocabulary, `d` model width.
Parameters are a flat `dict[str, Array]` keyed by Hugging Face Llama names, in Hugging Face layout (`[out, in]`
for linear weights; see `param_shapes`). They may be stored in bf16 or f32: every weight is upcast to float32 where
it is used, and all arithmetic (norms, attention, softmax, logits) is float32 with matmuls at `MATMUL_PRECISION`
("highest"), so a bf16 checkpoint and its f32 upcast give identical logits.

Padding: `mask` is True on real tokens. Padded positions are masked out as keys, and positions default to
`cumsum(mask) - 1`, so LEFT padding leaves the logits of the real tokens unchanged. Outputs at padded query
positions are finite but meaningless.

RoPE uses the Hugging Face "rotate_half" convention (the two halves of each head are the two coordinates of each
rotated pair), which matches un-permuted Hugging Face `q_proj`/`k_proj` weights.
"""

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jaxtyping import ArrayLike, Bool, Float, Int

from threegate._numerics import MATMUL_PRECISION
from threegate.errors import MismatchError
from threegate.lm.config import LlamaConfig

__all__ = [
    "KVCache",
    "apply_rope",
    "check_params",
    "decode_hidden",
    "decode_step",
    "forward",
    "forward_with_cache",
    "hidden_states",
    "init_params",
    "log_probs",
    "param_shapes",
    "prefill_hidden",
    "rms_norm",
    "rope_angles",
    "stack_layers",
    "unembed",
    "unembedding",
]

_F32 = jnp.float32


def param_shapes(cfg: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """Name → shape of every parameter, in Hugging Face names and layout."""
    shapes = {"model.embed_tokens.weight": (cfg.vocab_size, cfg.d_model)}
    for i in range(cfg.n_layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (cfg.d_model,),
            p + "self_attn.q_proj.weight": (cfg.q_dim, cfg.d_model),
            p + "self_attn.k_proj.weight": (cfg.kv_dim, cfg.d_model),
            p + "self_attn.v_proj.weight": (cfg.kv_dim, cfg.d_model),
            p + "self_attn.o_proj.weight": (cfg.d_model, cfg.q_dim),
            p + "post_attention_layernorm.weight": (cfg.d_model,),
            p + "mlp.gate_proj.weight": (cfg.d_ff, cfg.d_model),
            p + "mlp.up_proj.weight": (cfg.d_ff, cfg.d_model),
            p + "mlp.down_proj.weight": (cfg.d_model, cfg.d_ff),
        }
    shapes["model.norm.weight"] = (cfg.d_model,)
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.vocab_size, cfg.d_model)
    return shapes


def check_params(params: dict, cfg: LlamaConfig) -> None:
    """Raise `MismatchError` unless `params` has exactly the names and shapes of `param_shapes(cfg)`."""
    want = param_shapes(cfg)
    if set(params) != set(want):
        missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
        raise MismatchError(
            f"parameter names differ from the config: missing {missing[:3]}, extra {extra[:3]}"
        )
    for name, shape in want.items():
        if tuple(params[name].shape) != shape:
            raise MismatchError(
                f"{name} has shape {tuple(params[name].shape)}, config says {shape}"
            )


@partial(jax.jit, static_argnames=("cfg", "dtype"))
def init_params(cfg: LlamaConfig, key: Array, dtype=jnp.float32) -> dict[str, Array]:
    """Fresh weights: matrices $\\mathcal N(0, 0.02^2)$ (one f32 draw, sliced, then cast), norm gains 1."""
    shapes = sorted(param_shapes(cfg).items())
    sizes = [math.prod(s) for n, s in shapes if not n.endswith("norm.weight")]
    z = 0.02 * jax.random.normal(key, (sum(sizes),), _F32)
    params, start = {}, 0
    for name, shape in shapes:
        if name.endswith("norm.weight"):
            params[name] = jnp.ones(shape, dtype)
        else:
            size = math.prod(shape)
            params[name] = z[start : start + size].reshape(shape).astype(dtype)
            start += size
    return params


def rms_norm(
    x: Float[Array, "b t d"], w: Float[ArrayLike, " d"], eps: float
) -> Float[Array, "b t d"]:
    """$x \\cdot (\\mathrm{mean}(x^2) + \\epsilon)^{-1/2} \\cdot w$ over the last axis, in float32."""
    x = x.astype(_F32)
    r = jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps)
    return x * r * jnp.asarray(w, _F32)[None, None, :]


def rope_angles(positions: Int[Array, "b t"], head_dim: int, theta: float) -> tuple[Array, Array]:
    """cos and sin of $p\\,\\theta^{-2j/D}$, each duplicated over the two halves: `[b, t, D]` float32."""
    inv_freq = theta ** (-jnp.arange(0, head_dim, 2, dtype=_F32) / head_dim)
    ang = positions.astype(_F32)[:, :, None] * inv_freq[None, None, :]
    ang = jnp.concatenate([ang, ang], axis=-1)
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(
    x: Float[Array, "b t h e"], cos: Float[Array, "b t e"], sin: Float[Array, "b t e"]
) -> Array:
    """Rotate each pair $(x_j, x_{j+D/2})$ by its angle: $x\\cos + \\mathrm{rotate\\_half}(x)\\sin$."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]


def _linear(x: Array, w: Array) -> Array:
    """`x @ w.T` for a Hugging Face `[out, in]` weight, in float32 at `MATMUL_PRECISION`."""
    return jnp.einsum("...i,oi->...o", x, w.astype(_F32), precision=MATMUL_PRECISION)


def _attend(q: Array, k: Array, v: Array, allowed: Array, n_rep: int) -> Array:
    """Softmax attention with GQA: query head $h$ reads key/value head $\\lfloor h / n_{rep} \\rfloor$.

    q `[b, t, H_q, D]`, k and v `[b, s, H_kv, D]`, allowed `[b, t, s]` → `[b, t, H_q D]`.
    """
    b, t, hq, hd = q.shape
    qg = q.reshape(b, t, hq // n_rep, n_rep, hd)
    scores = jnp.einsum("btgrd,bsgd->bgrts", qg, k, precision=MATMUL_PRECISION) / jnp.sqrt(
        float(hd)
    )
    scores = jnp.where(allowed[:, None, None, :, :], scores, jnp.finfo(_F32).min)
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bgrts,bsgd->btgrd", probs, v, precision=MATMUL_PRECISION)
    return out.reshape(b, t, hq * hd)


_LAYER_NAMES = (
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
)


def stack_layers(params: dict, cfg: LlamaConfig, dtype=None) -> dict[str, Array]:
    """The blocks' weights stacked over layers: `{short name: [L, ...]}` (one copy; cast to `dtype` if given).

    Inside a jitted function the stack fuses with the cast, so stacking bf16 weights into float32 costs what the
    upcast alone costs.
    """
    return {
        n: jnp.stack(
            [
                params[f"model.layers.{i}.{n}"]
                if dtype is None
                else params[f"model.layers.{i}.{n}"].astype(dtype)
                for i in range(cfg.n_layers)
            ]
        )
        for n in _LAYER_NAMES
    }


def _block(
    w: dict, cfg: LlamaConfig, h: Array, cos: Array, sin: Array, attend
) -> tuple[Array, Any]:
    """One decoder block on the residual stream `h`; `attend(q, k, v) -> (out [b, t, H_q D], aux)`."""
    b, t = h.shape[:2]
    x = rms_norm(h, w["input_layernorm.weight"], cfg.rms_eps)
    q = _linear(x, w["self_attn.q_proj.weight"]).reshape(b, t, cfg.n_heads, cfg.head_dim)
    k = _linear(x, w["self_attn.k_proj.weight"]).reshape(b, t, cfg.n_kv_heads, cfg.head_dim)
    v = _linear(x, w["self_attn.v_proj.weight"]).reshape(b, t, cfg.n_kv_heads, cfg.head_dim)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    att, aux = attend(q, k, v)
    h = h + _linear(att, w["self_attn.o_proj.weight"])
    x = rms_norm(h, w["post_attention_layernorm.weight"], cfg.rms_eps)
    gate = jax.nn.silu(_linear(x, w["mlp.gate_proj.weight"]))
    h = h + _linear(gate * _linear(x, w["mlp.up_proj.weight"]), w["mlp.down_proj.weight"])
    return h, aux


def _decoder(
    params: dict,
    layers: dict,
    cfg: LlamaConfig,
    tokens: Array,
    positions: Array,
    attend,
    per_layer=None,
    remat: bool = False,
) -> tuple[Array, Any]:
    """Embedding, the `n_layers` blocks as one `lax.scan` over `layers` (see `stack_layers`), final norm.

    `attend(q, k, v, xs) -> (out, aux)` does one layer's attention, where `xs` is that layer's slice of
    `per_layer` (e.g. its KV-cache slots); the stacked `aux` of all layers is returned with the normed hidden
    states `[b, t, d]`. One block is compiled once, whatever the depth. `remat` rematerialises the block in a
    backward pass (`jax.checkpoint`): only each layer's input residual stream `[b, t, d]` is kept, and the block's
    activations are recomputed, one more forward of the blocks for a memory of one layer instead of all.
    """
    h = jnp.take(params["model.embed_tokens.weight"], tokens, axis=0).astype(_F32)
    cos, sin = rope_angles(positions, cfg.head_dim, cfg.rope_theta)

    def body(h, xs):
        w, extra = xs
        return _block(w, cfg, h, cos, sin, lambda q, k, v: attend(q, k, v, extra))

    if remat:
        body = jax.checkpoint(body)
    h, aux = jax.lax.scan(body, h, (layers, per_layer))
    return rms_norm(h, params["model.norm.weight"], cfg.rms_eps), aux


def unembedding(params: dict, cfg: LlamaConfig) -> Array:
    """The unembedding matrix `[V, d]`: the tied embedding, or `lm_head.weight`."""
    return params["model.embed_tokens.weight" if cfg.tie_embeddings else "lm_head.weight"]


def _unembed(params: dict, cfg: LlamaConfig, h: Array) -> Array:
    return _linear(h, unembedding(params, cfg))


def unembed(params: dict, cfg: LlamaConfig, h: Float[Array, "*b d"]) -> Float[Array, "*b v"]:
    """Logits $z = h E^\top$ (tied) or $h W_{lm}^\top$ from normed hidden states (float32)."""
    return _unembed(params, cfg, h)


def _canonical(cfg: LlamaConfig, tokens, mask, positions):
    """Validate static properties; return int32 tokens, bool mask and int32 positions."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise TypeError(
            f"tokens must be an integer [batch, time] array, got {tokens.dtype}{list(tokens.shape)}"
        )
    if tokens.shape[1] > cfg.max_seq_len:
        raise ValueError(f"sequence length {tokens.shape[1]} exceeds max_seq_len={cfg.max_seq_len}")
    tokens = tokens.astype(jnp.int32)
    mask = jnp.ones(tokens.shape, bool) if mask is None else jnp.asarray(mask)
    if mask.shape != tokens.shape or mask.dtype != jnp.bool_:
        raise TypeError(
            f"mask must be bool with the tokens' shape {tokens.shape}, got {mask.dtype}{list(mask.shape)}"
        )
    if positions is None:
        positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)
    positions = jnp.asarray(positions).astype(jnp.int32)
    if positions.shape != tokens.shape:
        raise TypeError(
            f"positions must have the tokens' shape {tokens.shape}, got {list(positions.shape)}"
        )
    return tokens, mask, positions


def _self_allowed(mask: Array) -> Array:
    """`[b, t, t]`: causal AND key is a real token, OR the diagonal (so a pad query never has an empty row)."""
    t = mask.shape[1]
    causal = jnp.tril(jnp.ones((t, t), bool))[None, :, :]
    return (causal & mask[:, None, :]) | jnp.eye(t, dtype=bool)[None, :, :]


def _hidden(params, cfg, tokens, mask, positions, layers, remat=False):
    check_params(params, cfg)
    tokens, mask, positions = _canonical(cfg, tokens, mask, positions)
    allowed = _self_allowed(mask)
    if layers is None:
        layers = stack_layers(params, cfg)
    h, _ = _decoder(
        params,
        layers,
        cfg,
        tokens,
        positions,
        lambda q, k, v, _: (_attend(q, k, v, allowed, cfg.n_rep), None),
        remat=remat,
    )
    return h


@partial(jax.jit, static_argnames=("cfg", "remat"))
def hidden_states(
    params: dict,
    cfg: LlamaConfig,
    tokens: Int[ArrayLike, "b t"],
    *,
    mask: Bool[ArrayLike, "b t"] | None = None,
    positions: Int[ArrayLike, "b t"] | None = None,
    layers: dict | None = None,
    remat: bool = False,
) -> Float[Array, "b t d"]:
    """The final-normed hidden states $h_{b,t}$ whose `unembed` gives `forward`'s logits (float32).

    Cheaper than `forward` when only some positions need logits (the vocabulary projection is $V \times d$ per
    position). `layers` may hold the blocks' weights already stacked (`stack_layers`, any float dtype); by
    default they are stacked from `params`. `remat` recomputes each block in a backward pass instead of keeping
    its activations (same values and gradients; see `_decoder`).
    """
    return _hidden(params, cfg, tokens, mask, positions, layers, remat)


@partial(jax.jit, static_argnames=("cfg",))
def forward(
    params: dict,
    cfg: LlamaConfig,
    tokens: Int[ArrayLike, "b t"],
    *,
    mask: Bool[ArrayLike, "b t"] | None = None,
    positions: Int[ArrayLike, "b t"] | None = None,
) -> Float[Array, "b t v"]:
    """Next-token logits $z_{b,t} \\in \\mathbb R^V$ of a Llama decoder (float32).

    Args:
      params: Hugging Face-named weights (bf16 or f32), see `param_shapes`.
      cfg: the model's shape (static).
      tokens: int `[b, t]` token ids.
      mask: bool `[b, t]`, True on real tokens (default all True). Pads are never attended to.
      positions: int `[b, t]` RoPE positions (default `cumsum(mask) - 1`, which makes left padding invisible).

    Returns:
      float32 `[b, t, V]` logits; row t predicts token t + 1.
    """
    return _unembed(params, cfg, _hidden(params, cfg, tokens, mask, positions, None))


@partial(jax.jit, static_argnames=("cfg",))
def log_probs(
    params: dict, cfg: LlamaConfig, tokens: Int[ArrayLike, "b t"], mask: Bool[ArrayLike, "b t"]
) -> Float[Array, "b t1"]:
    """$\\log \\pi(x_{t+1} \\mid x_{\\le t})$ of each next token at temperature 1: `[b, t - 1]` float32.

    Computed as the target's logit minus $\\mathrm{logsumexp}$ of the logits. Entries whose target is a pad
    (`mask[:, 1:]` False) are set to 0, so `log_probs(...).sum()` sums over real next tokens only.
    """
    tokens = jnp.asarray(tokens)
    mask = jnp.asarray(mask)
    logits = forward(params, cfg, tokens, mask=mask)[:, :-1]
    target = tokens[:, 1:].astype(jnp.int32)
    picked = jnp.take_along_axis(logits, target[:, :, None], axis=-1)[:, :, 0]
    lp = picked - jax.nn.logsumexp(logits, axis=-1)
    return jnp.where(mask[:, 1:], lp, 0.0)


class KVCache(NamedTuple):
    """Keys and values of every layer for `s` slots, and where the next token goes.

    Attributes:
      k, v: float32 `[L, b, s, H_kv, D]`, stacked over layers (RoPE already applied to k).
      key_mask: bool `[b, s]`, True on slots holding a real token.
      positions: int32 `[b]`, the RoPE position of the next token of each row.
      length: int32 scalar, the next slot to write (the same for all rows; prompts are left-padded).
    """

    k: Array
    v: Array
    key_mask: Array
    positions: Array
    length: Array


def prefill_hidden(
    params: dict,
    cfg: LlamaConfig,
    tokens: Int[ArrayLike, "b t"],
    mask: Bool[ArrayLike, "b t"],
    cache_size: int,
    layers: dict[str, Array] | None,
) -> tuple[Float[Array, "b t d"], KVCache]:
    """Normed hidden states of a left-padded prompt and the KV cache of `cache_size` slots.

    `layers` are `stack_layers(params, cfg)` when the caller has them already (None: stacked here). The
    un-jitted body of `forward_with_cache`, for callers that trace it inside their own jit (`sample.generate`).
    """
    check_params(params, cfg)
    tokens, mask, positions = _canonical(cfg, tokens, mask, None)
    t = tokens.shape[1]
    if not t <= cache_size <= cfg.max_seq_len:
        raise ValueError(
            f"need prompt length {t} <= cache_size {cache_size} <= max_seq_len {cfg.max_seq_len}"
        )
    if layers is None:
        layers = stack_layers(params, cfg)
    allowed = _self_allowed(mask)
    pad = ((0, 0), (0, cache_size - t), (0, 0), (0, 0))

    def attend(q, k, v, _):
        return _attend(q, k, v, allowed, cfg.n_rep), (jnp.pad(k, pad), jnp.pad(v, pad))

    h, (ks, vs) = _decoder(params, layers, cfg, tokens, positions, attend)
    cache = KVCache(
        k=ks,
        v=vs,
        key_mask=jnp.pad(mask, ((0, 0), (0, cache_size - t))),
        positions=jnp.sum(mask.astype(jnp.int32), axis=1),
        length=jnp.asarray(t, jnp.int32),
    )
    return h, cache


@partial(jax.jit, static_argnames=("cfg", "cache_size"))
def forward_with_cache(
    params: dict,
    cfg: LlamaConfig,
    tokens: Int[ArrayLike, "b t"],
    mask: Bool[ArrayLike, "b t"],
    *,
    cache_size: int,
) -> tuple[Float[Array, "b t v"], KVCache]:
    """`forward` on a (left-padded) prompt, also returning a KV cache of `cache_size >= t` slots."""
    h, cache = prefill_hidden(params, cfg, tokens, mask, cache_size, None)
    return _unembed(params, cfg, h), cache


def decode_hidden(
    params: dict,
    cfg: LlamaConfig,
    cache: KVCache,
    tokens: Int[ArrayLike, " b"],
    layers: dict[str, Array],
) -> tuple[Float[Array, "b d"], KVCache]:
    """One token per row at slot `cache.length` → (normed hidden `[b, d]`, new cache).

    The un-jitted body of `decode_step` with the stacked `layers` passed in (`sample.generate` stacks them once).
    """
    tokens = jnp.asarray(tokens).astype(jnp.int32)[:, None]
    b = tokens.shape[0]
    slot = cache.length
    key_mask = jax.lax.dynamic_update_slice(cache.key_mask, jnp.ones((b, 1), bool), (0, slot))
    allowed = key_mask[:, None, :]

    def attend(q, k, v, kv):
        k_all = jax.lax.dynamic_update_slice(kv[0], k, (0, slot, 0, 0))
        v_all = jax.lax.dynamic_update_slice(kv[1], v, (0, slot, 0, 0))
        return _attend(q, k_all, v_all, allowed, cfg.n_rep), (k_all, v_all)

    h, (ks, vs) = _decoder(
        params, layers, cfg, tokens, cache.positions[:, None], attend, (cache.k, cache.v)
    )
    return h[:, 0], KVCache(ks, vs, key_mask, cache.positions + 1, slot + 1)


@partial(jax.jit, static_argnames=("cfg",))
def decode_step(
    params: dict, cfg: LlamaConfig, cache: KVCache, tokens: Int[ArrayLike, " b"]
) -> tuple[Float[Array, "b v"], KVCache]:
    """Feed one token per row at slot `cache.length`; return its next-token logits `[b, V]` and the new cache.

    Equals the last row of `forward` on the whole sequence so far. The caller keeps `cache.length` below the
    cache size (a write past the end is clamped by `dynamic_update_slice`, overwriting the last slot).
    """
    check_params(params, cfg)
    h, cache = decode_hidden(params, cfg, cache, tokens, stack_layers(params, cfg))
    return _unembed(params, cfg, h), cache

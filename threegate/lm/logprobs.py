"""Log-probabilities of chosen tokens, over vocabulary chunks, without materialising `[..., V]` logits.

With normed hidden states $h$ (`[b, n, d]`), the unembedding $E$ (`[V, d]`) and a temperature $T$, the logits are
$z = hE^\\top/T$ and $\\log\\pi(y) = z_y - \\mathrm{logsumexp}(z)$. `E` is split into `C` row blocks of `chunk`
rows and the logsumexp is accumulated online over the blocks (running max $m$ and sum $s$:
$m' = \\max(m, \\max z_c)$, $s' = s\\,e^{m-m'} + \\sum e^{z_c-m'}$), so at most one `[b, n, chunk]` block of logits
exists at a time.

Chunking alone saves nothing in a backward pass that keeps every block for the gradient, so `token_logprobs` has
a custom VJP that recomputes each block: with $p = \\mathrm{softmax}(z)$ and cotangent $g$ of $\\log\\pi(y)$,
$\\partial\\log\\pi(y)/\\partial z = e_y - p$, hence $\\bar z_c = g\\,(e_{y,c} - p_c)/T$,
$\\bar h = \\sum_c \\bar z_c E_c$ and $\\bar E_c = \\bar z_c^\\top h$ — one extra `h E_cᵀ` per block (the
vocabulary projection costs 4 instead of 3 of its forwards).

`token_stats` gives, in one chunked pass and without gradients, what the trainer logs on its samples: the
log-probability of each token under two policies, the exact token-wise $\\mathrm{KL}(\\pi\\|\\pi_{ref}) =
\\sum_v p_v(z_v - z^{ref}_v) - \\mathrm{lse}(z) + \\mathrm{lse}(z^{ref})$ and the entropy $H = \\mathrm{lse}(z) -
\\sum_v p_v z_v$ (metric M14 of the digest).

All arithmetic is float32 at `MATMUL_PRECISION`; the unchunked float64 reference is in the tests.
"""

from functools import partial

import jax
import jax.numpy as jnp
from jax import Array
from jaxtyping import ArrayLike, Float, Int

from threegate._numerics import MATMUL_PRECISION
from threegate.lm.config import LlamaConfig
from threegate.lm.model import hidden_states, unembed

__all__ = [
    "DEFAULT_CHUNK",
    "chunk_size",
    "completion_hidden",
    "completion_logits",
    "token_logprobs",
    "token_stats",
]

#: Target rows of `E` per block: 8192 × d=576 float32 is 19 MB of weights and `[b, n, 8192]` logits per block.
DEFAULT_CHUNK = 8192

_F32 = jnp.float32


def completion_hidden(
    params: dict,
    mcfg: LlamaConfig,
    prompts: Int[ArrayLike, "b t"],
    prompt_mask: Array,
    completion: Int[ArrayLike, "b n"],
    completion_mask: Array,
    *,
    remat: bool = False,
) -> Float[Array, "b n d"]:
    """Normed hidden states at the `n` positions that predict the completion tokens (prompt and completion run
    as one left-padded sequence; the position before completion token `j` predicts it)."""
    t = prompts.shape[1]
    full = jnp.concatenate([prompts, completion], axis=1)
    fmask = jnp.concatenate([prompt_mask, completion_mask], axis=1)
    h = hidden_states(params, mcfg, full, mask=fmask, remat=remat)
    return h[:, t - 1 : -1]


def completion_logits(
    params: dict,
    mcfg: LlamaConfig,
    prompts: Int[ArrayLike, "b t"],
    prompt_mask: Array,
    completion: Int[ArrayLike, "b n"],
    completion_mask: Array,
    temperature: float | Array = 1.0,
) -> Float[Array, "b n v"]:
    """Full logits `[b, n, V]` / T that predict each completion token (for the gate and curvature checks, which
    need the whole distribution at a few positions; the trainer uses `token_logprobs` instead)."""
    h = completion_hidden(params, mcfg, prompts, prompt_mask, completion, completion_mask)
    return unembed(params, mcfg, h) / temperature


def chunk_size(vocab: int, target: int = DEFAULT_CHUNK) -> int:
    """The largest divisor of `vocab` that is ≤ `target` and ≥ target/4; else `target` (the last block padded)."""
    if vocab <= target:
        return vocab
    for c in range(target, max(target // 4, 1) - 1, -1):
        if vocab % c == 0:
            return c
    return target


def _blocks(w: Array, chunk: int) -> tuple[Array, int]:
    """`w [V, d]` as `[C, chunk, d]` float32 blocks (zero rows pad the last block); returns (blocks, V)."""
    v, d = w.shape
    c = -(-v // chunk)
    w = w.astype(_F32)
    if c * chunk != v:
        w = jnp.pad(w, ((0, c * chunk - v), (0, 0)))
    return w.reshape(c, chunk, d), v


def _block_logits(h: Array, wc: Array, c: Array, chunk: int, vocab: int, temperature) -> Array:
    """`[b, n, chunk]` logits of block `c` (padded columns at −inf)."""
    z = jnp.einsum("bnd,kd->bnk", h, wc, precision=MATMUL_PRECISION) / temperature
    cols = c * chunk + jnp.arange(chunk)
    return jnp.where((cols < vocab)[None, None, :], z, -jnp.inf)


def _online_lse(m: Array, s: Array, z: Array) -> tuple[Array, Array, Array]:
    """One step of the online logsumexp; returns (new max, new sum, the rescale factor of old sums)."""
    m_new = jnp.maximum(m, jnp.max(z, axis=-1))
    scale = jnp.exp(m - m_new)
    return m_new, s * scale + jnp.sum(jnp.exp(z - m_new[..., None]), axis=-1), scale


def _forward(h, w, tokens, temperature, chunk):
    blocks, vocab = _blocks(w, chunk)
    b, n = tokens.shape
    init = (
        jnp.full((b, n), -jnp.inf, _F32),
        jnp.zeros((b, n), _F32),
        jnp.zeros((b, n), _F32),
    )

    def body(carry, xs):
        m, s, picked = carry
        wc, c = xs
        z = _block_logits(h, wc, c, chunk, vocab, temperature)
        m, s, _ = _online_lse(m, s, z)
        local = tokens - c * chunk
        inside = (local >= 0) & (local < chunk)
        zy = jnp.take_along_axis(z, jnp.clip(local, 0, chunk - 1)[..., None], axis=-1)[..., 0]
        return (m, s, jnp.where(inside, zy, picked)), None

    (m, s, picked), _ = jax.lax.scan(body, init, (blocks, jnp.arange(blocks.shape[0])))
    lse = m + jnp.log(s)
    return picked - lse, lse


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _token_logprobs(h, w, tokens, temperature, chunk):
    return _forward(h, w, tokens, temperature, chunk)[0]


def _fwd(h, w, tokens, temperature, chunk):
    logp, lse = _forward(h, w, tokens, temperature, chunk)
    return logp, (h, w, tokens, lse)


def _bwd(temperature, chunk, res, g):
    h, w, tokens, lse = res
    blocks, vocab = _blocks(w, chunk)

    def body(dh, xs):
        wc, c = xs
        z = _block_logits(h, wc, c, chunk, vocab, temperature)
        p = jnp.exp(z - lse[..., None])
        onehot = (tokens[..., None] - c * chunk) == jnp.arange(chunk)[None, None, :]
        dz = g[..., None] * (onehot.astype(_F32) - p) / temperature
        dh = dh + jnp.einsum("bnk,kd->bnd", dz, wc, precision=MATMUL_PRECISION)
        dwc = jnp.einsum("bnk,bnd->kd", dz, h, precision=MATMUL_PRECISION)
        return dh, dwc

    dh, dw = jax.lax.scan(body, jnp.zeros_like(h), (blocks, jnp.arange(blocks.shape[0])))
    dw = dw.reshape(-1, w.shape[1])[:vocab].astype(w.dtype)
    return dh.astype(h.dtype), dw, None


_token_logprobs.defvjp(_fwd, _bwd)


def token_logprobs(
    h: Float[ArrayLike, "b n d"],
    w: Float[ArrayLike, "v d"],
    tokens: Int[ArrayLike, "b n"],
    *,
    temperature: float = 1.0,
    chunk: int | None = None,
) -> Float[Array, "b n"]:
    """$\\log\\mathrm{softmax}(hE^\\top/T)_y$ of the tokens `y`, chunked over the vocabulary, with a backward pass
    that recomputes each block (differentiable in `h` and `w`; `tokens` and `temperature` are constants).

    Args:
      h: float32 normed hidden states at the positions that predict `tokens`.
      w: the unembedding `[V, d]` (the tied embedding or `lm_head`), any float dtype.
      tokens: int ids in `[0, V)`.
      temperature: $T > 0$ (a Python float: it is part of the compiled code).
      chunk: rows of `w` per block (default `chunk_size(V)`).
    """
    h, w = jnp.asarray(h), jnp.asarray(w)
    chunk = chunk_size(w.shape[0]) if chunk is None else int(chunk)
    return _token_logprobs(
        h.astype(_F32), w, jnp.asarray(tokens, jnp.int32), float(temperature), chunk
    )


def token_stats(
    h: Float[ArrayLike, "b n d"],
    w: Float[ArrayLike, "v d"],
    tokens: Int[ArrayLike, "b n"],
    h_ref: Float[ArrayLike, "b n d"],
    w_ref: Float[ArrayLike, "v d"],
    *,
    temperature: float = 1.0,
    chunk: int | None = None,
) -> dict[str, Float[Array, "b n"]]:
    """Per-token statistics of the policy $\\pi$ (`h`, `w`) against a reference $\\pi_{ref}$ (`h_ref`, `w_ref`),
    both at temperature `T`, in one chunked pass (no gradient).

    Returns `{"logp", "logp_ref", "kl_exact", "entropy"}`, each `[b, n]`: $\\log\\pi(y)$, $\\log\\pi_{ref}(y)$,
    $\\mathrm{KL}(\\pi\\|\\pi_{ref})$ over the whole vocabulary at each position, and the entropy of $\\pi$.
    """
    h, w, h_ref, w_ref = (jnp.asarray(x) for x in (h, w, h_ref, w_ref))
    chunk = chunk_size(w.shape[0]) if chunk is None else int(chunk)
    h, h_ref = jax.lax.stop_gradient(h.astype(_F32)), jax.lax.stop_gradient(h_ref.astype(_F32))
    blocks, vocab = _blocks(jax.lax.stop_gradient(w), chunk)
    blocks_ref, vocab_ref = _blocks(jax.lax.stop_gradient(w_ref), chunk)
    if vocab != vocab_ref:
        raise ValueError(f"the two unembeddings differ in vocabulary: {vocab} and {vocab_ref}")
    tokens = jnp.asarray(tokens, jnp.int32)
    b, n = tokens.shape
    zeros = jnp.zeros((b, n), _F32)
    neg = jnp.full((b, n), -jnp.inf, _F32)
    temperature = float(temperature)

    def body(carry, xs):
        m, s, a, kl, mr, sr, zy, zry = carry
        wc, wrc, c = xs
        z = _block_logits(h, wc, c, chunk, vocab, temperature)
        zr = _block_logits(h_ref, wrc, c, chunk, vocab, temperature)
        m, s, scale = _online_lse(m, s, z)
        e = jnp.exp(z - m[..., None])
        finite = jnp.isfinite(z)
        a = a * scale + jnp.sum(jnp.where(finite, e * z, 0.0), axis=-1)
        kl = kl * scale + jnp.sum(jnp.where(finite, e * (z - zr), 0.0), axis=-1)
        mr, sr, _ = _online_lse(mr, sr, zr)
        local = tokens - c * chunk
        inside = (local >= 0) & (local < chunk)
        idx = jnp.clip(local, 0, chunk - 1)[..., None]
        zy = jnp.where(inside, jnp.take_along_axis(z, idx, axis=-1)[..., 0], zy)
        zry = jnp.where(inside, jnp.take_along_axis(zr, idx, axis=-1)[..., 0], zry)
        return (m, s, a, kl, mr, sr, zy, zry), None

    init = (neg, zeros, zeros, zeros, neg, zeros, zeros, zeros)
    xs = (blocks, blocks_ref, jnp.arange(blocks.shape[0]))
    (m, s, a, kl, mr, sr, zy, zry), _ = jax.lax.scan(body, init, xs)
    lse, lse_ref = m + jnp.log(s), mr + jnp.log(sr)
    return {
        "logp": zy - lse,
        "logp_ref": zry - lse_ref,
        "kl_exact": kl / s - lse + lse_ref,
        "entropy": lse - a / s,
    }

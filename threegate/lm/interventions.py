"""Function-preserving geometry interventions on one attention block (paper Sec. 4.3, App. D, Prop D.1).

HF layout, weights `[out, in]`: `q_proj` `[H_q D, d]`, `k_proj`/`v_proj` `[H_kv D, d]`, `o_proj` `[d, H_q D]`;
GQA with $n_{rep} = H_q/H_{kv}$ (query head $h$ reads KV head $\\lfloor h/n_{rep}\\rfloor$).

* V/O rotation (eq. 11, Prop D.1): an orthogonal $R\\in\\mathbb R^{D\\times D}$, $R_{kv}=\\mathrm{diag}(R,\\dots,R)$ over
  the $H_{kv}$ KV heads and $R_q$ over the $H_q$ query heads; `v_proj' = R_kvᵀ v_proj`, `o_proj' = o_proj R_q`.
  Each head's context becomes $R^\\top\\mathrm{ctx}_h$ and $W_o R_q R_q^\\top = W_o$, so the block computes the same
  function (V and O are untouched by RoPE). Q/K are not rotated: RoPE does not commute with a general $R$.
* Head permutation: a permutation `perm_kv` of the KV heads (gather index) and its grouped expansion to query
  heads, `perm_q[h] = perm_kv[h // n_rep]·n_rep + h mod n_rep`; the row blocks of k/v by `perm_kv`, the row blocks
  of q and the column blocks of o by `perm_q`. A relabelling of heads: the same function, exactly.

In exact arithmetic both are invariances; in floating point the outputs differ by rounding only (the
permutation reorders one sum, the rotation adds a product). A bf16-stored model is not invariant under a rotation
(the rotated weights are rounded again), so invariance is checked on float32 parameters.
`unpermute_mask` maps an update mask of a permuted block back to the original head order (exact); a rotation has
no coordinate-wise inverse.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from threegate._numerics import tol
from threegate.lm.config import LlamaConfig

__all__ = [
    "haar_orthogonal",
    "permute_heads",
    "query_permutation",
    "rotate_vo",
    "unpermute_mask",
]


def _name(layer: int, proj: str) -> str:
    return f"model.layers.{layer}.self_attn.{proj}.weight"


def _check_layer(params: dict, cfg: LlamaConfig, layer: int) -> None:
    if not 0 <= layer < cfg.n_layers or _name(layer, "v_proj") not in params:
        raise ValueError(f"layer must be in [0, {cfg.n_layers}), got {layer}")


def haar_orthogonal(key: jax.Array, d: int) -> jax.Array:
    """A Haar-distributed orthogonal `[d, d]` float32 matrix: QR of a Gaussian with the signs of diag(R) fixed."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (d, d), jnp.float32))
    return q * jnp.sign(jnp.diagonal(r))[None, :]


def rotate_vo(params: dict, cfg: LlamaConfig, layer: int, rot: ArrayLike) -> dict:
    """Params with block `layer`'s V/O rotated by the orthogonal `rot` `[D, D]` (eq. 11); others shared.

    Raises:
      ValueError: `rot` is not `[head_dim, head_dim]` or not orthogonal to float32 rounding.
    """
    _check_layer(params, cfg, layer)
    r = jnp.asarray(rot, jnp.float32)
    d = cfg.head_dim
    if r.shape != (d, d):
        raise ValueError(f"rot must be [{d}, {d}], got {list(r.shape)}")
    err = float(jnp.max(jnp.abs(r.T @ r - jnp.eye(d, dtype=jnp.float32))))
    if err > tol(jnp.float32, d):
        raise ValueError(f"rot is not orthogonal: max |RᵀR − I| = {err:.2e}")
    hi = jax.lax.Precision.HIGHEST
    v = jnp.asarray(params[_name(layer, "v_proj")], jnp.float32)
    o = jnp.asarray(params[_name(layer, "o_proj")], jnp.float32)
    v3 = v.reshape(cfg.n_kv_heads, d, -1)
    o3 = o.reshape(o.shape[0], cfg.n_heads, d)
    new = dict(params)
    new[_name(layer, "v_proj")] = jnp.einsum("de,hdi->hei", r, v3, precision=hi).reshape(v.shape)
    new[_name(layer, "o_proj")] = jnp.einsum("ohd,de->ohe", o3, r, precision=hi).reshape(o.shape)
    return new


def query_permutation(cfg: LlamaConfig, perm_kv: Sequence[int] | ArrayLike) -> np.ndarray:
    """The grouped expansion of a KV-head permutation to query heads (`perm_q`, a gather index)."""
    p = np.asarray(perm_kv, np.int64)
    if sorted(p.tolist()) != list(range(cfg.n_kv_heads)):
        raise ValueError(
            f"perm_kv must be a permutation of range({cfg.n_kv_heads}), got {p.tolist()}"
        )
    h = np.arange(cfg.n_heads)
    return p[h // cfg.n_rep] * cfg.n_rep + h % cfg.n_rep


def _gather_rows(w, perm: np.ndarray, d: int):
    w = jnp.asarray(w)
    return w.reshape(len(perm), d, -1)[perm].reshape(w.shape)


def _gather_cols(w, perm: np.ndarray, d: int):
    w = jnp.asarray(w)
    return w.reshape(w.shape[0], len(perm), d)[:, perm].reshape(w.shape)


def permute_heads(
    params: dict, cfg: LlamaConfig, layer: int, perm_kv: Sequence[int] | ArrayLike
) -> dict:
    """Params with block `layer`'s heads relabelled by the KV-head permutation `perm_kv` (gather index).

    New KV head $g$ is old KV head `perm_kv[g]`; new query head $h$ is old query head `perm_q[h]`
    (`query_permutation`). The weights are gathered, not recomputed, so any dtype is kept bit for bit.
    """
    _check_layer(params, cfg, layer)
    pkv = np.asarray(perm_kv, np.int64)
    pq = query_permutation(cfg, pkv)
    d = cfg.head_dim
    new = dict(params)
    for proj in ("k_proj", "v_proj"):
        new[_name(layer, proj)] = _gather_rows(params[_name(layer, proj)], pkv, d)
    new[_name(layer, "q_proj")] = _gather_rows(params[_name(layer, "q_proj")], pq, d)
    new[_name(layer, "o_proj")] = _gather_cols(params[_name(layer, "o_proj")], pq, d)
    return new


def unpermute_mask(
    mask: ArrayLike, proj: str, cfg: LlamaConfig, perm_kv: Sequence[int] | ArrayLike
) -> np.ndarray:
    """An update mask of a head-permuted block's `proj` weight, in the original head order.

    Entry (new head $h$, ...) of the permuted weight is entry (old head `perm[h]`, ...) of the original, so
    the mask is scattered back: `out[perm[h]] = mask[h]` (row blocks of q/k/v, column blocks of o).
    """
    m = np.asarray(mask)
    pkv = np.asarray(perm_kv, np.int64)
    perm = pkv if proj in ("k_proj", "v_proj") else query_permutation(cfg, pkv)
    d = cfg.head_dim
    out = np.empty_like(m)
    if proj in ("q_proj", "k_proj", "v_proj"):
        out.reshape(len(perm), d, -1)[perm] = m.reshape(len(perm), d, -1)
    elif proj == "o_proj":
        out.reshape(m.shape[0], len(perm), d)[:, perm] = m.reshape(m.shape[0], len(perm), d)
    else:
        raise ValueError(f"proj must be q_proj, k_proj, v_proj or o_proj, got {proj!r}")
    return out

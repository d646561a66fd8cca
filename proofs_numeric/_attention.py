"""A small GQA attention block in Hugging Face layout (NumPy, any float dtype), for Prop D.1.

Layout: `nn.Linear.weight` is `[out, in]`; `q_proj [H_q D, d]`, `k_proj`/`v_proj [H_kv D, d]` (+ biases `[H·D]`),
`o_proj [d, H_q D]`, no o bias; query head `h` reads KV head `h // n_rep`. RoPE is HF's `rotate_half` form on Q and K
(frequencies `base^{-2i/D}`, each repeated on both halves). Causal mask. Input `x [S, d]`, output `[S, d]`.
"""

from typing import NamedTuple

import numpy as np

__all__ = ["AttentionParams", "attention", "haar_orthogonal", "hadamard", "random_params", "rope"]


class AttentionParams(NamedTuple):
    q_proj: np.ndarray
    q_bias: np.ndarray
    k_proj: np.ndarray
    k_bias: np.ndarray
    v_proj: np.ndarray
    v_bias: np.ndarray
    o_proj: np.ndarray
    n_q: int
    n_kv: int
    head_dim: int


def random_params(
    rng: np.random.Generator, d_model: int, n_q: int, n_kv: int, head_dim: int, dtype
) -> AttentionParams:
    def w(o, i):
        return (rng.normal(size=(o, i)) / np.sqrt(i)).astype(dtype)

    return AttentionParams(
        w(n_q * head_dim, d_model),
        rng.normal(size=n_q * head_dim).astype(dtype),
        w(n_kv * head_dim, d_model),
        rng.normal(size=n_kv * head_dim).astype(dtype),
        w(n_kv * head_dim, d_model),
        rng.normal(size=n_kv * head_dim).astype(dtype),
        w(d_model, n_q * head_dim),
        n_q,
        n_kv,
        head_dim,
    )


def rope(x: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """HF rotary embedding of `x [S, H, D]` at positions 0..S-1."""
    s, _, d = x.shape
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.arange(s, dtype=np.float64)[:, None] * inv[None, :]
    cos = np.cos(np.concatenate([ang, ang], axis=1)).astype(x.dtype)[:, None, :]
    sin = np.sin(np.concatenate([ang, ang], axis=1)).astype(x.dtype)[:, None, :]
    half = np.concatenate([-x[..., d // 2 :], x[..., : d // 2]], axis=-1)
    return x * cos + half * sin


def attention(p: AttentionParams, x: np.ndarray) -> np.ndarray:
    s = x.shape[0]
    d, rep = p.head_dim, p.n_q // p.n_kv
    q = rope((x @ p.q_proj.T + p.q_bias).reshape(s, p.n_q, d))
    k = rope((x @ p.k_proj.T + p.k_bias).reshape(s, p.n_kv, d))
    v = (x @ p.v_proj.T + p.v_bias).reshape(s, p.n_kv, d)
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    scores = np.einsum("shd,thd->hst", q, k) / np.sqrt(np.asarray(d, dtype=x.dtype))
    scores = np.where(np.tril(np.ones((s, s), dtype=bool))[None], scores, -np.inf)
    w = np.exp(scores - scores.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    ctx = np.einsum("hst,thd->shd", w, v).reshape(s, p.n_q * d)
    return ctx @ p.o_proj.T


def haar_orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    """Haar-distributed orthogonal matrix (QR of a Gaussian with the sign fix)."""
    qm, r = np.linalg.qr(rng.normal(size=(n, n)))
    return qm * np.sign(np.diag(r))[None, :]


def hadamard(n: int) -> np.ndarray:
    """Normalised Sylvester Hadamard matrix (n a power of 2): orthogonal."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    if h.shape[0] != n:
        raise ValueError(f"n must be a power of 2, got {n}")
    return h / np.sqrt(n)

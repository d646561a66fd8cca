"""A float64 NumPy Llama, written from the math (per-head loops, explicit pair rotations), as the tests' reference.

It shares no code with `threegate.lm.model`: RoPE rotates each pair $(x_j, x_{j+D/2})$ by $p\\,\\theta^{-2j/D}$
as a 2×2 rotation, and attention loops over query heads, reading key/value head $h // n_{rep}$.
"""

import numpy as np


def _f64(w) -> np.ndarray:
    return np.asarray(np.asarray(w, np.float32), np.float64)


def _rms(x: np.ndarray, w, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * _f64(w)


def _rotate(x: np.ndarray, pos: np.ndarray, theta: float) -> np.ndarray:
    """x `[t, heads, D]`; rotate pair j (coordinates j and j + D/2) by angle pos·θ^(-2j/D)."""
    half = x.shape[-1] // 2
    out = np.empty_like(x)
    for j in range(half):
        ang = pos * theta ** (-2.0 * j / x.shape[-1])
        c, s = np.cos(ang)[:, None], np.sin(ang)[:, None]
        a, b = x[:, :, j], x[:, :, j + half]
        out[:, :, j] = a * c - b * s
        out[:, :, j + half] = a * s + b * c
    return out


def reference_logits(params: dict, cfg, tokens, mask=None) -> np.ndarray:
    """float64 logits `[b, t, V]` of the Llama `params` (HF names) on `tokens`, pads (mask False) excluded."""
    tokens = np.asarray(tokens)
    mask = np.ones(tokens.shape, bool) if mask is None else np.asarray(mask)
    nb, nt = tokens.shape
    d, hd = cfg.head_dim, cfg.head_dim
    emb = params["model.embed_tokens.weight"]
    head = emb if cfg.tie_embeddings else params["lm_head.weight"]
    out = np.empty((nb, nt, cfg.vocab_size))
    for b in range(nb):
        pos = np.maximum(np.cumsum(mask[b]) - 1, 0).astype(np.float64)
        allowed = np.tril(np.ones((nt, nt), bool)) & mask[b][None, :]
        allowed |= np.eye(nt, dtype=bool)
        h = _f64(np.asarray(emb)[tokens[b]])
        for i in range(cfg.n_layers):
            w = {
                n: params[f"model.layers.{i}.{n}"]
                for n in ("self_attn.q_proj.weight", "self_attn.k_proj.weight")
            }
            x = _rms(h, params[f"model.layers.{i}.input_layernorm.weight"], cfg.rms_eps)
            q = (x @ _f64(w["self_attn.q_proj.weight"]).T).reshape(nt, cfg.n_heads, d)
            k = (x @ _f64(w["self_attn.k_proj.weight"]).T).reshape(nt, cfg.n_kv_heads, d)
            v = (x @ _f64(params[f"model.layers.{i}.self_attn.v_proj.weight"]).T).reshape(
                nt, cfg.n_kv_heads, d
            )
            q, k = _rotate(q, pos, cfg.rope_theta), _rotate(k, pos, cfg.rope_theta)
            att = np.empty((nt, cfg.n_heads, d))
            for hq in range(cfg.n_heads):
                g = hq // (cfg.n_heads // cfg.n_kv_heads)
                s = q[:, hq] @ k[:, g].T / np.sqrt(hd)
                s = np.where(allowed, s, -np.inf)
                p = np.exp(s - s.max(axis=1, keepdims=True))
                att[:, hq] = (p / p.sum(axis=1, keepdims=True)) @ v[:, g]
            h = (
                h
                + att.reshape(nt, -1) @ _f64(params[f"model.layers.{i}.self_attn.o_proj.weight"]).T
            )
            x = _rms(h, params[f"model.layers.{i}.post_attention_layernorm.weight"], cfg.rms_eps)
            gate = x @ _f64(params[f"model.layers.{i}.mlp.gate_proj.weight"]).T
            up = x @ _f64(params[f"model.layers.{i}.mlp.up_proj.weight"]).T
            h = (
                h
                + (gate / (1 + np.exp(-gate)) * up)
                @ _f64(params[f"model.layers.{i}.mlp.down_proj.weight"]).T
            )
        h = _rms(h, params["model.norm.weight"], cfg.rms_eps)
        out[b] = h @ _f64(head).T
    return out

"""Prop D.1 (exact invariance of the V/O rotation) and the head shuffle, arXiv 2511.08567 App. D.

Statement: for orthogonal $R\\in\\mathbb R^{D\\times D}$, $R_{kv}=\\mathrm{diag}(R,\\dots)$ ($H_{kv}$ blocks), $R_q$ its grouped
expansion ($H_q$ blocks), $W_v'=W_vR_{kv}$, $b_v'=b_vR_{kv}$, $W_o'=W_oR_q$ leave the attention block unchanged
(App. D layout; in HF layout `v_proj.weight' = R_kv^T v_proj.weight`, `o_proj.weight' = o_proj.weight R_q`).
Intervention 2: permuting KV heads (and the grouped query heads, and o_proj's column blocks) is lossless too.

Checks: random GQA blocks ($H_q=8$, $H_{kv}\\in\\{2,4\\}$, $D\\in\\{16,64\\}$, $d=64$, 12 tokens, RoPE on Q/K, causal mask,
q/k/v biases) in float32 and float64, $R$ Haar or Hadamard; recorded as
$\\max|\\mathrm{out}'-\\mathrm{out}|\\le\\tau\\max|\\mathrm{out}|$ with $\\tau=4\\,H_qD\\,\\varepsilon$ (dtype eps; the ratio is the
error in units of that tolerance). Premise removed: rotating Q and K by $R$ instead (RoPE does not commute with a
generic $R$): the output changes at O(1).
"""

import numpy as np

from proofs_numeric._attention import attention, haar_orthogonal, hadamard, random_params
from proofs_numeric.harness import Record, VerifyConfig
from threegate._numerics import tol

ID = "D.1"
STATEMENT = "W_v' = W_v R_kv, b_v' = b_v R_kv, W_o' = W_o R_q (R orthogonal) leave the GQA attention output unchanged; so does a KV-head shuffle"
KIND = "exact"
D_MODEL, N_Q, SEQ = 64, 8, 12


def _blockdiag(r: np.ndarray, k: int) -> np.ndarray:
    return np.kron(np.eye(k, dtype=r.dtype), r)


def rotate_vo(p, r):
    r_kv, r_q = _blockdiag(r, p.n_kv), _blockdiag(r, p.n_q)
    return p._replace(v_proj=r_kv.T @ p.v_proj, v_bias=r_kv.T @ p.v_bias, o_proj=p.o_proj @ r_q)


def rotate_qk(p, r):
    r_kv, r_q = _blockdiag(r, p.n_kv), _blockdiag(r, p.n_q)
    return p._replace(
        q_proj=r_q.T @ p.q_proj,
        q_bias=r_q.T @ p.q_bias,
        k_proj=r_kv.T @ p.k_proj,
        k_bias=r_kv.T @ p.k_bias,
    )


def shuffle_heads(p, pkv: np.ndarray):
    d, rep = p.head_dim, p.n_q // p.n_kv
    pq = np.array([pkv[h // rep] * rep + h % rep for h in range(p.n_q)])
    kv_rows = (pkv[:, None] * d + np.arange(d)[None]).ravel()
    q_rows = (pq[:, None] * d + np.arange(d)[None]).ravel()
    return p._replace(
        q_proj=p.q_proj[q_rows],
        q_bias=p.q_bias[q_rows],
        k_proj=p.k_proj[kv_rows],
        k_bias=p.k_bias[kv_rows],
        v_proj=p.v_proj[kv_rows],
        v_bias=p.v_bias[kv_rows],
        o_proj=p.o_proj[:, q_rows],
    )


def _record(kind, inst, before, after, dtype, premise=True):
    err = float(np.max(np.abs(after.astype(np.float64) - before.astype(np.float64))))
    rhs = tol(dtype, N_Q * inst["D"], c=4.0) * float(np.max(np.abs(before)))
    return Record(
        ID, "paper", kind, inst, err, rhs, "<=", premise, err <= rhs, dtype=np.dtype(dtype).name
    )


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("D.1")
    reps = config.n(tiny=1, default=2)
    out = []
    for dtype in (np.float32, np.float64):
        for n_kv in (2, 4):
            for d in (16, 64):
                for rep in range(reps):
                    p = random_params(rng, D_MODEL, N_Q, n_kv, d, dtype)
                    x = rng.normal(size=(SEQ, D_MODEL)).astype(dtype)
                    y = attention(p, x)
                    inst = {"H_q": N_Q, "H_kv": n_kv, "D": d, "d_model": D_MODEL, "seq": SEQ}
                    r = (haar_orthogonal(rng, d) if rep % 2 == 0 else hadamard(d)).astype(dtype)
                    which = "Haar" if rep % 2 == 0 else "Hadamard"
                    out.append(
                        _record(
                            "random", inst | {"R": which}, y, attention(rotate_vo(p, r), x), dtype
                        )
                    )
                    pkv = rng.permutation(n_kv)
                    while n_kv > 1 and np.all(pkv == np.arange(n_kv)):
                        pkv = rng.permutation(n_kv)
                    out.append(
                        _record(
                            "random",
                            inst | {"intervention": "head shuffle", "pkv": pkv.tolist()},
                            y,
                            attention(shuffle_heads(p, pkv), x),
                            dtype,
                        )
                    )
                    if rep == 0:
                        out.append(
                            _record(
                                "edge",
                                inst | {"R": which, "premise_removed": "R applied to Q/K (RoPE)"},
                                y,
                                attention(rotate_qk(p, r), x),
                                dtype,
                                premise=False,
                            )
                        )
    return out

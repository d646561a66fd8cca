"""Lemma F.12 (Weyl/Mirsky and Hoffman–Wielandt), arXiv 2511.08567 App. F.3.

Statement: $|\\sigma_i(W_+)-\\sigma_i(W_0)|\\le\\|\\Delta W\\|_2$ for every $i$ and
$\\sum_i(\\sigma_i(W_+)-\\sigma_i(W_0))^2\\le\\|\\Delta W\\|_F^2$; for symmetric $A,E$ the Hoffman–Wielandt form
$\\sum_i(\\lambda_i(A+E)-\\lambda_i(A))^2\\le\\|E\\|_F^2$ (eigenvalues sorted).

Verdict: exact. Records per instance: "weyl" (`weyl_check`, the max over $i$), "mirsky" (`mirsky_check`), and
"hoffman-wielandt" on the symmetric parts $A=\\tfrac12(W_0+W_0^\\top)$, $E=\\tfrac12(\\Delta W+\\Delta W^\\top)$ of square
instances (jitted `eigvalsh`).
Extremal: $\\Delta W=\\varepsilon u_1v_1^\\top$ and $E=\\varepsilon q_1q_1^\\top$ (equalities); adversarial: Nelder–Mead
over 2×2 directions; premise removed: Hoffman–Wielandt for the non-normal $A=[[0,1],[0,0]]$, $E=[[0,0],[t,0]]$
(eigenvalues $\\pm\\sqrt t$, so $2t>t^2$: it fails).
"""

import jax
import jax.numpy as jnp
import numpy as np

from proofs_numeric import _gate2 as g2
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate.spectral import mirsky_check, weyl_check

ID = "F.12"
STATEMENT = (
    "|sigma_i(W+) - sigma_i(W0)| <= ||dW||_2 for all i; sum_i (sigma_i(W+) - sigma_i(W0))^2 <= ||dW||_F^2 "
    "(Weyl, Mirsky / Hoffman-Wielandt)"
)
KIND = "exact"


@jax.jit
def hoffman_wielandt(a: jax.Array, e: jax.Array) -> tuple[jax.Array, jax.Array]:
    """$(\\sum_i(\\lambda_i(A+E)-\\lambda_i(A))^2, \\|E\\|_F^2)$ for symmetric `a`, `e` `[p, p]` (sorted eigenvalues)."""
    d = jnp.linalg.eigvalsh(a + e) - jnp.linalg.eigvalsh(a)
    return jnp.sum(jnp.square(d)), jnp.sum(jnp.square(e))


def _sym(x: np.ndarray) -> np.ndarray:
    return 0.5 * (x + x.T)


def _records(kind: str, w0: np.ndarray, dw: np.ndarray, info: dict) -> list[Record]:
    w1 = w0 + dw
    size = max(w0.shape)
    scale = float(np.linalg.norm(w0, 2) + np.linalg.norm(w1, 2))
    wy, mi = weyl_check(w0, w1), mirsky_check(w0, w1)
    nf = float(np.linalg.norm(dw))
    out = [
        Record(
            ID,
            "paper",
            kind,
            info | {"link": "weyl"},
            float(wy.lhs),
            float(wy.rhs),
            "<=",
            True,
            holds_le(float(wy.lhs), float(wy.rhs), np.float64, size, scale=scale),
        ),
        Record(
            ID,
            "paper",
            kind,
            info | {"link": "mirsky"},
            float(mi.lhs),
            float(mi.rhs),
            "<=",
            True,
            holds_le(float(mi.lhs), float(mi.rhs), np.float64, size, scale=scale * nf),
        ),
    ]
    if w0.shape[0] == w0.shape[1]:
        a, e = _sym(w0), _sym(dw)
        lhs, rhs = (float(v) for v in hoffman_wielandt(a, e))
        sc = scale * float(np.linalg.norm(e))
        out.append(
            Record(
                ID,
                "paper",
                kind,
                info | {"link": "hoffman-wielandt"},
                lhs,
                rhs,
                "<=",
                True,
                holds_le(lhs, rhs, np.float64, size, scale=sc),
            )
        )
    return out


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        rng = config.rng(f"{ID}/instances")
        out: list[Record] = []
        for w0, dw, _, info in g2.random_pairs(rng, config.n(6, 24), shapes=g2.shapes(config)):
            out += _records("random", w0, dw, info)
        for i in range(config.n(2, 4)):
            m, n, k = g2.shapes(config)[i % len(g2.shapes(config))]
            w0 = g2.with_spectrum(rng, m, n, g2.gap_spectrum(rng, min(m, n), k, 0.5))
            eps = float(rng.uniform(1e-3, 0.5))
            if m == n:  # symmetric W0 = Q diag Q^T, dW = eps q1 q1^T: all three equalities
                q, _ = np.linalg.qr(rng.normal(size=(m, m)))
                w0 = (q * np.linspace(2.0, 1.0, m)[None, :]) @ q.T
                dw = eps * np.outer(q[:, 0], q[:, 0])
            else:
                dw = g2.top_pairs_dw(w0, 1, eps)
            out += _records("extremal", w0, dw, {"shape": [m, n], "construction": "eps u1 v1^T"})
        for name in ("weyl", "mirsky"):
            for w0, dw, info in g2.adversarial_pairs(rng, config.n(1, 2), name):
                out += _records("adversarial", w0, dw, info)
        t = 1e-4
        a, e = np.array([[0.0, 1.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [t, 0.0]])
        lhs = float(
            np.sum(
                (np.sort(np.linalg.eigvals(a + e).real) - np.sort(np.linalg.eigvals(a).real)) ** 2
            )
        )
        info = {
            "premise_removed": "A, E not symmetric (A nilpotent)",
            "A": a,
            "E": e,
            "link": "hoffman-wielandt",
        }
        rhs = float(np.sum(np.square(e)))
        out.append(
            Record(
                ID, "paper", "edge", info, lhs, rhs, "<=", False, holds_le(lhs, rhs, np.float64, 2)
            )
        )
    return out

"""Cor 3.4 (singular-value stability), arXiv 2511.08567 eq. (9).

Statement: $|\\sigma_i(W_+)-\\sigma_i(W_0)|\\le\\|\\Delta W\\|_2\\le\\sqrt{2\\delta_W/\\mu_W}$ for every $i$ (Weyl), and
$\\sum_i(\\sigma_i(W_+)-\\sigma_i(W_0))^2\\le\\|\\Delta W\\|_F^2\\le2\\delta_W/\\mu_W$ (Mirsky / Hoffman–Wielandt), where
$\\tfrac12\\mathrm{vec}(\\Delta W)^\\top S_W\\mathrm{vec}(\\Delta W)\\le\\delta_W$ and $S_W\\succeq\\mu_WI$.

Verdict: exact (no caveat). Records per instance, one per link: "weyl" and "mirsky" (`weyl_check`, `mirsky_check`),
"weyl-chain" ($\\|\\Delta W\\|_2\\le\\ell$) and "mirsky-chain" ($\\|\\Delta W\\|_F^2\\le\\ell^2$), $\\ell=\\sqrt{2\\delta_W/\\mu_W}$
from `leash_check`. Instances: random (`_gate2.random_pairs`, budgets slack or tight); extremal
$\\Delta W=\\varepsilon u_1v_1^\\top$ with $S_W=\\mu I$ and a tight budget (every link an equality); adversarial
Nelder–Mead over the 2×2 direction maximizing the Weyl and Mirsky ratios; premise removed: a budget below the
quadratic form (the chain fails).
"""

import jax
import numpy as np

from proofs_numeric import _gate2 as g2
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate.spectral import leash_check, mirsky_check, weyl_check

ID = "3.4"
STATEMENT = (
    "|sigma_i(W+) - sigma_i(W0)| <= ||dW||_2 <= sqrt(2 delta_W/mu_W); "
    "sum_i (sigma_i(W+) - sigma_i(W0))^2 <= ||dW||_F^2 <= 2 delta_W/mu_W (eq. 9)"
)
KIND = "exact"


def link_records(
    id: str,
    kind: str,
    w0: np.ndarray,
    dw: np.ndarray,
    s_w: np.ndarray,
    delta: float,
    info: dict,
    links: tuple[str, ...] = ("weyl", "mirsky", "weyl-chain", "mirsky-chain"),
) -> list[Record]:
    """One record per link of eq. (9) on the instance $(W_0, \\Delta W, S_W, \\delta_W)$."""
    w1 = w0 + dw
    size = max(w0.shape)
    wy, mi = weyl_check(w0, w1), mirsky_check(w0, w1)
    lc = leash_check(dw, s_w, np.float64(delta))
    norm_w = float(np.linalg.norm(w0, 2) + np.linalg.norm(w1, 2))
    nf, n2, leash = float(lc.lhs[0]), float(lc.lhs[1]), float(lc.rhs[0])
    values = {
        "weyl": (float(wy.lhs), float(wy.rhs), True, norm_w),
        "mirsky": (float(mi.lhs), float(mi.rhs), True, norm_w * nf),
        "weyl-chain": (n2, leash, bool(lc.premise[1]), leash),
        "mirsky-chain": (nf**2, leash**2, bool(lc.premise[0]), leash**2),
    }
    out = []
    for link in links:
        lhs, rhs, premise, scale = values[link]
        ok = holds_le(lhs, rhs, np.float64, size, scale=scale)
        out.append(Record(id, "paper", kind, info | {"link": link}, lhs, rhs, "<=", premise, ok))
    return out


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        rng = config.rng(f"{ID}/instances")
        out: list[Record] = []
        for i, (w0, dw, _, info) in enumerate(
            g2.random_pairs(rng, config.n(6, 24), shapes=g2.shapes(config))
        ):
            s_w, delta, meta = g2.leash_setting(rng, dw, tight=i % 2 == 0)
            out += link_records(ID, "random", w0, dw, s_w, delta, info | meta)
        for i in range(config.n(2, 4)):
            m, n, k = g2.shapes(config)[i % len(g2.shapes(config))]
            w0 = g2.with_spectrum(rng, m, n, g2.gap_spectrum(rng, min(m, n), k, 0.5))
            dw = g2.top_pairs_dw(w0, 1, float(rng.uniform(1e-3, 0.5)))
            s_w, delta, meta = g2.leash_setting(rng, dw, tight=True, iso=True)
            info = {"shape": [m, n], "construction": "dW = eps u1 v1^T, S_W = mu I, tight budget"}
            out += link_records(ID, "extremal", w0, dw, s_w, delta, info | meta)
        for name in ("weyl", "mirsky"):
            for w0, dw, info in g2.adversarial_pairs(rng, config.n(1, 2), name):
                s_w, delta, meta = g2.leash_setting(rng, dw, tight=True)
                out += link_records(ID, "adversarial", w0, dw, s_w, delta, info | meta)
        m, n, _ = g2.SHAPES[0]
        w0, dw = g2.with_spectrum(rng, m, n, np.linspace(2, 1, 4)), g2.exact_norm(rng, m, n, 0.1)
        s_w, delta, meta = g2.leash_setting(rng, dw, tight=True, iso=True)
        info = {
            "shape": [m, n],
            "premise_removed": "delta_W = quad/4 < (1/2) vec(dW)^T S_W vec(dW)",
        }
        out += link_records(
            ID, "edge", w0, dw, s_w, delta / 4, info | meta, links=("weyl-chain", "mirsky-chain")
        )
    return out

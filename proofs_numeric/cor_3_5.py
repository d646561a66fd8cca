"""Cor 3.5 (top-k energy and Ky Fan norms), arXiv 2511.08567 eq. (10).

Statement: with $\\|W\\|_{(k)}=\\sum_{i\\le k}\\sigma_i(W)$,
$\\big|\\|W_+\\|_{(k)}-\\|W_0\\|_{(k)}\\big|\\le\\sum_{i\\le k}|\\sigma_i(W_+)-\\sigma_i(W_0)|\\le k\\|\\Delta W\\|_2\\le k\\sqrt{2\\delta_W/\\mu_W}$.

Verdict: exact. Records per instance and rank $k\\in\\{1,k_{\\rm shape},\\min(m,n)\\}$, one per link: "triangle" and
"weyl-sum" (`ky_fan_check`), "chain" ($k\\|\\Delta W\\|_2\\le k\\ell$, `leash_check`). Instances: random
(`_gate2.random_pairs`); extremal $\\Delta W=\\varepsilon U_kV_k^\\top$ with $S_W=\\mu I$ and a tight budget
(the first two links equalities, the chain too for k=1); adversarial Nelder–Mead over the 2×2 direction maximizing
$|\\Delta\\|W\\|_{(k)}|/(k\\|\\Delta W\\|_2)$; premise removed: a budget below the quadratic form.
"""

import jax
import numpy as np

from proofs_numeric import _gate2 as g2
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate.spectral import ky_fan_check, leash_check

ID = "3.5"
STATEMENT = "| ||W+||_(k) - ||W0||_(k) | <= sum_{i<=k} |d sigma_i| <= k ||dW||_2 <= k sqrt(2 delta_W/mu_W) (eq. 10)"
KIND = "exact"


def _ranks(m: int, n: int, k: int) -> tuple[int, ...]:
    return tuple(sorted({1, k, min(m, n)}))


def link_records(
    kind: str,
    w0: np.ndarray,
    dw: np.ndarray,
    ranks: tuple[int, ...],
    s_w: np.ndarray,
    delta: float,
    info: dict,
    links: tuple[str, ...] = ("triangle", "weyl-sum", "chain"),
) -> list[Record]:
    """One record per (rank, link) of eq. (10) on $(W_0, \\Delta W, S_W, \\delta_W)$."""
    w1 = w0 + dw
    size = max(w0.shape)
    lc = leash_check(dw, s_w, np.float64(delta))
    norm2, leash = float(lc.lhs[1]), float(lc.rhs[1])
    scale = float(np.linalg.norm(w0, 2) + np.linalg.norm(w1, 2))
    out = []
    for k in ranks:
        kf = ky_fan_check(w0, w1, k)
        values = {
            "triangle": (float(kf.lhs[0]), float(kf.rhs[0]), True, k * scale),
            "weyl-sum": (float(kf.lhs[1]), float(kf.rhs[1]), True, k * scale),
            "chain": (k * norm2, k * leash, bool(lc.premise[1]), k * leash),
        }
        for link in links:
            lhs, rhs, premise, sc = values[link]
            ok = holds_le(lhs, rhs, np.float64, size, scale=sc)
            rec_info = info | {"link": link, "k": k}
            out.append(Record(ID, "paper", kind, rec_info, lhs, rhs, "<=", premise, ok))
    return out


def _adversarial(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    out = []
    for _ in range(n):
        w0 = g2.with_spectrum(rng, 2, 2, g2.gap_spectrum(rng, 2, 1, float(rng.uniform(0.1, 1.0))))
        eps = float(rng.uniform(0.01, 1.0))
        k = int(rng.integers(1, 3))

        def direction(x: np.ndarray, eps: float = eps) -> np.ndarray:
            e = x.reshape(2, 2)
            return e * (eps / np.linalg.norm(e, 2))

        def objective(
            x: np.ndarray, w0=w0, direction=direction, eps: float = eps, k: int = k
        ) -> float:
            s0 = np.linalg.svd(w0, compute_uv=False)[:k]
            s1 = np.linalg.svd(w0 + direction(x), compute_uv=False)[:k]
            return float(abs(s1.sum() - s0.sum()) / (k * eps))

        x, best = g2.adversarial_search(objective, 4, rng, starts=1, maxiter=200)
        out.append(
            (w0, direction(x), {"search_k": k, "search_best": best, "shape": [2, 2], "W0": w0})
        )
    return out


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        rng = config.rng(f"{ID}/instances")
        out: list[Record] = []
        for i, (w0, dw, k, info) in enumerate(
            g2.random_pairs(rng, config.n(6, 24), shapes=g2.shapes(config))
        ):
            s_w, delta, meta = g2.leash_setting(rng, dw, tight=i % 2 == 0)
            out += link_records("random", w0, dw, _ranks(*w0.shape, k), s_w, delta, info | meta)
        for i in range(config.n(2, 3)):
            m, n, k = g2.shapes(config)[i % len(g2.shapes(config))]
            w0 = g2.with_spectrum(rng, m, n, g2.gap_spectrum(rng, min(m, n), k, 0.5))
            eps = float(rng.uniform(1e-3, 0.5))
            dw = g2.top_pairs_dw(w0, k, eps)
            # links 1-2 are equalities; the chain is one only for k = 1 (the leash is >= ||dW||_F = sqrt(k) eps)
            s_w, delta, meta = g2.leash_setting(rng, dw, tight=True, iso=True)
            info = {"shape": [m, n], "construction": "dW = eps U_k V_k^T, S_W = mu I, tight budget"}
            out += link_records("extremal", w0, dw, (k,), s_w, delta, info | meta)
        for w0, dw, info in _adversarial(rng, config.n(1, 3)):
            s_w, delta, meta = g2.leash_setting(rng, dw, tight=True)
            out += link_records("adversarial", w0, dw, (1, 2), s_w, delta, info | meta)
        m, n, k = g2.SHAPES[0]
        w0, dw = g2.with_spectrum(rng, m, n, np.linspace(2, 1, 4)), g2.exact_norm(rng, m, n, 0.1)
        s_w, delta, meta = g2.leash_setting(rng, dw, tight=True, iso=True)
        info = {
            "shape": [m, n],
            "premise_removed": "delta_W = quad/4 < (1/2) vec(dW)^T S_W vec(dW)",
        }
        out += link_records("edge", w0, dw, (1,), s_w, delta / 4, info | meta, links=("chain",))
    return out

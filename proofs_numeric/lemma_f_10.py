"""Lemma F.10 / Eq. (7) (layer-conditioned Frobenius/operator bounds) and the Schur step of App. F.3.

Statement: if $S_W\\succeq\\mu_WI$ and $\\tfrac12\\mathrm{vec}(\\Delta W)^\\top S_W\\mathrm{vec}(\\Delta W)\\le\\delta_W$, then
$\\|\\Delta W\\|_2\\le\\|\\Delta W\\|_F\\le\\sqrt{2\\delta_W/\\mu_W}$ (eq. 7); the budget comes from the Schur step
$\\delta_W=\\tfrac12\\mathrm{vec}(\\Delta W)^\\top S_W\\mathrm{vec}(\\Delta W)\\le\\tfrac12\\Delta\\theta^\\top F\\Delta\\theta\\le K$ with
$S_W=F_{W,W}-F_{W,\\neg W}F_{\\neg W,\\neg W}^{-1}F_{\\neg W,W}$.

Verdict: exact. Records: "leash-F" ($\\|\\Delta W\\|_F\\le\\ell$) and "norm-2-F" ($\\|\\Delta W\\|_2\\le\\|\\Delta W\\|_F$) from
`leash_check`, "schur" from `schur_check`. Instances: random SPD $S_W$ / PSD $F$ over `_gate2.SHAPES`; extremal
$\\mathrm{vec}\\Delta W$ along the $\\lambda_{\\min}$ eigenvector with a tight budget (leash equality), rank-1 $\\Delta W$
(norm equality), and $\\Delta\\theta_{\\neg W}=-F_{\\neg W,\\neg W}^{-1}F_{\\neg W,W}\\mathrm{vec}\\Delta W$ (Schur equality);
adversarial Nelder–Mead over $\\Delta\\theta_{\\neg W}$ maximizing the Schur ratio and over 2×2 $\\Delta W$ maximizing the
leash ratio; premise removed: a budget below the quadratic form, and an $F$ with indefinite $F_{\\neg W,\\neg W}$.
"""

import jax
import numpy as np

from proofs_numeric import _gate2 as g2
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate._numerics import tol
from threegate.spectral import leash_check, schur_check

ID = "F.10"
STATEMENT = (
    "||dW||_2 <= ||dW||_F <= sqrt(2 delta_W/mu_W) if S_W >= mu_W I and (1/2) vec(dW)^T S_W vec(dW) <= delta_W "
    "(eq. 7); (1/2) vec(dW)^T S_W vec(dW) <= (1/2) dtheta^T F dtheta (Schur step)"
)
KIND = "exact"

#: number of non-W coordinates in the Schur instances
N_REST = 6


def _leash(kind: str, dw: np.ndarray, s_w: np.ndarray, delta: float, info: dict) -> list[Record]:
    lc = leash_check(dw, s_w, np.float64(delta))
    nf, n2, leash, premise = (
        float(lc.lhs[0]),
        float(lc.lhs[1]),
        float(lc.rhs[0]),
        bool(lc.premise[0]),
    )
    size = dw.size
    return [
        Record(
            ID,
            "paper",
            kind,
            info | {"link": "leash-F"},
            nf,
            leash,
            "<=",
            premise,
            holds_le(nf, leash, np.float64, size, scale=leash),
        ),
        Record(
            ID,
            "paper",
            kind,
            info | {"link": "norm-2-F"},
            n2,
            nf,
            "<=",
            True,
            holds_le(n2, nf, np.float64, size, scale=nf),
        ),
    ]


def _schur(kind: str, f: np.ndarray, dtheta: np.ndarray, n_w: int, info: dict) -> Record:
    chk = schur_check(f, dtheta, n_w)
    lhs, rhs = float(chk.lhs), float(chk.rhs)
    scale = float(np.linalg.norm(f, 2) * dtheta @ dtheta)
    ok = holds_le(lhs, rhs, np.float64, f.shape[0], scale=scale)
    return Record(
        ID,
        "paper",
        kind,
        info | {"link": "schur", "p": f.shape[0], "n_w": n_w},
        lhs,
        rhs,
        "<=",
        bool(chk.premise),
        ok,
    )


def _psd(rng: np.random.Generator, p: int) -> np.ndarray:
    x = rng.normal(size=(p, p + 2))
    return x @ x.T / p


def _schur_minimizer(f: np.ndarray, x_w: np.ndarray) -> np.ndarray:
    n_w = x_w.size
    rest = -np.linalg.solve(f[n_w:, n_w:], f[n_w:, :n_w] @ x_w)
    return np.concatenate([x_w, rest])


def _adversarial_schur(
    rng: np.random.Generator, f: np.ndarray, x_w: np.ndarray
) -> tuple[np.ndarray, float]:
    n_w = x_w.size
    lhs = float(
        x_w @ np.linalg.solve(np.linalg.inv(f)[:n_w, :n_w], x_w)
    )  # vec^T S_W vec via (F^-1)_WW^-1

    def ratio(rest: np.ndarray) -> float:
        d = np.concatenate([x_w, rest])
        return lhs / float(d @ f @ d)

    x, best = g2.adversarial_search(ratio, f.shape[0] - n_w, rng, starts=1, maxiter=400)
    return np.concatenate([x_w, x]), best


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        rng = config.rng(f"{ID}/instances")
        out: list[Record] = []
        for i, (_, dw, _, info) in enumerate(
            g2.random_pairs(rng, config.n(6, 24), shapes=g2.shapes(config))
        ):
            s_w, delta, meta = g2.leash_setting(rng, dw, tight=i % 2 == 0)
            out += _leash("random", dw, s_w, delta, info | meta)
            f = _psd(rng, dw.size + N_REST)
            out.append(_schur("random", f, rng.normal(size=dw.size + N_REST), dw.size, info))
        for i in range(config.n(2, 3)):
            m, n, _ = g2.shapes(config)[i % len(g2.shapes(config))]
            mu = float(rng.uniform(0.5, 2.0))
            s_w = g2.budget_curvature(rng, m * n, mu)
            lam, q = np.linalg.eigh(s_w)
            dw = (float(rng.uniform(1e-3, 1.0)) * q[:, 0]).reshape(m, n)
            delta = 0.5 * float(lam[0]) * float(np.sum(dw**2))
            info = {
                "shape": [m, n],
                "construction": "vec dW = lambda_min eigenvector, tight budget",
            }
            out += _leash("extremal", dw, s_w, delta * (1 + tol(np.float64, dw.size)), info)
            u, v = rng.normal(size=m), rng.normal(size=n)
            rank1 = np.outer(u, v) * (
                float(rng.uniform(1e-3, 1.0)) / (np.linalg.norm(u) * np.linalg.norm(v))
            )
            s_1, delta_1, meta = g2.leash_setting(rng, rank1, tight=True)
            info = {"shape": [m, n], "construction": "rank-1 dW: ||dW||_2 = ||dW||_F"}
            out += _leash("extremal", rank1, s_1, delta_1, info | meta)[1:]
            f = _psd(rng, m * n + N_REST)
            x_w = rng.normal(size=m * n)
            info = {"shape": [m, n], "construction": "dtheta_rest = -F_rr^-1 F_rW vec dW"}
            out.append(_schur("extremal", f, _schur_minimizer(f, x_w), m * n, info))
        for _ in range(config.n(1, 2)):
            f = _psd(rng, 4 + N_REST)
            dtheta, best = _adversarial_schur(rng, f, rng.normal(size=4))
            out.append(_schur("adversarial", f, dtheta, 4, {"shape": [2, 2], "search_best": best}))
            s_w = g2.budget_curvature(rng, 4, float(rng.uniform(0.5, 2.0)))
            mu = float(np.linalg.eigvalsh(s_w)[0])

            def leash_ratio(x: np.ndarray, s_w: np.ndarray = s_w, mu: float = mu) -> float:
                return float(mu * (x @ x) / (x @ s_w @ x))

            x, best = g2.adversarial_search(leash_ratio, 4, rng, starts=1, maxiter=300)
            dw = x.reshape(2, 2) / np.linalg.norm(x)
            delta = 0.5 * float(x @ s_w @ x) / float(x @ x) * (1 + tol(np.float64, 4))
            out += _leash("adversarial", dw, s_w, delta, {"shape": [2, 2], "search_best": best})
        dw = g2.exact_norm(rng, 2, 2, 0.1)
        s_w, delta, meta = g2.leash_setting(rng, dw, tight=True, iso=True)
        info = {"shape": [2, 2], "premise_removed": "delta_W = quad/4"}
        out += _leash("edge", dw, s_w, delta / 4, info | meta)[:1]
        f = np.array([[1.0, 0.5, 0.0], [0.5, -1.0, 0.2], [0.0, 0.2, 1.0]])
        info = {"premise_removed": "F not PSD (F_rest indefinite)", "F": f}
        out.append(_schur("edge", f, np.array([0.1, 1.0, 0.0]), 1, info))
    return out

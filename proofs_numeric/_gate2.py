"""Shared instance builders and searches for the Gate II checkers (Thm 3.3, Cor 3.4–3.5, Lemmas F.10–F.12, Cor F.13).

Shapes: weights are `[m, n]` from the fixed set `SHAPES` (each shape compiles the `threegate.spectral` checks
once); `s_w` is `[m n, m n]` acting on the row-major $\\mathrm{vec}(\\Delta W)$. Everything here is float64 NumPy
(instance construction and the objectives of the adversarial searches, where a jit dispatch per evaluation would
dominate); the measured values in the records come from `threegate.spectral`, called inside `jax.enable_x64`.
"""

from collections.abc import Callable

import numpy as np
from scipy import optimize

from proofs_numeric.harness import VerifyConfig
from threegate._numerics import tol

__all__ = [
    "SHAPES",
    "SHAPES_TINY",
    "adversarial_pairs",
    "adversarial_search",
    "budget_curvature",
    "exact_norm",
    "gap_spectrum",
    "leash_setting",
    "random_pairs",
    "rel_sweep",
    "shapes",
    "sin_theta_np",
    "top_pairs_dw",
    "two_by_two",
    "two_by_two_worst",
    "with_spectrum",
]

#: (m, n, k): tall, square, wide, each with its own rank k.
SHAPES: tuple[tuple[int, int, int], ...] = ((6, 4, 2), (8, 8, 3), (5, 9, 1))
#: the "tiny" sweep: one rectangular and one square shape (fewer compilations of the spectral checks)
SHAPES_TINY: tuple[tuple[int, int, int], ...] = ((6, 4, 2), (2, 2, 1))


def shapes(config: VerifyConfig) -> tuple[tuple[int, int, int], ...]:
    """The (m, n, k) shapes a sweep of `config` cycles through."""
    return SHAPES_TINY if config.size == "tiny" else SHAPES


def gap_spectrum(rng: np.random.Generator, p: int, k: int, gap: float) -> np.ndarray:
    """`p` singular values, descending, in $[0, 2+\\gamma]$ with $\\sigma_k - \\sigma_{k+1} = \\gamma$ exactly ($\\sigma_{p+1}:=0$)."""
    tail = np.sort(rng.uniform(0.0, 1.0, p - k))[::-1] if k < p else np.zeros(0)
    below = tail[0] if k < p else 0.0
    head = below + gap + np.sort(rng.uniform(0.0, 1.0, k - 1))[::-1]
    return (
        np.concatenate([head, [below + gap], tail])[:p]
        if k > 1
        else np.concatenate([[below + gap], tail])
    )


def with_spectrum(rng: np.random.Generator, m: int, n: int, s: np.ndarray) -> np.ndarray:
    """$U\\,\\mathrm{diag}(s)\\,V^\\top$ with Haar-like orthonormal $U$ `[m, p]`, $V$ `[n, p]`, $p = \\min(m, n)$."""
    p = min(m, n)
    u, _ = np.linalg.qr(rng.normal(size=(m, p)))
    v, _ = np.linalg.qr(rng.normal(size=(n, p)))
    return (u * s[None, :]) @ v.T


def exact_norm(rng: np.random.Generator, m: int, n: int, norm: float, ord: str = "2") -> np.ndarray:
    """A Gaussian direction scaled to $\\|E\\|_2$ (`ord="2"`) or $\\|E\\|_F$ (`ord="fro"`) equal to `norm`."""
    e = rng.normal(size=(m, n))
    return e * (norm / np.linalg.norm(e, 2 if ord == "2" else "fro"))


def rel_sweep(n: int, lo: float = 1e-3, hi: float = 0.9) -> np.ndarray:
    """`n` values of $\\|\\Delta W\\|_2/\\gamma_k$, log-spaced over [lo, hi] (the B16 range)."""
    return np.geomspace(lo, hi, n)


def budget_curvature(rng: np.random.Generator, p: int, mu: float, cond: float = 20.0) -> np.ndarray:
    """A symmetric positive definite `[p, p]` $S_W$ with $\\lambda_{\\min} = \\mu$ exactly and condition `cond`."""
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    lam = np.concatenate([[mu], mu * rng.uniform(1.0, cond, p - 1)])
    s = (q * lam[None, :]) @ q.T
    return 0.5 * (s + s.T)


def sin_theta_np(w0: np.ndarray, w1: np.ndarray, k: int) -> tuple[float, float]:
    """$(\\|\\sin\\Theta(U_k(W_0), U_k(W_1))\\|_2, \\|\\sin\\Theta(V_k(\\cdot), V_k(\\cdot))\\|_2)$ in float64 NumPy."""
    u0, _, v0t = np.linalg.svd(w0)
    u1, _, v1t = np.linalg.svd(w1)
    a, b = u0[:, :k], u1[:, :k]
    c, d = v0t[:k].T, v1t[:k].T
    su = np.linalg.norm(b - a @ (a.T @ b), 2)
    sv = np.linalg.norm(d - c @ (c.T @ d), 2)
    return float(su), float(sv)


def two_by_two(eps: float, phi: float) -> tuple[np.ndarray, np.ndarray]:
    """The digest's 2×2 family: $W_0 = \\mathrm{diag}(1, 0)$, $\\Delta W = \\varepsilon[[-\\cos\\phi, \\sin\\phi], [\\sin\\phi, \\cos\\phi]]$.

    $\\Delta W$ is symmetric with eigenvalues $\\pm\\varepsilon$, so $\\|\\Delta W\\|_2 = \\varepsilon$ and $\\gamma_1 = 1$.
    """
    w0 = np.diag([1.0, 0.0])
    dw = eps * np.array([[-np.cos(phi), np.sin(phi)], [np.sin(phi), np.cos(phi)]])
    return w0, dw


def two_by_two_worst(eps: float) -> tuple[float, float]:
    """The angle $\\phi$ maximizing $\\|\\sin\\Theta\\|_2$ in the 2×2 family at `eps`, and that maximum."""
    w0, _ = two_by_two(eps, 0.0)

    def neg(phi: float) -> float:
        _, dw = two_by_two(eps, phi)
        return -max(sin_theta_np(w0, w0 + dw, 1))

    grid = np.linspace(0.0, np.pi, 181)
    start = grid[np.argmin([neg(p) for p in grid])]
    res = optimize.minimize_scalar(
        neg,
        bounds=(max(0.0, start - np.pi / 180), min(np.pi, start + np.pi / 180)),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return float(res.x), float(-res.fun)


def adversarial_search(
    objective: Callable[[np.ndarray], float],
    dim: int,
    rng: np.random.Generator,
    starts: int = 2,
    maxiter: int = 300,
) -> tuple[np.ndarray, float]:
    """Maximize `objective(x)` over $x\\in\\mathbb R^{dim}$ (a direction; the objective normalizes it).

    Nelder–Mead from `starts` Gaussian starting points (the objectives are non-smooth where singular values
    cross); returns the best point and value.
    """
    best_x, best_f = None, -np.inf
    for _ in range(starts):
        res = optimize.minimize(
            lambda x: -objective(x),
            rng.normal(size=dim),
            method="Nelder-Mead",
            options={"maxiter": maxiter, "xatol": 1e-9, "fatol": 1e-12},
        )
        if -res.fun > best_f:
            best_x, best_f = res.x, float(-res.fun)
    return best_x, best_f


def leash_setting(
    rng: np.random.Generator, dw: np.ndarray, tight: bool, iso: bool = False
) -> tuple[np.ndarray, float, dict]:
    """$(S_W, \\delta_W, \\text{info})$ for the KL-budget chain: a random SPD $S_W$ (or $\\mu I$ with `iso`) and a
    budget $\\delta_W\\ge\\tfrac12 v^\\top S_Wv$ (equal with `tight`), $v=\\mathrm{vec}(\\Delta W)$ row-major."""
    mu = float(rng.uniform(0.5, 2.0))
    s_w = mu * np.eye(dw.size) if iso else budget_curvature(rng, dw.size, mu)
    v = dw.reshape(-1)
    quad = 0.5 * float(v @ s_w @ v)
    # a tight budget carries one rounding slack, so that leash_check's own quadratic form stays within it
    delta = quad * (1 + tol(np.float64, dw.size)) if tight else quad * float(rng.uniform(1.0, 2.0))
    return (
        s_w,
        delta,
        {"mu_W": mu, "delta_W": delta, "S_W": "mu I" if iso else "SPD", "tight": tight},
    )


def random_pairs(
    rng: np.random.Generator,
    n: int,
    lo: float = 1e-6,
    hi: float = 1.0,
    shapes: tuple[tuple[int, int, int], ...] = SHAPES,
) -> list[tuple[np.ndarray, np.ndarray, int, dict]]:
    """`n` pairs $(W_0, \\Delta W)$ over `SHAPES`, $\\|\\Delta W\\|_2$ log-spaced over [lo, hi] (times a random gap)."""
    out = []
    for i, eps in enumerate(np.geomspace(lo, hi, n)):
        m, nn, k = shapes[i % len(shapes)]
        gap = float(rng.uniform(0.1, 1.0))
        w0 = with_spectrum(rng, m, nn, gap_spectrum(rng, min(m, nn), k, gap))
        dw = exact_norm(rng, m, nn, float(eps))
        out.append((w0, dw, k, {"shape": [m, nn], "k": k, "gap": gap, "norm2_dW": float(eps)}))
    return out


def top_pairs_dw(w0: np.ndarray, k: int, eps: float) -> np.ndarray:
    """$\\varepsilon\\,U_kV_k^\\top$: raises each of the top-k singular values by exactly ε (the Weyl/Ky Fan extremal)."""
    u, _, vt = np.linalg.svd(w0, full_matrices=False)
    return eps * (u[:, :k] @ vt[:k])


def adversarial_pairs(
    rng: np.random.Generator, n: int, objective_name: str
) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """2×2 instances whose direction maximizes the Weyl (`"weyl"`) or Mirsky (`"mirsky"`) ratio."""
    out = []
    for _ in range(n):
        w0 = with_spectrum(rng, 2, 2, gap_spectrum(rng, 2, 1, float(rng.uniform(0.1, 1.0))))
        eps = float(rng.uniform(0.01, 1.0))

        def direction(x: np.ndarray, eps: float = eps) -> np.ndarray:
            e = x.reshape(2, 2)
            return e * (eps / np.linalg.norm(e, 2))

        def objective(
            x: np.ndarray, w0: np.ndarray = w0, direction=direction, eps: float = eps
        ) -> float:
            e = direction(x)
            d = np.linalg.svd(w0 + e, compute_uv=False) - np.linalg.svd(w0, compute_uv=False)
            if objective_name == "weyl":
                return float(np.max(np.abs(d)) / eps)
            return float(np.sum(d**2) / np.sum(e**2))

        x, best = adversarial_search(objective, 4, rng, starts=1, maxiter=200)
        info = {"search": objective_name, "search_best": best, "shape": [2, 2], "W0": w0}
        out.append((w0, direction(x), info))
    return out

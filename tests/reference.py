"""Float64 NumPy/SciPy references for threegate's spectral and mask functions.

Every function takes array-likes, copies them to float64 (or bool) NumPy arrays and computes the textbook
formula directly (full SVDs, explicit `m x m` projectors, `np.linalg.solve` for Schur complements), so it shares
no code path with the JAX implementation it checks.
"""

import numpy as np
import scipy.linalg as sla
from scipy.stats import linregress


def f64(x) -> np.ndarray:
    return np.array(x, dtype=np.float64)


def svdvals(w) -> np.ndarray:
    return sla.svdvals(f64(w))


def norm2(w) -> float:
    s = svdvals(w)
    return float(s[0]) if s.size else 0.0


def top_bases(w, k: int) -> tuple[np.ndarray, np.ndarray]:
    u, _, vt = np.linalg.svd(f64(w), full_matrices=False)
    return u[:, :k], vt[:k].T


def gap(w, k: int) -> float:
    s = svdvals(w)
    nxt = s[k] if k < s.size else 0.0
    return float(s[k - 1] - nxt)


def sin_theta(u, u_hat) -> float:
    """Largest sine of the principal angles (SciPy's Knyazev–Argentati `subspace_angles`)."""
    return float(np.sin(sla.subspace_angles(f64(u), f64(u_hat))).max())


def projector_distance(u, u_hat) -> float:
    u, u_hat = f64(u), f64(u_hat)
    return float(np.linalg.norm(u @ u.T - u_hat @ u_hat.T, 2))


def wedin_lhs(w0, w1, k: int) -> float:
    u0, v0 = top_bases(w0, k)
    u1, v1 = top_bases(w1, k)
    return max(sin_theta(u0, u1), sin_theta(v0, v1))


def spectral_shift(w0, w1) -> float:
    s0, s1 = svdvals(w0), svdvals(w1)
    return float(np.linalg.norm(s1 - s0) / np.linalg.norm(s0))


def energy_fraction(w0, dw, k: int) -> float:
    u, v = top_bases(w0, k)
    dw = f64(dw)
    return float(np.sum((u.T @ dw @ v) ** 2) / np.sum(dw**2))


def schur_complement(f, idx_w) -> np.ndarray:
    f = f64(f)
    idx_w = np.asarray(idx_w)
    rest = np.setdiff1d(np.arange(f.shape[0]), idx_w)
    fww, fwr, frr = f[np.ix_(idx_w, idx_w)], f[np.ix_(idx_w, rest)], f[np.ix_(rest, rest)]
    return fww - fwr @ np.linalg.solve(frr, fwr.T)


def eig_moduli(a) -> np.ndarray:
    """|eigenvalues| sorted descending (for the non-normal, premise-removed variants of Weyl-type bounds)."""
    return np.sort(np.abs(np.linalg.eigvals(f64(a))))[::-1]


def stable_top(scores, count: int, largest: bool) -> np.ndarray:
    flat = f64(scores).reshape(-1)
    order = np.argsort(-flat if largest else flat, kind="stable")
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:count]] = True
    return mask.reshape(np.shape(scores))


def principal_mask(w, k: int, count: int) -> np.ndarray:
    u, s, vt = np.linalg.svd(f64(w), full_matrices=False)
    recon = (u[:, :k] * s[:k]) @ vt[:k]
    return stable_top(np.abs(recon), count, largest=True)


def low_magnitude_mask(w, count: int) -> np.ndarray:
    return stable_top(np.abs(f64(w)), count, largest=False)


def jaccard(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return float((a & b).sum() / (a | b).sum())


def moving_average(x, width: int) -> np.ndarray:
    x = f64(x)
    n, h = x.shape[-1], width // 2
    out = np.empty_like(x)
    for i in range(n):
        lo, hi = max(0, i - h), min(n, i + h + 1)
        out[..., i] = x[..., lo:hi].mean(axis=-1)
    return out


def fit_slope(x, y, floor: float = 0.0) -> float:
    """Log-log slope of y against x, using only points with y above the float floor (diffrax-style rate test)."""
    x, y = f64(x), f64(y)
    keep = y > floor
    if keep.sum() < 3:
        raise ValueError(f"need >= 3 points above the floor {floor}, got {int(keep.sum())}")
    return float(linregress(np.log(x[keep]), np.log(y[keep])).slope)

"""Hypothesis strategies that draw a theorem's premises, not raw array entries (style E7).

Matrices are built in float64 NumPy as orthonormal basis × chosen singular values × orthonormal basis, from a drawn
seed: $W_0 = U\\,\\mathrm{diag}(\\sigma)V^\\top$ with a prescribed gap $\\sigma_k - \\sigma_{k+1}$, and a perturbation $E$
with an exact spectral norm. Shapes come from small fixed sets, so each jitted function compiles a few times only.
"""

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

#: (m, n, k) triples: k = 1 (tall), k = min(m, n) - 1 (wide), k = min(m, n) (tall).
SHAPES_K: tuple[tuple[int, int, int], ...] = ((6, 4, 1), (4, 7, 3), (5, 3, 3))
#: dw shapes for the leash (S_W is [mn, mn]).
LEASH_SHAPES: tuple[tuple[int, int], ...] = ((2, 3), (3, 3))
#: (p, block) pairs for the Schur step: a leading block size, or explicit indices.
SCHUR_BLOCKS: tuple[tuple[int, int | tuple[int, ...]], ...] = ((5, 2), (6, (4, 1, 2)))
#: shapes for coordinate masks.
MASK_SHAPES: tuple[tuple[int, int], ...] = ((6, 4), (8, 8), (5, 7))

SEEDS = st.integers(0, 2**32 - 1)


def log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] spread evenly in log scale."""
    return st.floats(np.log10(lo), np.log10(hi)).map(lambda t: float(10.0**t))


def orthonormal(rng: np.random.Generator, m: int, r: int) -> np.ndarray:
    """`[m, r]` Haar-distributed orthonormal columns (QR with the sign fix of Mezzadri 2007)."""
    q, rr = np.linalg.qr(rng.standard_normal((m, r)))
    return q * np.sign(np.diag(rr))[None, :]


def with_spectrum(rng: np.random.Generator, m: int, n: int, sigma) -> np.ndarray:
    """$U\\,\\mathrm{diag}(\\sigma)V^\\top$ with random orthonormal $U$ `[m, r]`, $V$ `[n, r]`, r = len(sigma)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    r = sigma.size
    return (orthonormal(rng, m, r) * sigma[None, :]) @ orthonormal(rng, n, r).T


@dataclass(frozen=True)
class PerturbedCase:
    """$W_0$ with singular values `sigma` and a perturbation $E$ with singular values `e_sigma` (`e_sigma[0]` = $\\|E\\|_2$)."""

    m: int
    n: int
    k: int
    sigma: tuple[float, ...]
    e_sigma: tuple[float, ...]
    seed: int

    def w0(self) -> np.ndarray:
        return with_spectrum(np.random.default_rng([self.seed, 0]), self.m, self.n, self.sigma)

    def e(self) -> np.ndarray:
        return with_spectrum(np.random.default_rng([self.seed, 1]), self.m, self.n, self.e_sigma)

    def w1(self) -> np.ndarray:
        return self.w0() + self.e()

    @property
    def gap(self) -> float:
        nxt = self.sigma[self.k] if self.k < len(self.sigma) else 0.0
        return self.sigma[self.k - 1] - nxt

    @property
    def e_norm(self) -> float:
        return self.e_sigma[0]


@st.composite
def spectra(
    draw, r: int, k: int, gap: float | None = None, tail_max: float = 1.0
) -> tuple[float, ...]:
    """`r` singular values, descending, with $\\sigma_k - \\sigma_{k+1}$ = `gap` exactly ($\\sigma_{r+1} := 0$).

    The tail lies in [0, tail_max]; the top block sits above $\\sigma_{k+1}$ + gap with increments that may be 0
    (repeated singular values inside the top block).
    """
    if gap is None:
        gap = draw(st.floats(0.05, 2.0))
    tail = sorted(
        draw(st.lists(st.floats(0.0, tail_max), min_size=r - k, max_size=r - k)), reverse=True
    )
    sigma_k = (tail[0] if tail else 0.0) + gap
    incs = draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0]), min_size=k - 1, max_size=k - 1))
    top = [sigma_k + sum(incs[i:]) for i in range(k - 1)] + [sigma_k]
    return tuple(top + tail)


@st.composite
def perturbed_cases(
    draw, rel: tuple[float, float] = (1e-4, 0.9), relative_to_gap: bool = True
) -> PerturbedCase:
    """A `PerturbedCase` with $\\|E\\|_2$ = ρ·γ_k (or ρ itself if not `relative_to_gap`), ρ log-uniform in `rel`."""
    m, n, k = draw(st.sampled_from(SHAPES_K))
    r = min(m, n)
    sigma = draw(spectra(r, k))
    nxt = sigma[k] if k < r else 0.0
    rho = draw(log_uniform(*rel))
    e_norm = rho * (sigma[k - 1] - nxt) if relative_to_gap else rho
    shape = sorted(
        draw(st.lists(st.floats(0.0, 1.0), min_size=r - 1, max_size=r - 1)), reverse=True
    )
    return PerturbedCase(m, n, k, sigma, tuple(e_norm * s for s in [1.0, *shape]), draw(SEEDS))


@dataclass(frozen=True)
class LeashCase:
    """$\\Delta W$ `[m, n]`, SPD $S_W$ with eigenvalues `lam` (min = μ_W), budget δ_W = (1 + slack)·½vecᵀS vec."""

    m: int
    n: int
    lam: tuple[float, ...]
    scale: float
    slack: float
    seed: int

    def s_w(self) -> np.ndarray:
        q = orthonormal(np.random.default_rng([self.seed, 0]), self.m * self.n, self.m * self.n)
        return (q * np.asarray(self.lam)[None, :]) @ q.T

    def dw(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1])
        return self.scale * rng.standard_normal((self.m, self.n))

    def quad(self) -> float:
        x = self.dw().reshape(-1)
        return 0.5 * float(x @ self.s_w() @ x)

    def delta(self) -> float:
        return (1 + self.slack) * self.quad()


@st.composite
def leash_cases(draw) -> LeashCase:
    m, n = draw(st.sampled_from(LEASH_SHAPES))
    mu = draw(log_uniform(1e-2, 1.0))
    rest = draw(st.lists(log_uniform(1.0, 100.0), min_size=m * n - 1, max_size=m * n - 1))
    lam = tuple(sorted([mu * r for r in rest] + [mu]))
    return LeashCase(
        m, n, lam, draw(log_uniform(1e-3, 1.0)), draw(log_uniform(1e-3, 10.0)), draw(SEEDS)
    )


@dataclass(frozen=True)
class SchurCase:
    """PSD Fisher $F$ `[p, p]` with eigenvalues `lam`, a step Δθ of size `scale`, and the W block."""

    p: int
    block: int | tuple[int, ...]
    lam: tuple[float, ...]
    scale: float
    seed: int

    def f(self) -> np.ndarray:
        q = orthonormal(np.random.default_rng([self.seed, 0]), self.p, self.p)
        return (q * np.asarray(self.lam)[None, :]) @ q.T

    def dtheta(self) -> np.ndarray:
        return self.scale * np.random.default_rng([self.seed, 1]).standard_normal(self.p)

    def w_indices(self) -> tuple[int, ...]:
        return tuple(range(self.block)) if isinstance(self.block, int) else self.block


@st.composite
def schur_cases(draw) -> SchurCase:
    p, block = draw(st.sampled_from(SCHUR_BLOCKS))
    lam = draw(st.lists(log_uniform(1e-2, 3.0), min_size=p, max_size=p))
    return SchurCase(p, block, tuple(lam), draw(log_uniform(1e-3, 10.0)), draw(SEEDS))


@st.composite
def bool_masks(draw, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A boolean mask of a fixed-set shape whose density is drawn (0 and 1 included)."""
    if shape is None:
        shape = draw(st.sampled_from(MASK_SHAPES))
    p = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.05, 0.95))
    return np.random.default_rng(draw(SEEDS)).random(shape) < p

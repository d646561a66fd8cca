"""One spectral decomposition per matrix, shared by every metric of `threegate compare`.

Shapes: `w`, `dw` are `[m, n]` (HF `[out, in]`); `u` is `[m, k]`, `v` is `[n, k]`, `s` holds all
$p = \\min(m, n)$ singular values, descending.

Method ("gram-eigh-f64"): with $A = W$ when $m \\ge n$ and $A = W^\\top$ otherwise ($q = \\min(m, n)$ columns),
form the Gram matrix $G = A^\\top A$ in float64 at "highest" precision, take `eigh`, and read
$\\sigma_i = \\sqrt{\\max(\\lambda_i, 0)}$, the small-side singular vectors from the eigenvectors and the other side
as $A v_i / \\sigma_i$ for $i \\le k$. Why: on a 2-core CPU, for $8960\\times1536$ this takes 3.3 s against 13 s
for jax's float32 SVD with vectors (values only: 2.0 s), and it accumulates over row blocks.
Accuracy: `eigh` of $G$ has absolute eigenvalue error $\\lesssim c\\,q\\,\\varepsilon_{64}\\lambda_1$, so
$|\\hat\\sigma_i - \\sigma_i| \\lesssim c\\,q\\,\\varepsilon_{64}\\,\\sigma_1^2/(2\\sigma_i)$ and never more than
$\\sqrt{c\\,q\\,\\varepsilon_{64}}\\,\\sigma_1$ (about $4\\cdot10^{-7}\\sigma_1$ for $q = 1536$) — below the
$q\\,\\varepsilon_{32}\\sigma_1$ of a float32 SVD for every $\\sigma_i \\ge 10^{-6}\\sigma_1$, which keeps NSS (M12) of
small RL updates above its noise floor (a float32 Gram would not: paper-digest §9). Vector error is
$O(\\varepsilon_{64}\\sigma_1^2/(\\sigma_k\\gamma_k))$; the tests compare against SciPy's float64 SVD.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from threegate._numerics import MATMUL_PRECISION, matmul
from threegate.spectral import principal_angles, sin_theta, subspace_energy_fraction_from_basis

__all__ = [
    "SVD_METHOD",
    "Spectrum",
    "TunedSpectral",
    "base_spectral",
    "gram_spectrum",
    "spectral_norm",
    "tuned_spectral",
]

#: Name of the decomposition, recorded in every output record.
SVD_METHOD = "gram-eigh-f64"


class Spectrum(NamedTuple):
    """All singular values and the top-k singular vectors of one matrix (float64, on the host).

    Attributes:
      s: `[p]` all singular values, descending, $p = \\min(m, n)$.
      u: `[m, k]` top-k left singular vectors.
      v: `[n, k]` top-k right singular vectors.
    """

    s: np.ndarray
    u: np.ndarray
    v: np.ndarray


def _gram(a: jax.Array) -> jax.Array:
    """$A^\\top A$ accumulated in float64; float32-representable inputs stay float32 operands (products exact)."""
    if a.dtype == jnp.float64:
        return matmul(a.T, a)
    a = a.astype(jnp.float32)
    dims = (((0,), (0,)), ((), ()))
    return lax.dot_general(
        a, a, dims, precision=MATMUL_PRECISION, preferred_element_type=jnp.float64
    )


def _times(a: jax.Array, x: jax.Array) -> jax.Array:
    """$A X$ in float64 for float64 `x`: with float32 `a`, `x` is split as hi + lo (two float32 parts, error
    $\\le\\varepsilon_{32}^2|x|$) so no float64 copy of the large `a` is made."""
    if a.dtype == jnp.float64:
        return matmul(a, x)
    a = a.astype(jnp.float32)
    hi = x.astype(jnp.float32)
    lo = (x - hi.astype(jnp.float64)).astype(jnp.float32)
    dims = (((1,), (0,)), ((), ()))
    dot = lambda y: lax.dot_general(  # noqa: E731
        a, y, dims, precision=MATMUL_PRECISION, preferred_element_type=jnp.float64
    )
    return dot(hi) + dot(lo)


def _decompose(w: jax.Array, k: int, left: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(s, u_k, v_k) of `w` from the float64 eigendecomposition of its smaller Gram matrix."""
    a = w.T if left else w  # [big, small]
    lam, vec = jnp.linalg.eigh(_gram(a))
    lam, vec = lam[::-1], vec[:, ::-1]
    s = jnp.sqrt(jnp.clip(lam, 0.0, None))
    small = vec[:, :k]
    sk = s[:k]
    big = _times(a, small) / jnp.where(sk > 0, sk, 1.0)[None, :]
    return (s, small, big) if left else (s, big, small)


def _norm(w: jax.Array, left: bool) -> jax.Array:
    a = w.T if left else w
    lam = jnp.linalg.eigvalsh(_gram(a))
    return jnp.sqrt(jnp.clip(lam[-1], 0.0, None))


_decompose_jit = jax.jit(_decompose, static_argnames=("k", "left"))
_norm_jit = jax.jit(_norm, static_argnames="left")


@functools.partial(jax.jit, static_argnames=("k", "left", "dtype"))
def _base_fn(w, k: int, left: bool, dtype: str):
    s, u, v = _decompose(w, k, left)
    dt = jnp.dtype(dtype)
    recon = jnp.abs(matmul(u.astype(dt) * s[:k].astype(dt)[None, :], v.astype(dt).T))
    return s, u, v, recon


@functools.partial(jax.jit, static_argnames=("k", "left", "dtype"))
def _tuned_fn(w0, w1, u0, v0, k: int, left: bool, dtype: str):
    wide = jnp.float64 if w1.dtype == jnp.float64 else jnp.float32
    dw = w1.astype(wide) - w0.astype(wide)  # exact for bf16 pairs (see `tuned_spectral`)
    s1, u1, v1 = _decompose(w1, k, left)
    dt = jnp.dtype(dtype)
    a0, b0, a1, b1 = u0.astype(dt), v0.astype(dt), u1.astype(dt), v1.astype(dt)
    return (
        s1,
        _norm(dw, left),
        principal_angles(a0, a1),
        principal_angles(b0, b1),
        sin_theta(a0, a1),
        sin_theta(b0, b1),
        subspace_energy_fraction_from_basis(a0, b0, dw.astype(dt)),
    )


def _f64(w: np.ndarray) -> jax.Array:
    return jnp.asarray(np.asarray(w, dtype=np.float64))


def _check(w: np.ndarray, k: int | None = None) -> np.ndarray:
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D, got shape {w.shape}")
    if k is not None and not 1 <= k <= min(w.shape):
        raise ValueError(f"k must be in [1, min(m, n)] = [1, {min(w.shape)}], got {k}")
    return w


def gram_spectrum(w: np.ndarray, k: int) -> Spectrum:
    """All singular values and the top-k singular vectors of `w` via the float64 Gram eigendecomposition.

    Runs on JAX's default device (float64 enabled inside this call only).

    Args:
      w: `[m, n]` real matrix (any float dtype; upcast to float64 exactly).
      k: number of singular vectors, $1 \\le k \\le \\min(m, n)$. Where $\\sigma_i = 0$ ($i \\le k$) the
        large-side vector is returned as 0 (undefined).

    Returns:
      `Spectrum(s [p], u [m, k], v [n, k])`, float64 NumPy arrays.

    Example:
      >>> gram_spectrum(np.diag([3.0, 1.0]), 1).s.tolist()
      [3.0, 1.0]
    """
    w = _check(w, k)
    with jax.enable_x64(True):
        s, u, v = _decompose_jit(_f64(w), k, w.shape[0] < w.shape[1])
        return Spectrum(np.asarray(s), np.asarray(u), np.asarray(v))


def spectral_norm(w: np.ndarray) -> float:
    """$\\|W\\|_2 = \\sqrt{\\lambda_{\\max}(A^\\top A)}$ in float64 via `eigvalsh` of the smaller Gram matrix."""
    w = _check(w)
    with jax.enable_x64(True):
        return float(_norm_jit(_f64(w), w.shape[0] < w.shape[1]))


def base_spectral(w0: np.ndarray, k: int, dtype: str) -> tuple[Spectrum, np.ndarray]:
    """The base's `Spectrum` and $|W_0^{(k)}|$, the rank-k reconstruction (M8 scores) in `dtype`, in one jit.

    `w0` travels to the device in its stored dtype and is upcast there (less host memory and transfer).
    """
    w0 = _check(w0, k)
    with jax.enable_x64(True):
        s, u, v, recon = _base_fn(jnp.asarray(w0), k, w0.shape[0] < w0.shape[1], dtype)
        return Spectrum(np.asarray(s), np.asarray(u), np.asarray(v)), np.asarray(recon)


class TunedSpectral(NamedTuple):
    """Spectral measurements of one tuned matrix against the base spectrum.

    Attributes:
      s: `[p]` all singular values of $W_1$ (float64).
      dw_norm2: $\\|\\Delta W\\|_2$ (float64).
      angles_u, angles_v: `[k]` principal angles (radians, descending) between the top-k subspaces.
      sin_u, sin_v: $\\|\\sin\\Theta\\|_2$ by the projector complement.
      energy: $\\|U_k^\\top\\Delta W V_k\\|_F^2/\\|\\Delta W\\|_F^2$ (NaN when $\\Delta W = 0$).
    """

    s: np.ndarray
    dw_norm2: float
    angles_u: np.ndarray
    angles_v: np.ndarray
    sin_u: float
    sin_v: float
    energy: float


def tuned_spectral(w0: np.ndarray, w1: np.ndarray, base: Spectrum, dtype: str) -> TunedSpectral:
    """Decompose $W_1$ and measure angles, $\\|\\Delta W\\|_2$ and the energy share against `base`, in one jit.

    `w0`, `w1` travel in their stored dtype; $\\Delta W = W_1 - W_0$ is formed on the device in float32 (float64
    for float64 inputs): exact for bf16/f16 pairs whose magnitudes are within $2^{16}$ of each other and for float32
    pairs within a factor 2 (Sterbenz), i.e. for every fine-tuned weight; otherwise rounded once ($2^{-24}$
    relative). Gram matrices accumulate float32 operands in float64 (exact products), so no float64 copy of a
    large matrix is made. The measured products (angles, sines, energy) run in `dtype` at "highest" precision; the
    decomposition and $\\|\\Delta W\\|_2$ in float64.
    """
    w0, w1 = _check(w0), _check(w1)
    if w0.shape != w1.shape:
        raise ValueError(f"w0 and w1 must have the same shape, got {w0.shape} and {w1.shape}")
    k = base.u.shape[1]
    with jax.enable_x64(True):
        out = _tuned_fn(
            jnp.asarray(w0),
            jnp.asarray(w1),
            jnp.asarray(base.u),
            jnp.asarray(base.v),
            k,
            w1.shape[0] < w1.shape[1],
            dtype,
        )
        s1, e2, au, av, su, sv, en = (np.asarray(x) for x in out)
    return TunedSpectral(
        s1, float(e2), au.astype(np.float64), av.astype(np.float64), float(su), float(sv), float(en)
    )

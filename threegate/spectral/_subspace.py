"""Top-k singular subspaces, principal angles and spectral-drift metrics (implementation of `threegate.spectral`).

Shapes: `w`, `w0`, `w1`, `dw` are `[m, n]` weight matrices; `u` is `[m, k]`, `v` is `[n, k]`, `s` is `[k]`.
bf16/f16 inputs are upcast to float32 (exactly); float32 and float64 stay as they are, and every result has the
measurement dtype. Every measured matmul runs at "highest" precision (`threegate._numerics.matmul`).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from threegate._numerics import matmul, upcast

__all__ = [
    "TopK",
    "principal_angles",
    "projector_distance",
    "sin_theta",
    "spectral_gap",
    "spectral_shift",
    "subspace_energy_fraction",
    "subspace_energy_fraction_from_basis",
    "subspace_energy_null",
    "top_k",
]


class TopK(NamedTuple):
    """The top-k singular triplets of a matrix: $W \\approx U_k\\,\\mathrm{diag}(s)\\,V_k^\\top$."""

    u: Float[Array, "m k"]
    s: Float[Array, " k"]
    v: Float[Array, "n k"]


def as_float(x: ArrayLike, name: str, ndim: int = 2) -> jax.Array:
    """`x` as a real floating JAX array of rank `ndim`, upcast to its measurement dtype; raises on static misuse."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a real floating array, got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return upcast(x)


def _same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )


def check_k(k: int, m: int, n: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= min(m, n):
        raise ValueError(f"k must be an int in [1, min(m, n)] = [1, {min(m, n)}], got {k!r}")


def svdvals(x: jax.Array) -> jax.Array:
    return jnp.linalg.svd(x, compute_uv=False)


def norm2(x: jax.Array) -> jax.Array:
    """Spectral norm $\\|x\\|_2 = \\sigma_1(x)$ (0 for an empty matrix)."""
    sv = svdvals(x)
    return sv[0] if sv.shape[0] else jnp.zeros((), x.dtype)


@functools.partial(jax.jit, static_argnames="k")
def top_k(w: ArrayLike, k: int) -> TopK:
    """Top-k singular triplets $(U_k, \\sigma_{1..k}, V_k)$ of `w` (thin SVD, descending $\\sigma$).

    Args:
      w: `[m, n]` matrix.
      k: static rank, $1 \\le k \\le \\min(m, n)$.

    Returns:
      `TopK(u [m, k], s [k], v [n, k])` with orthonormal columns. Singular vectors carry sign/rotation
      freedom: compare them through projectors or angles only.

    Example:
      >>> import jax.numpy as jnp
      >>> top_k(jnp.diag(jnp.array([3.0, 1.0])), 1).s
      Array([3.], dtype=float32)
    """
    w = as_float(w, "w")
    check_k(k, *w.shape)
    u, s, vt = jnp.linalg.svd(w, full_matrices=False)
    return TopK(u[:, :k], s[:k], vt[:k, :].T)


def gap_from_values(s: jax.Array, k: int) -> jax.Array:
    nxt = s[k] if k < s.shape[0] else jnp.zeros((), s.dtype)
    return s[k - 1] - nxt


@functools.partial(jax.jit, static_argnames="k")
def spectral_gap(w: ArrayLike, k: int) -> Float[Array, ""]:
    """Spectral gap $\\gamma_k = \\sigma_k(W) - \\sigma_{k+1}(W)$, with $\\sigma_{\\min(m,n)+1} := 0$ (Thm 3.3).

    Example:
      >>> import jax.numpy as jnp
      >>> spectral_gap(jnp.diag(jnp.array([3.0, 1.0])), 1)
      Array(2., dtype=float32)
    """
    w = as_float(w, "w")
    check_k(k, *w.shape)
    return gap_from_values(svdvals(w), k)


def _orthonormal_basis(a: jax.Array) -> jax.Array:
    """Orthonormal basis of the column space of a full-column-rank `a` (Householder QR)."""
    q, _ = jnp.linalg.qr(a, mode="reduced")
    return q


@jax.jit
def principal_angles(a: ArrayLike, b: ArrayLike) -> Float[Array, " p"]:
    """Principal angles between the column spaces of `a` and `b`, in radians, largest first.

    Follows Knyazev & Argentati (2002) without an inverse cosine: with orthonormal bases $Q_a$, $Q_b$ (QR) and
    $\\ell = \\min(k_a, k_b)$, the cosines are $\\sigma(Q_a^\\top Q_b)$ and the sines are
    $\\sigma\\big((I - Q_aQ_a^\\top)Q_b\\big)$ (roles swapped when $k_a < k_b$). Pairing the $i$-th largest sine
    with the $i$-th smallest cosine, $\\theta_i = \\operatorname{arctan2}(\\sin_i, \\cos_i)$ has absolute error of
    order $\\varepsilon$ for every angle, small (sine-dominated) or near $\\pi/2$ (cosine-dominated).

    Args:
      a: `[m, ka]` full column rank.
      b: `[m, kb]` full column rank (same `m`).

    Returns:
      `[min(ka, kb)]` angles in $[0, \\pi/2]$, sorted descending like `scipy.linalg.subspace_angles`.

    References:
      Knyazev, Argentati, SIAM J. Sci. Comput. 23(6), 2002; Björck & Golub, Math. Comp. 27, 1973.

    Example:
      >>> import jax.numpy as jnp
      >>> principal_angles(jnp.eye(3)[:, :1], jnp.array([[1.0], [1.0], [0.0]]))  # doctest: +SKIP
      Array([0.7853982], dtype=float32)
    """
    a = as_float(a, "a")
    b = as_float(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"a and b must have the same number of rows, got shapes {a.shape} and {b.shape}"
        )
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError(f"a and b need at least one column, got shapes {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    qa, qb = _orthonormal_basis(a), _orthonormal_basis(b)
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa
    cross = matmul(qa.T, qb)  # [ka, kb], ka >= kb
    cosines = svdvals(cross)  # descending, kb values
    sines = svdvals(qb - matmul(qa, cross))  # descending, kb values
    return jnp.arctan2(jnp.clip(sines, 0, 1), jnp.clip(cosines[::-1], 0, 1))


@jax.jit
def sin_theta(u: ArrayLike, u_hat: ArrayLike) -> Float[Array, ""]:
    """$\\|\\sin\\Theta(U, \\hat U)\\|_2 = \\|\\hat U - U(U^\\top\\hat U)\\|_2$ for orthonormal `u`, `u_hat` (`[m, k]`).

    The projector-complement form keeps full relative accuracy for small angles (no inverse cosine).

    Example:
      >>> import jax.numpy as jnp
      >>> sin_theta(jnp.eye(2)[:, :1], jnp.array([[0.6], [0.8]]))  # doctest: +SKIP
      Array(0.8, dtype=float32)
    """
    u = as_float(u, "u")
    u_hat = as_float(u_hat, "u_hat")
    _same_shape(u, u_hat, "u", "u_hat")
    return norm2(u_hat - matmul(u, matmul(u.T, u_hat)))


@jax.jit
def projector_distance(u: ArrayLike, u_hat: ArrayLike) -> Float[Array, ""]:
    """$\\|UU^\\top - \\hat U\\hat U^\\top\\|_2$ for orthonormal `u` `[m, k]`, `u_hat` `[m, l]` (Cor F.13 lhs).

    $UU^\\top - \\hat U\\hat U^\\top$ vanishes off $\\mathrm{span}[U, \\hat U]$, so it is compressed to an orthonormal
    basis $Q$ of that span ($2k$ columns at most) and its norm read from the eigenvalues of the symmetric
    $(Q^\\top U)(Q^\\top U)^\\top - (Q^\\top\\hat U)(Q^\\top\\hat U)^\\top$; no `m x m` matrix is formed. For $k = l$ it
    equals $\\|\\sin\\Theta\\|_2$; for $k \\ne l$ it is 1.
    """
    u = as_float(u, "u")
    u_hat = as_float(u_hat, "u_hat")
    if u.shape[0] != u_hat.shape[0]:
        raise ValueError(
            f"u and u_hat must have the same number of rows, got {u.shape} and {u_hat.shape}"
        )
    both = jnp.concatenate([u, u_hat], axis=1)
    q, _ = jnp.linalg.qr(
        both, mode="reduced"
    )  # span(q) contains span(both) even when rank-deficient
    cu, ch = matmul(q.T, u), matmul(q.T, u_hat)
    diff = matmul(cu, cu.T) - matmul(ch, ch.T)
    diff = 0.5 * (diff + diff.T)
    return jnp.max(jnp.abs(jnp.linalg.eigvalsh(diff)))


@jax.jit
def spectral_shift(w0: ArrayLike, w1: ArrayLike) -> Float[Array, ""]:
    """Normalized spectral shift (M12): $\\|\\sigma(W_1) - \\sigma(W_0)\\|_2 / \\|\\sigma(W_0)\\|_2$.

    Full sorted spectra; $\\|\\sigma(W_0)\\|_2 = \\|W_0\\|_F$. Returns NaN when $W_0 = 0$ (undefined, by choice
    rather than a silent 0/0). Example: $W_1 = cW_0$ gives $|c-1|$; $W_1 = QW_0P$ (orthogonal $Q$, $P$) gives 0.
    """
    w0 = as_float(w0, "w0")
    w1 = as_float(w1, "w1")
    _same_shape(w0, w1, "w0", "w1")
    s0, s1 = svdvals(w0), svdvals(w1)
    den = jnp.linalg.norm(s0)
    num = jnp.linalg.norm(s1 - s0)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), jnp.nan)


@jax.jit
def subspace_energy_fraction_from_basis(
    u: ArrayLike, v: ArrayLike, dw: ArrayLike
) -> Float[Array, ""]:
    """Share of $\\|\\Delta W\\|_F^2$ inside given subspaces: $\\|U^\\top\\Delta W V\\|_F^2 / \\|\\Delta W\\|_F^2$.

    Args:
      u: `[m, k]` orthonormal (e.g. `top_k(w0, k).u`).
      v: `[n, k]` orthonormal.
      dw: `[m, n]` update $\\Delta W$.

    Returns:
      A value in $[0, 1]$; NaN when $\\Delta W = 0$ (undefined). Null: `subspace_energy_null(m, n, k)`.
    """
    u = as_float(u, "u")
    v = as_float(v, "v")
    dw = as_float(dw, "dw")
    if u.shape[0] != dw.shape[0] or v.shape[0] != dw.shape[1] or u.shape[1] != v.shape[1]:
        raise ValueError(
            f"need u [m, k], v [n, k], dw [m, n]; got {u.shape}, {v.shape}, {dw.shape}"
        )
    inside = jnp.sum(jnp.square(matmul(matmul(u.T, dw), v)))
    total = jnp.sum(jnp.square(dw))
    return jnp.where(total > 0, inside / jnp.where(total > 0, total, 1), jnp.nan)


@functools.partial(jax.jit, static_argnames="k")
def subspace_energy_fraction(w0: ArrayLike, dw: ArrayLike, k: int) -> Float[Array, ""]:
    """Share of $\\|\\Delta W\\|_F^2$ in the top-k singular subspaces of $W_0$: $\\|U_k^\\top\\Delta W V_k\\|_F^2/\\|\\Delta W\\|_F^2$.

    The null for an isotropic random $\\Delta W$ is $k^2/(mn)$ (`subspace_energy_null`); NaN when $\\Delta W = 0$.
    """
    w0 = as_float(w0, "w0")
    dw = as_float(dw, "dw")
    _same_shape(w0, dw, "w0", "dw")
    u, _, v = top_k(w0, k)
    return subspace_energy_fraction_from_basis(u, v, dw)


def subspace_energy_null(m: int, n: int, k: int) -> float:
    """Expected `subspace_energy_fraction` for an isotropic Gaussian $\\Delta W$: exactly $k^2/(mn)$.

    (The fraction is Beta$(k^2/2, (mn-k^2)/2)$-distributed: a uniform direction in $\\mathbb R^{mn}$ projected on
    the $k^2$-dimensional subspace $\\{U_kXV_k^\\top\\}$.)
    """
    if min(m, n) < 1:
        raise ValueError(f"m and n must be >= 1, got {m} and {n}")
    check_k(k, m, n)
    return k * k / (m * n)

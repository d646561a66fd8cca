"""Gate II bound checks (Thm 3.3, Cor 3.4, 3.5, Lemmas F.10–F.12, Cor F.13, App. F.3), re-exported by `spectral`.

Shapes: `w0`, `w1` are `[m, n]` (base and perturbed weight, $\\Delta W = W_1 - W_0$); `dw` is `[m, n]`; `s_w` is
`[m n, m n]` acting on $\\mathrm{vec}(\\Delta W)$ in **row-major** order (`dw.reshape(-1)`, NumPy/C order); `f` is a
`[p, p]` Fisher matrix and `dtheta` a `[p]` step. Every check returns `BoundCheck(lhs, rhs, premise)`: premises are
data (never raised, never divided by); where a premise fails and the bound's formula would divide by zero, `rhs`
is `+inf` (no bound is claimed).
"""

import functools
import operator

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from threegate._numerics import matmul, premise_le, premise_lt, tol
from threegate._types import BoundCheck
from threegate.spectral._subspace import (
    as_float,
    check_k,
    gap_from_values,
    norm2,
    projector_distance,
    sin_theta,
    svdvals,
)

__all__ = [
    "ky_fan_check",
    "leash_check",
    "mirsky_check",
    "projector_check",
    "schur_check",
    "schur_complement",
    "wedin_check",
    "weyl_check",
]


def _pair(w0: ArrayLike, w1: ArrayLike) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Canonical `(w0, w1, dw)` in the measurement dtype; raises on shape or dtype mismatch."""
    w0 = as_float(w0, "w0")
    w1 = as_float(w1, "w1")
    if w0.shape != w1.shape:
        raise ValueError(f"w0 and w1 must have the same shape, got {w0.shape} and {w1.shape}")
    if w0.dtype != w1.dtype:
        raise TypeError(f"w0 and w1 must have the same dtype, got {w0.dtype} and {w1.dtype}")
    return w0, w1, w1 - w0


def _true(shape: tuple[int, ...] = ()) -> jax.Array:
    return jnp.ones(shape, dtype=bool)


def _safe_div(num: jax.Array, den: jax.Array, ok: jax.Array) -> jax.Array:
    """`num / den` where `ok`, `+inf` elsewhere; never evaluates a division by zero."""
    return jnp.where(ok, num / jnp.where(ok, den, 1), jnp.inf)


@jax.jit
def weyl_check(w0: ArrayLike, w1: ArrayLike) -> BoundCheck:
    """Weyl's inequality (Cor 3.4, Lemma F.12): $\\max_i|\\sigma_i(W_1) - \\sigma_i(W_0)| \\le \\|\\Delta W\\|_2$.

    Theorem: holds for all real matrices of equal shape (no premise; `premise` is True). Tight for
    $\\Delta W = \\varepsilon u_1v_1^\\top$.

    References: Weyl (1912); Stewart & Sun, *Matrix Perturbation Theory* (1990), Cor. IV.4.9.

    Example:
      >>> import jax.numpy as jnp
      >>> c = weyl_check(jnp.eye(2), jnp.diag(jnp.array([1.5, 1.0])))
      >>> float(c.lhs), float(c.rhs)
      (0.5, 0.5)
    """
    w0, w1, dw = _pair(w0, w1)
    lhs = jnp.max(jnp.abs(svdvals(w1) - svdvals(w0)))
    return BoundCheck(lhs, norm2(dw), _true())


@jax.jit
def mirsky_check(w0: ArrayLike, w1: ArrayLike) -> BoundCheck:
    """Mirsky / Hoffman–Wielandt (Cor 3.4, Eq. 9): $\\sum_i(\\sigma_i(W_1) - \\sigma_i(W_0))^2 \\le \\|\\Delta W\\|_F^2$.

    Theorem: holds for all real matrices of equal shape (`premise` True). Tight when $\\Delta W$ is diagonal in the
    singular basis of $W_0$ and keeps the order of the singular values.

    References: Mirsky, Quart. J. Math. 11 (1960); Stewart & Sun (1990), Thm. IV.4.11.
    """
    w0, w1, dw = _pair(w0, w1)
    lhs = jnp.sum(jnp.square(svdvals(w1) - svdvals(w0)))
    return BoundCheck(lhs, jnp.sum(jnp.square(dw)), _true())


@functools.partial(jax.jit, static_argnames="k")
def ky_fan_check(w0: ArrayLike, w1: ArrayLike, k: int) -> BoundCheck:
    """Both links of the Ky Fan chain (Cor 3.5, Eq. 10), stacked on a leading axis of size 2.

    Theorem: with $\\|W\\|_{(k)} = \\sum_{i\\le k}\\sigma_i(W)$,
    $\\big|\\|W_1\\|_{(k)} - \\|W_0\\|_{(k)}\\big| \\le \\sum_{i\\le k}|\\Delta\\sigma_i| \\le k\\|\\Delta W\\|_2$.
    Link 0 is the triangle inequality, link 1 is Weyl summed over $i \\le k$; no premise (`premise` True).

    Returns:
      `BoundCheck` with `lhs`, `rhs`, `premise` of shape `[2]`: index 0 the first link, index 1 the second.
    """
    w0, w1, dw = _pair(w0, w1)
    check_k(k, *w0.shape)
    s0, s1 = svdvals(w0)[:k], svdvals(w1)[:k]
    abs_sum = jnp.sum(jnp.abs(s1 - s0))
    lhs = jnp.stack([jnp.abs(jnp.sum(s1) - jnp.sum(s0)), abs_sum])
    rhs = jnp.stack([abs_sum, k * norm2(dw)])
    return BoundCheck(lhs, rhs, _true((2,)))


@functools.partial(jax.jit, static_argnames=("k", "form"))
def wedin_check(w0: ArrayLike, w1: ArrayLike, k: int, form: str = "rigorous") -> BoundCheck:
    """Wedin's sin-Θ bound on the top-k singular subspaces (Thm 3.3 / Eq. 8, Lemma F.11).

    Theorem: with $\\gamma_k = \\sigma_k(W_0) - \\sigma_{k+1}(W_0)$ (the *unperturbed* gap, $\\sigma_{\\min(m,n)+1}:=0$)
    and $\\varepsilon = \\|\\Delta W\\|_2$, the left side is
    $\\max(\\|\\sin\\Theta(U_k(W_0), U_k(W_1))\\|_2, \\|\\sin\\Theta(V_k(W_0), V_k(W_1))\\|_2)$ and

    * `form="paper"` (Eq. 8 as printed): rhs $= \\varepsilon/\\gamma_k$, premise $\\gamma_k > 0$. This form is only
      first-order correct: on $W_0 = \\mathrm{diag}(1, 0)$, $\\Delta W = [[-a, b], [b, a]]$ it is exceeded by
      $O(\\varepsilon^3)$ (digest §4 caveat).
    * `form="rigorous"`: rhs $= \\varepsilon/(\\gamma_k - \\varepsilon)$, premise $\\varepsilon < \\gamma_k$ (Wedin with
      $\\delta \\ge \\sigma_k(W_1) - \\sigma_{k+1}(W_0) \\ge \\gamma_k - \\varepsilon$ and residual norms $\\le \\varepsilon$).

    Where the premise fails, rhs is $+\\infty$. Premises are strict and decided with a margin above rounding
    (`premise_lt`, scale $\\sigma_1(W_0)$, size $\\max(m,n)$): a computed gap is never exactly 0 for a repeated singular
    value in floating point, and a gap (or $\\gamma_k-\\varepsilon$) within rounding of 0 counts as 0.

    References: Wedin, BIT 12 (1972); Stewart & Sun (1990), Thm. V.4.4; Zhu et al. (2025), Thm 3.3.
    """
    if form not in ("paper", "rigorous"):
        raise ValueError(f'form must be "paper" or "rigorous", got {form!r}')
    w0, w1, dw = _pair(w0, w1)
    check_k(k, *w0.shape)
    u0, s0, v0t = jnp.linalg.svd(w0, full_matrices=False)
    u1, _, v1t = jnp.linalg.svd(w1, full_matrices=False)
    sin_u = sin_theta(u0[:, :k], u1[:, :k])
    sin_v = sin_theta(v0t[:k].T, v1t[:k].T)
    gap = gap_from_values(s0, k)
    e = norm2(dw)
    size, scale = max(w0.shape), s0[0]
    if form == "paper":
        premise = premise_lt(jnp.zeros_like(gap), gap, w0.dtype, size, scale)
        rhs = _safe_div(e, gap, premise)
    else:
        premise = premise_lt(e, gap, w0.dtype, size, scale)
        rhs = _safe_div(e, gap - e, premise)
    return BoundCheck(jnp.maximum(sin_u, sin_v), rhs, premise)


@functools.partial(jax.jit, static_argnames="k")
def projector_check(w0: ArrayLike, w1: ArrayLike, k: int) -> BoundCheck:
    """Projector identity of Cor F.13: $\\|U_0U_0^\\top - U_1U_1^\\top\\|_2 = \\|\\sin\\Theta(U_0, U_1)\\|_2$ (and for V).

    An *equality* for subspaces of equal dimension (here both $k$): `lhs` (projector distance, computed
    independently of the sine formula, see `projector_distance`) should equal `rhs` (`sin_theta`) to rounding.

    Returns:
      `BoundCheck` with `[2]`-shaped fields: index 0 for the left subspaces $U_k$, index 1 for the right $V_k$;
      `premise` True (equal dimensions hold by construction).
    """
    w0, w1, _ = _pair(w0, w1)
    check_k(k, *w0.shape)
    u0, _, v0t = jnp.linalg.svd(w0, full_matrices=False)
    u1, _, v1t = jnp.linalg.svd(w1, full_matrices=False)
    bases = ((u0[:, :k], u1[:, :k]), (v0t[:k].T, v1t[:k].T))
    lhs = jnp.stack([projector_distance(a, b) for a, b in bases])
    rhs = jnp.stack([sin_theta(a, b) for a, b in bases])
    return BoundCheck(lhs, rhs, _true((2,)))


@jax.jit
def leash_check(dw: ArrayLike, s_w: ArrayLike, delta_w: ArrayLike) -> BoundCheck:
    """Layer-conditioned leash (Eq. 7, Lemma F.10): $\\|\\Delta W\\|_2 \\le \\|\\Delta W\\|_F \\le \\sqrt{2\\delta_W/\\mu_W}$.

    Theorem: if $\\mu_W = \\lambda_{\\min}(S_W) > 0$ and $\\tfrac12\\mathrm{vec}(\\Delta W)^\\top S_W\\mathrm{vec}(\\Delta W)
    \\le \\delta_W$, then both norms are at most $\\sqrt{2\\delta_W/\\mu_W}$ (since
    $\\delta_W \\ge \\tfrac12\\mu_W\\|\\Delta W\\|_F^2$). $\\mathrm{vec}$ is row-major (`dw.reshape(-1)`).

    Args:
      dw: `[m, n]` update $\\Delta W$.
      s_w: `[m n, m n]` symmetric curvature $S_W$ (only its symmetric part matters).
      delta_w: scalar budget $\\delta_W$.

    Returns:
      `BoundCheck` with `[2]`-shaped fields: lhs $(\\|\\Delta W\\|_F, \\|\\Delta W\\|_2)$, rhs the leash twice; premise
      (both entries) $= $ quadratic $\\le\\delta_W$ and $\\mu_W > 0$, both up to rounding (`premise_le` /
      `premise_lt`, scale $\\lambda_{\\max}(S_W)$): a step scaled exactly onto the budget meets it. rhs is $+\\infty$
      where $\\mu_W$ is not positive; where only the budget is exceeded, rhs is still the formula's value (so the
      failure is visible).
    """
    dw = as_float(dw, "dw")
    s_w = as_float(s_w, "s_w")
    size = dw.size
    if s_w.shape != (size, size):
        raise ValueError(
            f"s_w must be [m*n, m*n] = {(size, size)} for dw of shape {dw.shape}, got {s_w.shape}"
        )
    if s_w.dtype != dw.dtype:
        raise TypeError(f"dw and s_w must have the same dtype, got {dw.dtype} and {s_w.dtype}")
    delta_w = jnp.asarray(delta_w, dtype=dw.dtype)
    if delta_w.ndim != 0:
        raise ValueError(f"delta_w must be a scalar, got shape {delta_w.shape}")
    x = dw.reshape(-1)
    sym = 0.5 * (s_w + s_w.T)
    quad = 0.5 * jnp.vdot(x, matmul(sym, x), precision=jax.lax.Precision.HIGHEST)
    lam = jnp.linalg.eigvalsh(sym)
    mu, lam_max = lam[0], jnp.max(jnp.abs(lam))
    mu_ok = premise_lt(jnp.zeros_like(mu), mu, dw.dtype, size, lam_max)
    leash = jnp.sqrt(_safe_div(2 * jnp.maximum(delta_w, 0), mu, mu_ok))
    quad_scale = 0.5 * lam_max * jnp.vdot(x, x, precision=jax.lax.Precision.HIGHEST)
    premise = premise_le(quad, delta_w, dw.dtype, size, quad_scale) & mu_ok
    lhs = jnp.stack([jnp.linalg.norm(x), norm2(dw)])
    return BoundCheck(lhs, jnp.stack([leash, leash]), jnp.stack([premise, premise]))


def _schur_parts(f: jax.Array, n_w: int) -> tuple[jax.Array, jax.Array]:
    """Generalized Schur complement of the trailing block, and whether that block is numerically invertible."""
    f = 0.5 * (f + f.T)
    f_ww, f_wr, f_rr = f[:n_w, :n_w], f[:n_w, n_w:], f[n_w:, n_w:]
    if f_rr.shape[0] == 0:
        return f_ww, _true()
    lam, q = jnp.linalg.eigh(f_rr)
    thr = tol(f.dtype, f.shape[0]) * jnp.max(jnp.abs(jnp.linalg.eigvalsh(f)))
    keep = jnp.abs(lam) > thr
    inv = jnp.where(keep, 1 / jnp.where(keep, lam, 1), 0)  # pseudo-inverse on the numerical range
    g = matmul(q.T, f_wr.T)  # [r, n_w]
    s = f_ww - matmul(g.T, inv[:, None] * g)
    return 0.5 * (s + s.T), jnp.all(keep)


def _check_square(f: jax.Array) -> None:
    if f.shape[0] != f.shape[1]:
        raise ValueError(f"f must be square, got shape {f.shape}")


@functools.partial(jax.jit, static_argnames="n_w")
def schur_complement(f: ArrayLike, n_w: int) -> Float[Array, "w w"]:
    """Schur complement $S_W = F_{W,W} - F_{W,\\neg W}F_{\\neg W,\\neg W}^{-1}F_{\\neg W,W}$ of the leading `n_w` block (App. F.3).

    $F_{\\neg W,\\neg W}^{-1}$ is applied through its eigendecomposition, inverting eigenvalues above
    `tol(dtype, p)`$\\cdot\\|F\\|_2$ only (the generalized Schur complement, still the minimum of the quadratic form
    over $\\Delta\\theta_{\\neg W}$ for PSD $F$). `n_w == p` returns $F$ (symmetrized).
    """
    f = as_float(f, "f")
    _check_square(f)
    if not isinstance(n_w, int) or not 1 <= n_w <= f.shape[0]:
        raise ValueError(f"n_w must be an int in [1, {f.shape[0]}], got {n_w!r}")
    return _schur_parts(f, n_w)[0]


def _canonical_block(block: int | tuple[int, ...] | list[int], p: int) -> tuple[int, ...]:
    if isinstance(block, int) and not isinstance(block, bool):
        if not 1 <= block <= p:
            raise ValueError(f"block size must be in [1, {p}], got {block}")
        return tuple(range(block))
    idx = tuple(operator.index(i) for i in block)
    if not idx or len(set(idx)) != len(idx) or min(idx) < 0 or max(idx) >= p:
        raise ValueError(f"block must be distinct indices in [0, {p}), got {block!r}")
    return idx


def schur_check(
    f: ArrayLike, dtheta: ArrayLike, block: int | tuple[int, ...] | list[int]
) -> BoundCheck:
    """Schur step of App. F.3: $\\tfrac12\\mathrm{vec}(\\Delta W)^\\top S_W\\mathrm{vec}(\\Delta W) \\le \\tfrac12\\Delta\\theta^\\top F\\Delta\\theta$.

    Theorem: for $F \\succeq 0$ partitioned as $(W, \\neg W)$, $S_W$ the Schur complement of $F_{\\neg W,\\neg W}$,
    $\\tfrac12\\Delta W^\\top S_W\\Delta W = \\min_{x}\\tfrac12(\\Delta W, x)^\\top F(\\Delta W, x)$, hence the inequality, with
    equality at $x = -F_{\\neg W,\\neg W}^{-1}F_{\\neg W,W}\\Delta W$.

    Args:
      f: `[p, p]` symmetric Fisher matrix.
      dtheta: `[p]` parameter step.
      block: the W coordinates: an int `n_w` (the leading `n_w` entries) or a sequence of distinct indices
        (static; a list is converted to a tuple, so this function itself is not a jit target for lists).

    Returns:
      Scalar `BoundCheck`; premise $= F \\succeq 0$ and $F_{\\neg W,\\neg W}$ invertible, both up to
      `tol(dtype, p)`$\\cdot\\|F\\|_2$.
    """
    f = as_float(f, "f")
    _check_square(f)
    return _schur_check(f, dtheta, _canonical_block(block, f.shape[0]))


@functools.partial(jax.jit, static_argnames="block")
def _schur_check(f: jax.Array, dtheta: ArrayLike, block: tuple[int, ...]) -> BoundCheck:
    dtheta = as_float(dtheta, "dtheta", ndim=1)
    p = f.shape[0]
    if dtheta.shape != (p,):
        raise ValueError(f"dtheta must have shape ({p},) to match f {f.shape}, got {dtheta.shape}")
    if dtheta.dtype != f.dtype:
        raise TypeError(f"f and dtheta must have the same dtype, got {f.dtype} and {dtheta.dtype}")
    rest = tuple(i for i in range(p) if i not in set(block))
    perm = jnp.asarray(block + rest)
    fp = f[perm][:, perm]
    x = dtheta[perm]
    n_w = len(block)
    s, invertible = _schur_parts(fp, n_w)
    hp = jax.lax.Precision.HIGHEST
    lhs = 0.5 * jnp.vdot(x[:n_w], matmul(s, x[:n_w]), precision=hp)
    sym = 0.5 * (fp + fp.T)
    rhs = 0.5 * jnp.vdot(x, matmul(sym, x), precision=hp)
    lam = jnp.linalg.eigvalsh(sym)
    psd = lam[0] >= -tol(f.dtype, p) * jnp.max(jnp.abs(lam))
    return BoundCheck(lhs, rhs, psd & invertible)

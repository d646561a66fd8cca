"""A KL-budgeted natural-gradient step under a curvature that is stiff on the principal subspace (Gate II, S3).

Gate II's picture (Sec. 3.2, App. F.3): a step is leashed by its curvature cost
$\\tfrac12\\langle\\Delta W,S_W\\Delta W\\rangle\\le\\delta_W$, and if the curvature is large on the top-$k$ singular
subspaces of $W$ the natural-gradient step $\\Delta W\\propto -S_W^{-1}g$ avoids them. This module builds such an
$S_W$ without forming the $mn\\times mn$ matrix. With $P=U_kU_k^\\top$, $Q=V_kV_k^\\top$ (top-$k$ singular vectors of
$W$) every $X\\in\\mathbb R^{m\\times n}$ splits Frobenius-orthogonally into its *off-principal* part
$X_\\perp=(I-P)X(I-Q)$ and its principal part $X-X_\\perp$ (everything that touches $U_k$ or $V_k$), and

$$S_W X=\\lambda\\,(X-X_\\perp)+X_\\perp,\\qquad \\lambda\\ge1,$$

so $\\mu_W=\\lambda_{\\min}(S_W)=1$ (for $k<\\min(m,n)$), $S_W^{-1}X=(X-X_\\perp)/\\lambda+X_\\perp$, and the step

$$\\Delta W=-t\\,S_W^{-1}g,\\qquad t=\\sqrt{2\\delta_W/\\langle g,S_W^{-1}g\\rangle}$$

meets the budget exactly: $\\tfrac12\\langle\\Delta W,S_W\\Delta W\\rangle=\\delta_W$, hence (Eq. 7)
$\\|\\Delta W\\|_F\\le\\sqrt{2\\delta_W/\\mu_W}=\\sqrt{2\\delta_W}$. All matmuls at `MATMUL_PRECISION`.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from threegate._numerics import MATMUL_PRECISION, matmul

__all__ = ["off_principal_part", "principal_curvature_quad", "principal_natural_step"]


def _check(x: jax.Array, u: jax.Array, v: jax.Array) -> None:
    if x.ndim != 2 or u.ndim != 2 or v.ndim != 2:
        raise ValueError(f"expected 2-D arrays, got shapes {x.shape}, {u.shape}, {v.shape}")
    if u.shape[0] != x.shape[0] or v.shape[0] != x.shape[1] or u.shape[1] != v.shape[1]:
        raise ValueError(
            f"bases must be u [m, k], v [n, k] for x {x.shape}, got {u.shape} and {v.shape}"
        )


def off_principal_part(
    x: Float[ArrayLike, "m n"], u: Float[ArrayLike, "m k"], v: Float[ArrayLike, "n k"]
) -> Float[Array, "m n"]:
    """$X_\\perp=(I-UU^\\top)X(I-VV^\\top)$ for orthonormal `u` `[m, k]`, `v` `[n, k]`.

    Example:
      >>> import jax.numpy as jnp
      >>> u = v = jnp.array([[1.0], [0.0]])  # top-1 singular vectors e1, e1
      >>> off_principal_part(jnp.ones((2, 2)), u, v).tolist()  # only the entry touching neither survives
      [[0.0, 0.0], [0.0, 1.0]]
    """
    x, u, v = jnp.asarray(x), jnp.asarray(u), jnp.asarray(v)
    _check(x, u, v)
    left = x - matmul(u, matmul(u.T, x))
    return left - matmul(matmul(left, v), v.T)


def principal_curvature_quad(
    dw: Float[ArrayLike, "m n"],
    u: Float[ArrayLike, "m k"],
    v: Float[ArrayLike, "n k"],
    lam: ArrayLike,
) -> Float[Array, ""]:
    """The curvature cost $\\tfrac12\\langle\\Delta W,S_W\\Delta W\\rangle=\\tfrac12(\\lambda\\|\\Delta W-\\Delta W_\\perp\\|_F^2+\\|\\Delta W_\\perp\\|_F^2)$.

    The left side of the budget $\\delta_W$ of Lemma F.10 / Eq. (7).

    Example:
      >>> import jax.numpy as jnp
      >>> u = v = jnp.array([[1.0], [0.0]])
      >>> float(principal_curvature_quad(jnp.ones((2, 2)), u, v, 100.0))  # (100 * 3 + 1) / 2
      150.5
    """
    dw = jnp.asarray(dw)
    perp = off_principal_part(dw, u, v)
    par = dw - perp
    lam = jnp.asarray(lam, dw.dtype)
    return 0.5 * (lam * jnp.vdot(par, par) + jnp.vdot(perp, perp))


def principal_natural_step(
    grad: Float[ArrayLike, "m n"],
    u: Float[ArrayLike, "m k"],
    v: Float[ArrayLike, "n k"],
    lam: ArrayLike,
    delta: ArrayLike,
) -> Float[Array, "m n"]:
    """$\\Delta W=-t\\,S_W^{-1}g$ with $t$ chosen so that $\\tfrac12\\langle\\Delta W,S_W\\Delta W\\rangle=\\delta_W$ (module docstring).

    Args:
      grad: gradient $g$ of the loss, `[m, n]`.
      u, v: orthonormal top-$k$ singular bases of the current $W$, `[m, k]`, `[n, k]`.
      lam: curvature $\\lambda\\ge1$ on the principal part (1 elsewhere).
      delta: the budget $\\delta_W>0$.

    Returns:
      The step, `[m, n]` (zero where $g=0$).

    Example:
      >>> import jax.numpy as jnp
      >>> u = v = jnp.array([[1.0], [0.0]])
      >>> dw = principal_natural_step(jnp.ones((2, 2)), u, v, 100.0, 0.5)
      >>> round(float(principal_curvature_quad(dw, u, v, 100.0)), 6)  # the budget, met exactly
      0.5
      >>> round(float(dw[1, 1] / dw[0, 0]), 3)  # the off-principal entry moves lambda times more
      100.0
    """
    g = jnp.asarray(grad)
    perp = off_principal_part(g, u, v)
    lam = jnp.asarray(lam, g.dtype)
    nat = (g - perp) / lam + perp  # S^{-1} g
    cost = jnp.vdot(g, nat, precision=MATMUL_PRECISION)  # <g, S^{-1} g> >= 0
    ok = cost > 0
    t = jnp.where(ok, jnp.sqrt(2 * jnp.asarray(delta, g.dtype) / jnp.where(ok, cost, 1)), 0)
    return -t * nat

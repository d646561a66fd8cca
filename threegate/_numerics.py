"""The tolerance and precision policy of threegate, in one place.

Every comparison that decides whether a bound "holds numerically" goes through `bound_holds`, with a slack

$$\\tau = c \\cdot \\mathrm{size} \\cdot \\varepsilon(\\mathrm{dtype}),$$

where `size` is the problem dimension (for an $m\\times n$ matrix, $\\max(m, n)$) and $c$ a named constant. The
choice $c = 50$ follows the backward-error analysis of the SVD (LAPACK's `gesdd` has backward error of order
$p(m,n)\\,\\varepsilon\\,\\|A\\|_2$ with a modest polynomial $p$) and was validated on the property tests; jax's own
SVD tests use 100·eps with ×2–3 factors for derived quantities.

Measured matmuls use `MATMUL_PRECISION` ("highest"): on GPUs the default float32 matmul is TF32 and floors
$\\|\\sin\\Theta\\|$ at about 2e-4 (see shared/style.md §2).

Premises are decided with the same slack $\\tau$ (`premise_le`, `premise_lt`), in the direction that keeps a
rounding error from deciding them: an inclusive premise ($a\\le b$: a ratio band, a KL budget) built exactly on its
edge still holds after rounding moves it by a few ulps; a strict premise that guards a division ($0<\\mu$,
$\\varepsilon<\\gamma$) needs a margin above rounding, since a gap within $\\tau$ of zero is numerically zero (and the
bound it would divide by is vacuous anyway).
"""

from typing import Final

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike, DTypeLike

__all__ = [
    "BOUND_SLACK_C",
    "MATMUL_PRECISION",
    "TEST_RTOL",
    "bound_holds",
    "eps",
    "matmul",
    "measure_dtype",
    "premise_le",
    "premise_lt",
    "tol",
    "upcast",
]

MATMUL_PRECISION: Final = jax.lax.Precision.HIGHEST

#: Multiplier of size·eps in `tol`; see the module docstring.
BOUND_SLACK_C: Final[float] = 50.0

#: Relative tolerances for comparing a result with its float64 reference, keyed by the dtype the result was
#: computed in (the same table jax's public_test_util keeps).
TEST_RTOL: Final[dict[str, float]] = {
    "bfloat16": 1e-2,
    "float16": 1e-3,
    "float32": 1e-6,
    "float64": 1e-15,
}


def eps(dtype: DTypeLike) -> float:
    """Machine epsilon of `dtype` (bf16: 2^-7, f32: 2^-23, f64: 2^-52)."""
    return float(jnp.finfo(dtype).eps)


def tol(dtype: DTypeLike, size: int, c: float = BOUND_SLACK_C) -> float:
    """Numerical slack $c\\cdot\\mathrm{size}\\cdot\\varepsilon(\\mathrm{dtype})$."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return c * size * eps(dtype)


def bound_holds(
    lhs: ArrayLike,
    rhs: ArrayLike,
    dtype: DTypeLike,
    size: int,
    scale: ArrayLike = 1.0,
    c: float = BOUND_SLACK_C,
) -> jax.Array:
    """Whether `lhs <= rhs` up to rounding: $\\mathrm{lhs} \\le \\mathrm{rhs}(1+\\tau) + \\tau\\cdot\\mathrm{scale}$.

    `scale` is the magnitude the rounding error is relative to (e.g. $\\|W\\|_2$ for a singular-value bound).
    """
    t = tol(dtype, size, c)
    lhs = jnp.asarray(lhs)
    rhs = jnp.asarray(rhs, dtype=lhs.dtype)
    scale = jnp.asarray(scale, dtype=lhs.dtype)
    return lhs <= rhs * (1 + t) + t * scale


def premise_le(
    lhs: ArrayLike,
    rhs: ArrayLike,
    dtype: DTypeLike,
    size: int,
    scale: ArrayLike = 1.0,
    c: float = BOUND_SLACK_C,
) -> jax.Array:
    """Inclusive premise `lhs <= rhs` up to rounding: $\\mathrm{lhs}\\le\\mathrm{rhs}+\\tau(|\\mathrm{rhs}|+\\mathrm{scale})$.

    The slack of `bound_holds`, valid for either sign of `rhs` (a log-ratio band edge is negative). `scale` is the
    magnitude the rounding error of `lhs` is relative to.
    """
    t = tol(dtype, size, c)
    lhs = jnp.asarray(lhs)
    rhs = jnp.asarray(rhs, dtype=lhs.dtype)
    scale = jnp.asarray(scale, dtype=lhs.dtype)
    return lhs <= rhs + t * (jnp.abs(rhs) + scale)


def premise_lt(
    lhs: ArrayLike,
    rhs: ArrayLike,
    dtype: DTypeLike,
    size: int,
    scale: ArrayLike = 1.0,
    c: float = BOUND_SLACK_C,
) -> jax.Array:
    """Strict premise `lhs < rhs` with a margin above rounding: $\\mathrm{rhs}-\\mathrm{lhs}>\\tau(|\\mathrm{rhs}|+\\mathrm{scale})$.

    For premises that guard a division by `rhs - lhs` (a positive curvature, a spectral gap): a difference within
    rounding of zero is not counted as positive.
    """
    t = tol(dtype, size, c)
    lhs = jnp.asarray(lhs)
    rhs = jnp.asarray(rhs, dtype=lhs.dtype)
    scale = jnp.asarray(scale, dtype=lhs.dtype)
    return rhs - lhs > t * (jnp.abs(rhs) + scale)


def measure_dtype(dtype: DTypeLike) -> np.dtype:
    """The dtype a stored array is measured in: half precisions go to float32, others stay."""
    dtype = np.dtype(dtype)
    if dtype.itemsize < 4 and jnp.issubdtype(dtype, jnp.floating):
        return np.dtype(np.float32)
    return dtype


def upcast(x: ArrayLike) -> jax.Array:
    """`x` as a JAX array in its measurement dtype (bf16/f16 → f32, exact)."""
    x = jnp.asarray(x)
    return x.astype(measure_dtype(x.dtype))


def matmul(a: ArrayLike, b: ArrayLike) -> jax.Array:
    """`a @ b` at `MATMUL_PRECISION`: the only matmul for measured quantities."""
    return jnp.matmul(a, b, precision=MATMUL_PRECISION)

"""Coordinate masks over a weight matrix and their overlap statistics (metrics M2–M10 of the paper).

A *mask* here is a boolean `[m, n]` array over the entries of a weight matrix (HF `[out, in]` layout): which
coordinates were updated (M2), or which belong to a selection such as the paper's "principal weights" (M8, the
top-α entries of a rank-k reconstruction) or the low-magnitude weights (M9). These are coordinate sets, not
singular subspaces; subspaces live in `threegate.spectral`. Stacks of masks from R runs are `[R, m, n]`.

Conventions: selection counts are exact, $\\lfloor\\alpha mn\\rfloor$, with stable ties (among equal scores the
lower row-major flat index is chosen). Ratios whose denominator is zero (an empty mask, empty union, zero
density) return NaN — never a silent 0/0 — and the docstring of each function says when. Ratios have the default
float dtype (float32, or float64 under `jax.enable_x64`).
"""

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float

from threegate._numerics import eps, matmul, upcast
from threegate._subspace import top_k

__all__ = [
    "Overlap",
    "column_update_ratio",
    "consensus",
    "density",
    "density_from_jaccard_baseline",
    "jaccard",
    "jaccard_baseline",
    "low_magnitude_mask",
    "moving_average",
    "overlap",
    "principal_mask",
    "row_update_ratio",
    "selection_count",
]


class Overlap(NamedTuple):
    """Overlap of a mask $M$ with a reference mask $M_\\bullet$ (M10), with its random-mask null.

    Attributes:
      value: $|M_\\bullet \\cap M| / |M|$ (NaN when $M$ is empty).
      baseline: density of $M_\\bullet$, the expected `value` for a mask $M$ drawn independently of $M_\\bullet$.
      lift: `value / baseline` (NaN when either is undefined or the baseline is 0).
    """

    value: Float[Array, ""]
    baseline: Float[Array, ""]
    lift: Float[Array, ""]


def _float_dtype() -> np.dtype:
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
    """`num / den` in the default float dtype, NaN where `den == 0` (no division by zero is evaluated)."""
    dt = _float_dtype()
    num, den = num.astype(dt), den.astype(dt)
    ok = den != 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), jnp.nan)


def _as_mask(x: ArrayLike, name: str, ndim: int | None = 2) -> jax.Array:
    x = jnp.asarray(x)
    if x.dtype != jnp.bool_:
        raise TypeError(f"{name} must be a boolean mask, got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return x


def _as_matrix(w: ArrayLike) -> jax.Array:
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise TypeError(f"w must be a real floating array, got dtype {w.dtype}")
    if w.ndim != 2:
        raise ValueError(f"w must be 2-D, got shape {w.shape}")
    return upcast(w)


def selection_count(alpha: float, size: int) -> int:
    """Exact selection size $\\lfloor\\alpha\\cdot\\mathrm{size}\\rfloor$, robust to binary rounding of `alpha`.

    `alpha * size` is computed in float64; a product within a few ulps below an integer (0.29·100 =
    28.999999999999996) counts as that integer.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    prod = float(alpha) * size
    count = math.floor(prod)
    if count + 1 - prod <= 4 * eps(np.float64) * max(prod, 1.0):
        count += 1
    return min(count, size)


def _select(scores: jax.Array, count: int, largest: bool) -> jax.Array:
    """Boolean mask of the `count` largest (or smallest) `scores`, ties to the lower flat index."""
    flat = scores.reshape(-1)
    order = jnp.argsort(-flat if largest else flat, stable=True)
    mask = jnp.zeros(flat.shape, dtype=bool).at[order[:count]].set(True)
    return mask.reshape(scores.shape)


@functools.partial(jax.jit, static_argnames=("k", "alpha"))
def principal_mask(w: ArrayLike, k: int, alpha: float) -> Bool[Array, "m n"]:
    """The paper's "principal weights" mask (M8): top-α entries of $|W^{(k)}|$, $W^{(k)}$ the rank-k SVD reconstruction.

    $M^{(k)}_{princ} = \\mathrm{Top}_\\alpha(|W^{(k)}_{ij}|)$ with exactly $\\lfloor\\alpha mn\\rfloor$ entries, stable
    ties (lower row-major index first). Following Liu et al. (2025c, "LIFT"); the paper uses α = 0.5 in Sec. 5.1.

    Args:
      w: `[m, n]` base weight $W_0$ (bf16/f16 upcast to float32).
      k: static rank, $1 \\le k \\le \\min(m, n)$.
      alpha: static fraction in $[0, 1]$.

    Example:
      >>> import jax.numpy as jnp
      >>> principal_mask(jnp.array([[4.0, 2.0], [3.0, 1.5]]), 1, 0.5)
      Array([[ True, False],
             [ True, False]], dtype=bool)
    """
    w = _as_matrix(w)
    u, s, v = top_k(w, k)
    recon = matmul(u * s[None, :], v.T)
    return _select(jnp.abs(recon), selection_count(alpha, w.size), largest=True)


@functools.partial(jax.jit, static_argnames="alpha")
def low_magnitude_mask(w: ArrayLike, alpha: float) -> Bool[Array, "m n"]:
    """Low-magnitude mask (M9): the bottom-α entries of $|W|$, exactly $\\lfloor\\alpha mn\\rfloor$, stable ties.

    Example:
      >>> import jax.numpy as jnp
      >>> low_magnitude_mask(jnp.array([[4.0, -1.0], [1.0, 3.0]]), 0.5)
      Array([[False,  True],
             [ True, False]], dtype=bool)
    """
    w = _as_matrix(w)
    return _select(jnp.abs(w), selection_count(alpha, w.size), largest=False)


@jax.jit
def density(mask: ArrayLike) -> Float[Array, ""]:
    """Fraction of True entries (NaN for an empty array)."""
    mask = _as_mask(mask, "mask", ndim=None)
    return _ratio(jnp.sum(mask), jnp.asarray(mask.size))


def _same_shape(a: jax.Array, b: jax.Array, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )


@jax.jit
def overlap(reference: ArrayLike, mask: ArrayLike) -> Overlap:
    """Overlap ratio (M10): $|M_\\bullet \\cap M|/|M|$, with the random-mask null = density of $M_\\bullet$.

    Args:
      reference: `[m, n]` boolean $M_\\bullet$ (e.g. `principal_mask`).
      mask: `[m, n]` boolean $M$ (e.g. the update mask).

    Returns:
      `Overlap(value, baseline, lift)`; `value` is NaN for an empty `mask`, `lift` NaN when undefined.
    """
    ref = _as_mask(reference, "reference")
    m = _as_mask(mask, "mask")
    _same_shape(ref, m, "reference", "mask")
    value = _ratio(jnp.sum(ref & m), jnp.sum(m))
    baseline = _ratio(jnp.sum(ref), jnp.asarray(ref.size))
    lift = jnp.where(baseline > 0, value / jnp.where(baseline > 0, baseline, 1), jnp.nan)
    return Overlap(value, baseline, lift)


@jax.jit
def jaccard(a: ArrayLike, b: ArrayLike) -> Float[Array, ""]:
    """Jaccard index (M3): $J(A, B) = |A\\cap B|/|A\\cup B|$ for boolean masks of equal shape (NaN if both empty)."""
    a = _as_mask(a, "a", ndim=None)
    b = _as_mask(b, "b", ndim=None)
    _same_shape(a, b, "a", "b")
    return _ratio(jnp.sum(a & b), jnp.sum(a | b))


@jax.jit
def jaccard_baseline(p: ArrayLike, q: ArrayLike) -> Float[Array, "*b"]:
    """Expected Jaccard index of independent Bernoulli masks with densities p, q (M4): $pq/(p+q-pq)$.

    (Ratio of expected intersection to expected union; the large-mask limit of $\\mathbb E[J]$.) NaN at
    $p = q = 0$.
    """
    dt = _float_dtype()
    p, q = jnp.asarray(p, dt), jnp.asarray(q, dt)
    return _ratio(p * q, p + q - p * q)


def density_from_jaccard_baseline(b: ArrayLike) -> jax.Array:
    """Inverse of `jaccard_baseline` on the diagonal $p = q$: $B = p/(2-p) \\iff p = 2B/(1+B)$ (Table 2)."""
    b = jnp.asarray(b, _float_dtype())
    return 2 * b / (1 + b)


@jax.jit
def consensus(masks: ArrayLike) -> Float[Array, "m n"]:
    """Consensus ratio (M5): $C_{ij} = \\frac1R\\sum_r M^{(r)}_{ij}$ over the leading axis of `[R, m, n]` masks."""
    masks = _as_mask(masks, "masks", ndim=3)
    if masks.shape[0] == 0:
        raise ValueError(
            f"masks needs at least one run on the leading axis, got shape {masks.shape}"
        )
    return jnp.mean(masks.astype(_float_dtype()), axis=0)


@jax.jit
def row_update_ratio(mask: ArrayLike) -> Float[Array, " m"]:
    """Row-wise update ratio (M6): $\\rho_i = \\frac1n\\sum_j M_{ij}$ for a `[m, n]` mask."""
    mask = _as_mask(mask, "mask")
    return jnp.mean(mask.astype(_float_dtype()), axis=1)


@jax.jit
def column_update_ratio(mask: ArrayLike) -> Float[Array, " n"]:
    """Column-wise update ratio (M7): $\\kappa_j = \\frac1m\\sum_i M_{ij}$ for a `[m, n]` mask."""
    mask = _as_mask(mask, "mask")
    return jnp.mean(mask.astype(_float_dtype()), axis=0)


@functools.partial(jax.jit, static_argnames="width")
def moving_average(x: ArrayLike, width: int = 3) -> Float[Array, "*b n"]:
    """Centered moving average along the last axis (the paper's 3-step smoothing of M6/M7 profiles).

    $y_i = \\frac{1}{|N_i|}\\sum_{j\\in N_i}x_j$, $N_i = \\{j : |i-j| \\le \\lfloor w/2\\rfloor, 0 \\le j < n\\}$: same length as
    `x`, with windows truncated (not zero-padded) at the ends, so constants are preserved exactly.

    Args:
      x: `[..., n]` floating array (bf16/f16 upcast to float32).
      width: static odd window $w \\ge 1$.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1 or width % 2 == 0:
        raise ValueError(f"width must be an odd int >= 1, got {width!r}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim < 1:
        raise TypeError(f"x must be a floating array with at least 1 dim, got {x.dtype} {x.shape}")
    x = upcast(x)
    n, h = x.shape[-1], width // 2
    pad = [(0, 0)] * (x.ndim - 1) + [(h, h)]
    xp = jnp.pad(x, pad)
    ones = jnp.pad(jnp.ones((n,), x.dtype), (h, h))
    total = sum(xp[..., j : j + n] for j in range(width))
    count = sum(ones[j : j + n] for j in range(width))
    return total / jnp.broadcast_to(count, total.shape)

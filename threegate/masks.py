"""Coordinate masks over a weight matrix and their overlap statistics (metrics M2–M10 of the paper).

A *mask* here is a boolean `[m, n]` array over the entries of a weight matrix (HF `[out, in]` layout): which
coordinates were updated (M2), or which belong to a selection such as the paper's "principal weights" (M8, the
top-α entries of a rank-k reconstruction) or the low-magnitude weights (M9). These are coordinate sets, not
singular subspaces; subspaces live in `threegate.spectral`. Stacks of masks from R runs are `[R, m, n]`.

Conventions: selection counts are exact, $\\lfloor\\alpha mn\\rfloor$, with stable ties (among equal scores the
lower row-major flat index is chosen). Ratios whose denominator is zero (an empty mask, empty union, zero
density) return NaN — never a silent 0/0 — and the docstring of each function says when. Ratios have the default
float dtype (float32, or float64 under `jax.enable_x64`).

One implementation per metric, two backends: `top_fraction_mask`, `bottom_fraction_mask`, `overlap`, `jaccard`
and `jaccard_baseline` run the same code on NumPy arrays on the host (float64 ratios, no device transfer: what
`threegate compare` streams through) and on jax arrays (jitted, jit-safe inside other jitted code): when any
argument is a jax array (or a tracer) the jnp path is taken, else the NumPy one. Only one primitive differs:
picking the first $r$ tied entries in flat order (`np.flatnonzero` on the host, a cumulative count under jit).
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
from threegate.spectral import top_k

__all__ = [
    "Overlap",
    "bottom_fraction_mask",
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
    "top_fraction_mask",
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


def _xp(*arrays):
    """The array namespace of a call: jnp when any argument is a jax array (or tracer), else NumPy."""
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _ratio(num, den, xp=jnp):
    """`num / den` (default float dtype under jnp, float64 under NumPy), NaN where `den == 0` (no division by
    zero is evaluated)."""
    dt = _float_dtype() if xp is jnp else np.dtype(np.float64)
    num, den = xp.asarray(num).astype(dt), xp.asarray(den).astype(dt)
    ok = den != 0
    return xp.where(ok, num / xp.where(ok, den, 1), xp.nan)


def _as_mask(x: ArrayLike, name: str, ndim: int | None = 2, xp=jnp):
    x = xp.asarray(x)
    if x.dtype != np.bool_:
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

    Example:
      >>> selection_count(0.29, 100), selection_count(0.5, 7)
      (29, 3)
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    prod = float(alpha) * size
    count = math.floor(prod)
    if count + 1 - prod <= 4 * eps(np.float64) * max(prod, 1.0):
        count += 1
    return min(count, size)


def _first_true(flags, need, xp):
    """The first `need` True entries of the flat bool array `flags`, in flat order (the tie rule)."""
    if xp is np:
        out = np.zeros(flags.shape, dtype=bool)
        out[np.flatnonzero(flags)[: int(need)]] = True
        return out
    return flags & (jnp.cumsum(flags, dtype=jnp.int32) <= jnp.asarray(need).astype(jnp.int32))


def _select(scores, count: int, largest: bool, xp):
    """Mask of the `count` largest (or smallest) `scores`, ties to the lower flat index; $O(\\mathrm{size})$.

    The `count`-th value $t$ comes from a partition; every score beyond $t$ is in, and of the scores equal to
    $t$ the first ones in flat order fill the count (the order a stable sort would give).
    """
    flat = scores.reshape(-1)
    size = flat.shape[0]
    if count == 0:
        return xp.zeros(scores.shape, dtype=bool)
    kth = size - count if largest else count - 1
    t = xp.partition(flat, kth)[kth]
    strict = flat > t if largest else flat < t
    need = count - xp.sum(strict)
    return (strict | _first_true(flat == t, need, xp)).reshape(scores.shape)


_select_jit = jax.jit(functools.partial(_select, xp=jnp), static_argnames=("count", "largest"))


def _fraction_mask(scores: ArrayLike, alpha: float, largest: bool):
    xp = _xp(scores)
    scores = xp.asarray(scores)
    count = selection_count(alpha, int(np.prod(scores.shape)))
    if xp is np:
        return _select(scores, count, largest, np)
    return _select_jit(scores, count=count, largest=largest)


def top_fraction_mask(scores: ArrayLike, alpha: float) -> np.ndarray | jax.Array:
    """Mask of the $\\lfloor\\alpha\\,\\mathrm{size}\\rfloor$ largest `scores` (ties: lower flat index first).

    NumPy in, NumPy out (host); a jax array in, a jax array out (jit-safe). Any shape.

    Example:
      >>> top_fraction_mask(np.array([1.0, 3.0, 3.0, 2.0]), 0.5).tolist()
      [False, True, True, False]
    """
    return _fraction_mask(scores, alpha, largest=True)


def bottom_fraction_mask(scores: ArrayLike, alpha: float) -> np.ndarray | jax.Array:
    """Mask of the $\\lfloor\\alpha\\,\\mathrm{size}\\rfloor$ smallest `scores` (ties: lower flat index first).

    Example:
      >>> bottom_fraction_mask(np.array([1.0, 0.5, 0.5, 2.0]), 0.25).tolist()
      [False, True, False, False]
    """
    return _fraction_mask(scores, alpha, largest=False)


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
    return top_fraction_mask(jnp.abs(recon), alpha)


@functools.partial(jax.jit, static_argnames="alpha")
def low_magnitude_mask(w: ArrayLike, alpha: float) -> Bool[Array, "m n"]:
    """Low-magnitude mask (M9): the bottom-α entries of $|W|$, exactly $\\lfloor\\alpha mn\\rfloor$, stable ties.

    Example:
      >>> import jax.numpy as jnp
      >>> low_magnitude_mask(jnp.array([[4.0, -1.0], [1.0, 3.0]]), 0.5)
      Array([[False,  True],
             [ True, False]], dtype=bool)
    """
    return bottom_fraction_mask(jnp.abs(_as_matrix(w)), alpha)


@jax.jit
def density(mask: ArrayLike) -> Float[Array, ""]:
    """Fraction of True entries (NaN for an empty array).

    Example:
      >>> import jax.numpy as jnp
      >>> float(density(jnp.array([[True, False], [False, False]])))
      0.25
    """
    mask = _as_mask(mask, "mask", ndim=None)
    return _ratio(jnp.sum(mask), jnp.asarray(mask.size))


def _same_shape(
    a: np.ndarray | jax.Array, b: np.ndarray | jax.Array, name_a: str, name_b: str
) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}"
        )


def _overlap(reference, mask, xp):
    ref = _as_mask(reference, "reference", xp=xp)
    m = _as_mask(mask, "mask", xp=xp)
    _same_shape(ref, m, "reference", "mask")
    value = _ratio(xp.sum(ref & m), xp.sum(m), xp)
    baseline = _ratio(xp.sum(ref), ref.size, xp)
    lift = xp.where(baseline > 0, value / xp.where(baseline > 0, baseline, 1), xp.nan)
    return Overlap(value, baseline, lift)


def _jaccard(a, b, xp):
    a = _as_mask(a, "a", ndim=None, xp=xp)
    b = _as_mask(b, "b", ndim=None, xp=xp)
    _same_shape(a, b, "a", "b")
    return _ratio(xp.sum(a & b), xp.sum(a | b), xp)


def _jaccard_baseline(p, q, xp):
    dt = _float_dtype() if xp is jnp else np.dtype(np.float64)
    p, q = xp.asarray(p, dt), xp.asarray(q, dt)
    return _ratio(p * q, p + q - p * q, xp)


_overlap_jit = jax.jit(functools.partial(_overlap, xp=jnp))
_jaccard_jit = jax.jit(functools.partial(_jaccard, xp=jnp))
_jaccard_baseline_jit = jax.jit(functools.partial(_jaccard_baseline, xp=jnp))


def overlap(reference: ArrayLike, mask: ArrayLike) -> Overlap:
    """Overlap ratio (M10): $|M_\\bullet \\cap M|/|M|$, with the random-mask null = density of $M_\\bullet$.

    Args:
      reference: `[m, n]` boolean $M_\\bullet$ (e.g. `principal_mask`).
      mask: `[m, n]` boolean $M$ (e.g. the update mask).

    Returns:
      `Overlap(value, baseline, lift)`; `value` is NaN for an empty `mask`, `lift` NaN when undefined. NumPy
      float64 scalars for NumPy inputs, jax scalars (default float) when either input is a jax array.

    Example:
      >>> import numpy as np
      >>> reference = np.array([[True, True], [False, False]])  # density 1/2: the random-mask null
      >>> mask = np.array([[True, True], [True, False]])
      >>> [round(float(x), 3) for x in overlap(reference, mask)]  # value, baseline, lift
      [0.667, 0.5, 1.333]
    """
    if _xp(reference, mask) is np:
        return _overlap(reference, mask, np)
    return _overlap_jit(reference, mask)


def jaccard(a: ArrayLike, b: ArrayLike) -> np.ndarray | jax.Array:
    """Jaccard index (M3): $J(A, B) = |A\\cap B|/|A\\cup B|$ for boolean masks of equal shape (NaN if both empty).

    Compare it with `jaccard_baseline` of the two densities (Table 2).

    Example:
      >>> import numpy as np
      >>> round(float(jaccard(np.array([True, True, False]), np.array([True, False, True]))), 4)
      0.3333
    """
    if _xp(a, b) is np:
        return _jaccard(a, b, np)
    return _jaccard_jit(a, b)


def jaccard_baseline(p: ArrayLike, q: ArrayLike) -> np.ndarray | jax.Array:
    """Expected Jaccard index of independent Bernoulli masks with densities p, q (M4): $pq/(p+q-pq)$.

    (Ratio of expected intersection to expected union; the large-mask limit of $\\mathbb E[J]$.) NaN at
    $p = q = 0$. Python or NumPy numbers give a float64 NumPy result; jax arrays a jax one.

    Example:
      >>> round(float(jaccard_baseline(0.5, 0.5)), 4)  # two independent half-dense masks
      0.3333
    """
    if _xp(p, q) is np:
        return _jaccard_baseline(p, q, np)
    return _jaccard_baseline_jit(p, q)


def density_from_jaccard_baseline(b: ArrayLike) -> jax.Array:
    """Inverse of `jaccard_baseline` on the diagonal $p = q$: $B = p/(2-p) \\iff p = 2B/(1+B)$ (Table 2).

    Example:
      >>> round(float(density_from_jaccard_baseline(1 / 3)), 4)
      0.5
    """
    b = jnp.asarray(b, _float_dtype())
    return 2 * b / (1 + b)


@jax.jit
def consensus(masks: ArrayLike) -> Float[Array, "m n"]:
    """Consensus ratio (M5): $C_{ij} = \\frac1R\\sum_r M^{(r)}_{ij}$ over the leading axis of `[R, m, n]` masks.

    Example:
      >>> import jax.numpy as jnp
      >>> consensus(jnp.array([[[True, False]], [[True, True]]])).tolist()  # R = 2 runs of a 1x2 mask
      [[1.0, 0.5]]
    """
    masks = _as_mask(masks, "masks", ndim=3)
    if masks.shape[0] == 0:
        raise ValueError(
            f"masks needs at least one run on the leading axis, got shape {masks.shape}"
        )
    return jnp.mean(masks.astype(_float_dtype()), axis=0)


@jax.jit
def row_update_ratio(mask: ArrayLike) -> Float[Array, " m"]:
    """Row-wise update ratio (M6): $\\rho_i = \\frac1n\\sum_j M_{ij}$ for a `[m, n]` mask.

    Example:
      >>> import jax.numpy as jnp
      >>> row_update_ratio(jnp.array([[True, False], [True, True]])).tolist()
      [0.5, 1.0]
    """
    mask = _as_mask(mask, "mask")
    return jnp.mean(mask.astype(_float_dtype()), axis=1)


@jax.jit
def column_update_ratio(mask: ArrayLike) -> Float[Array, " n"]:
    """Column-wise update ratio (M7): $\\kappa_j = \\frac1m\\sum_i M_{ij}$ for a `[m, n]` mask.

    Example:
      >>> import jax.numpy as jnp
      >>> column_update_ratio(jnp.array([[True, False], [True, True]])).tolist()
      [1.0, 0.5]
    """
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

    Example:
      >>> import jax.numpy as jnp
      >>> moving_average(jnp.array([0.0, 3.0, 0.0, 3.0])).tolist()  # windows of 2, 3, 3, 2 entries
      [1.5, 1.0, 2.0, 1.5]
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

"""Host-side coordinate masks for `threegate compare`: update masks, exact top/bottom-α selection, overlaps.

Shapes: masks are boolean arrays of the weight's shape `[m, n]` (any shape for the update mask). Everything here is
NumPy on the host: these are O(mn) memory-bound passes that need no device.

Tie rule (M8/M9, paper-digest §5): exactly $\\lfloor\\alpha\\,mn\\rfloor$ entries are selected; among equal scores
the lower flat (row-major) index wins, i.e. the order of a stable sort. bf16 weights have many exact ties, so the
rule matters for `bottom_fraction_mask(|W0|)`.
"""

import math

import numpy as np

from threegate.masks import selection_count

__all__ = [
    "bottom_fraction_mask",
    "changed_mask",
    "fraction_count",
    "jaccard",
    "jaccard_baseline",
    "overlap",
    "profile_corr",
    "top_fraction_mask",
]


def fraction_count(alpha: float, size: int) -> int:
    """$\\lfloor\\alpha\\cdot\\mathrm{size}\\rfloor$, as `threegate.masks.selection_count` rounds it."""
    return selection_count(alpha, size)


def top_fraction_mask(scores: np.ndarray, alpha: float) -> np.ndarray:
    """Mask of the $\\lfloor\\alpha\\,\\mathrm{size}\\rfloor$ largest `scores` (ties: lower flat index first), $O(\\mathrm{size})$.

    Example:
      >>> top_fraction_mask(np.array([1.0, 3.0, 3.0, 2.0]), 0.5).tolist()
      [False, True, True, False]
    """
    flat = np.asarray(scores).ravel()
    count = fraction_count(alpha, flat.size)
    mask = np.zeros(flat.size, dtype=bool)
    if count > 0:
        t = np.partition(flat, flat.size - count)[flat.size - count]
        np.greater(flat, t, out=mask)
        need = count - int(np.count_nonzero(mask))
        mask[np.flatnonzero(flat == t)[:need]] = True
    return mask.reshape(np.shape(scores))


def bottom_fraction_mask(scores: np.ndarray, alpha: float) -> np.ndarray:
    """Mask of the $\\lfloor\\alpha\\,\\mathrm{size}\\rfloor$ smallest `scores` (ties: lower flat index first).

    Example:
      >>> bottom_fraction_mask(np.array([1.0, 0.5, 0.5, 2.0]), 0.25).tolist()
      [False, True, False, False]
    """
    flat = np.asarray(scores).ravel()
    count = fraction_count(alpha, flat.size)
    mask = np.zeros(flat.size, dtype=bool)
    if count > 0:
        t = np.partition(flat, count - 1)[count - 1]
        np.less(flat, t, out=mask)
        need = count - int(np.count_nonzero(mask))
        mask[np.flatnonzero(flat == t)[:need]] = True
    return mask.reshape(np.shape(scores))


def changed_mask(w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, str]:
    """Update mask $M = \\mathbb 1[W_1 \\not\\approx W_0]$ (Def 2.1, M2) and the rule used.

    Same dtype: stored codes differ, except that $(\\pm0, \\mp0)$ is unchanged as rule (1) says ("bits"). For
    bf16 this is exactly rule (1) with $\\eta = 10^{-3}$ on finite pairs (Prop E.3 / Cor E.4). Different
    dtypes: values differ after an exact float64 upcast ("value"). Non-finite entries are the caller's to
    exclude.
    """
    w0, w1 = np.asarray(w0), np.asarray(w1)
    if w0.shape != w1.shape:
        raise ValueError(f"w0 and w1 must have the same shape, got {w0.shape} and {w1.shape}")
    if w0.dtype == w1.dtype and w0.dtype.itemsize in (2, 4, 8):
        uint = np.dtype(f"u{w0.dtype.itemsize}")
        a, b = w0.view(uint), w1.view(uint)
        magnitude = np.asarray(~(np.iinfo(uint).max // 2 + 1) & np.iinfo(uint).max, dtype=uint)
        both_zero = ((a & magnitude) == 0) & ((b & magnitude) == 0)
        return (a != b) & ~both_zero, "bits"
    return w0.astype(np.float64) != w1.astype(np.float64), "value"


def overlap(reference: np.ndarray, mask: np.ndarray) -> tuple[float | None, float]:
    """M10: $|M_\\bullet \\cap M| / |M|$ and its random-mask baseline, the density of $M_\\bullet$.

    Returns `(None, baseline)` when $M$ is empty (the overlap is undefined).
    """
    baseline = float(np.count_nonzero(reference)) / reference.size
    size = int(np.count_nonzero(mask))
    if size == 0:
        return None, baseline
    return float(np.count_nonzero(reference & mask)) / size, baseline


def jaccard(a: np.ndarray, b: np.ndarray) -> float | None:
    """M3: $|A\\cap B|/|A\\cup B|$, None when both masks are empty."""
    union = int(np.count_nonzero(a | b))
    return None if union == 0 else int(np.count_nonzero(a & b)) / union


def jaccard_baseline(p: float, q: float) -> float | None:
    """M4: expected Jaccard of independent Bernoulli masks of densities p, q: $pq/(p+q-pq)$; None if $p=q=0$."""
    den = p + q - p * q
    return None if den == 0 else p * q / den


def profile_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two profiles (e.g. row update ratios), None if either is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return None if den == 0 else float(np.dot(da, db)) / den

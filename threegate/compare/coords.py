"""Host-side coordinate masks for `threegate compare`: update masks and profile correlation, plus the compare
record conventions (None, not NaN, for an undefined ratio) over the metrics of `threegate.masks`.

The selections (M8/M9), overlap (M10), Jaccard (M3) and its baseline (M4) have one implementation, in
`threegate.masks`, which runs on NumPy arrays on the host without a device transfer; the functions here only
turn its NaN ("undefined") into None for JSON records.

Tie rule (M8/M9, paper-digest §5): exactly $\\lfloor\\alpha\\,mn\\rfloor$ entries are selected; among equal scores
the lower flat (row-major) index wins, i.e. the order of a stable sort. bf16 weights have many exact ties, so the
rule matters for `bottom_fraction_mask(|W0|)`.
"""

import math

import numpy as np

from threegate import masks
from threegate.masks import bottom_fraction_mask, selection_count, top_fraction_mask
from threegate.stored import unchanged_mask_np

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


def _none(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def fraction_count(alpha: float, size: int) -> int:
    """$\\lfloor\\alpha\\cdot\\mathrm{size}\\rfloor$, as `threegate.masks.selection_count` rounds it."""
    return selection_count(alpha, size)


def changed_mask(w0: np.ndarray, w1: np.ndarray) -> tuple[np.ndarray, str]:
    """Update mask $M = \\mathbb 1[W_1 \\not\\approx W_0]$ (Def 2.1, M2) and the rule used.

    Same dtype: not unchanged under the one rule of `threegate.stored` (stored codes differ, a $(\\pm0, \\mp0)$
    flip is unchanged) ("bits"). For bf16 this is exactly rule (1) with $\\eta = 10^{-3}$ on finite pairs
    (Prop E.3 / Cor E.4). Different dtypes: values differ after an exact float64 upcast ("value"; $+0 = -0$
    there too). Non-finite entries are the caller's to exclude.
    """
    w0, w1 = np.asarray(w0), np.asarray(w1)
    if w0.shape != w1.shape:
        raise ValueError(f"w0 and w1 must have the same shape, got {w0.shape} and {w1.shape}")
    if w0.dtype == w1.dtype and w0.dtype.itemsize in (2, 4, 8):
        return ~unchanged_mask_np(w0, w1), "bits"
    return w0.astype(np.float64) != w1.astype(np.float64), "value"


def overlap(reference: np.ndarray, mask: np.ndarray) -> tuple[float | None, float]:
    """M10 (`threegate.masks.overlap`): $|M_\\bullet \\cap M| / |M|$ and its random-mask baseline, the density of
    $M_\\bullet$. Returns `(None, baseline)` when $M$ is empty (the overlap is undefined)."""
    ov = masks.overlap(np.asarray(reference), np.asarray(mask))
    return _none(ov.value), float(ov.baseline)


def jaccard(a: np.ndarray, b: np.ndarray) -> float | None:
    """M3 (`threegate.masks.jaccard`): $|A\\cap B|/|A\\cup B|$, None when both masks are empty."""
    return _none(masks.jaccard(np.asarray(a), np.asarray(b)))


def jaccard_baseline(p: float, q: float) -> float | None:
    """M4 (`threegate.masks.jaccard_baseline`): $pq/(p+q-pq)$ for independent Bernoulli masks; None if $p=q=0$."""
    return _none(masks.jaccard_baseline(float(p), float(q)))


def profile_corr(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson correlation of two profiles (e.g. row update ratios), None if either is constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da, db = a - a.mean(), b - b.mean()
    den = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return None if den == 0 else float(np.dot(da, db)) / den

"""Confidence intervals, in one place: every interval a claim, a study or a simulation reports comes from here.

Three intervals for a mean, each for its case (they are different estimators, so each keeps its rule and the
numbers it has always given):

* `mean_ci` / `paired_diff_ci`: Student-t, $\\bar x \\pm t_{(1+\\ell)/2,\\,n-1}\\,s/\\sqrt n$. The default for a
  few independent units (seeds, problems): exact coverage for normal units at any $n$. Strict: non-finite
  units raise.
* `mean_interval`: the normal approximation $\\bar x \\pm z\\,s/\\sqrt n$ with $z = 2$ over the finite values
  of a list (None and NaN skipped: records mark an undefined metric that way). Used for the many-unit
  per-tensor and per-pair effects of the studies, where $t_{n-1} \\approx 2$; $z = 2$ (not 1.96) keeps the
  published verdicts.
* `normal_interval`: $m \\pm z\\,\\mathrm{se}$ from a mean and a standard error computed elsewhere (a fitted
  slope, a mean over many simulated steps), $z = 1.96$ by default.

For a per-token average over sequences of different lengths, `ratio_ci`: the ratio estimator
$\\hat r = \\sum_i s_i / \\sum_i c_i$ (sums $s_i$ over the $c_i$ tokens of unit $i$) with its linearised
(delta-method) Student-t interval, $\\hat r \\pm t_{n-1}\\sqrt{\\sum_i (s_i - \\hat r c_i)^2 / (n(n-1))}/\bar c$.

Between groups that are not paired (runs of two methods that reach a matched KL), `welch_diff_ci`: Welch's
interval for a difference of means, $\bar a-\bar b \\pm t_\nu\\sqrt{s_a^2/n_a+s_b^2/n_b}$ with the
Welch–Satterthwaite $\nu$. For a correlation, `corr_ci`: Pearson's $r$ with the Fisher-$z$ interval
$\tanh(\\operatorname{artanh} r \\pm z_{0.975}/\\sqrt{n-3})$.

And `wilson_ci`, the Wilson score interval of a binomial proportion ($z = z_{0.975}$), which stays inside
$[0, 1]$ and is sensible at 0 and $n$ successes.
"""

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "Z95",
    "MeanCI",
    "corr_ci",
    "mean_ci",
    "mean_interval",
    "normal_interval",
    "paired_diff_ci",
    "ratio_ci",
    "welch_diff_ci",
    "wilson_ci",
]

#: $z_{0.975}$, the two-sided 95% normal quantile.
Z95 = 1.959963984540054


class MeanCI(NamedTuple):
    """A mean and its two-sided confidence interval (`lo`, `hi`), from `n` units."""

    mean: float
    lo: float
    hi: float
    n: int


def mean_ci(x: ArrayLike, level: float = 0.95) -> MeanCI:
    """Student-t interval $\\bar x \\pm t_{(1+\\ell)/2,\\,n-1}\\, s/\\sqrt n$ for the mean of the units `x`.

    One unit gives an infinite interval (no spread to estimate); identical units a zero-width one.

    Raises:
      ValueError: `x` empty or with a non-finite unit; `level` outside (0, 1).

    Example:
      >>> c = mean_ci([1.0, 2.0, 3.0])  # s = 1, n = 3, t_{0.975, 2} = 4.303
      >>> round(c.mean, 3), round(c.lo, 3), round(c.hi, 3), c.n
      (2.0, -0.484, 4.484, 3)
    """
    from scipy import stats

    x = np.asarray(x, np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"need a non-empty array of finite scores, got {x.size} values")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = float(x.mean())
    if x.size == 1:
        return MeanCI(m, -np.inf, np.inf, 1)
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return MeanCI(m, m - half, m + half, int(x.size))


def paired_diff_ci(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> MeanCI:
    """`mean_ci(a - b)` for scores of two policies on the same units (same problems, same seed index).

    Example:
      >>> paired_diff_ci([1.0, 2.0], [0.5, 1.5])  # every difference 0.5: a zero-width interval
      MeanCI(mean=0.5, lo=0.5, hi=0.5, n=2)
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores need the same shape, got {a.shape} and {b.shape}")
    return mean_ci(a - b, level)


def ratio_ci(sums: ArrayLike, counts: ArrayLike, level: float = 0.95) -> MeanCI:
    r"""Per-count average $\sum s_i / \sum c_i$ of units with sums `sums` over `counts` items (e.g. nats over
    the tokens of each sequence) and its delta-method Student-t interval (module docstring).

    Units with no items are dropped; one unit gives an infinite interval.

    Raises:
      ValueError: shapes differ, a non-finite or negative value, or no unit with items.

    Example:
      >>> c = ratio_ci([1.0, 4.0], [1, 2])  # 5 nats over 3 tokens
      >>> round(c.mean, 4), c.n
      (1.6667, 2)
    """
    from scipy import stats

    s, c = np.asarray(sums, np.float64).ravel(), np.asarray(counts, np.float64).ravel()
    if s.shape != c.shape:
        raise ValueError(f"sums and counts need one shape, got {s.shape} and {c.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(c)) and np.all(c >= 0)):
        raise ValueError("sums must be finite and counts finite and non-negative")
    keep = c > 0
    s, c = s[keep], c[keep]
    if s.size == 0:
        raise ValueError("no unit has any item")
    r = float(s.sum() / c.sum())
    if s.size == 1:
        return MeanCI(r, -np.inf, np.inf, 1)
    n = s.size
    se = math.sqrt(float(np.sum((s - r * c) ** 2)) / (n * (n - 1))) / float(c.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return MeanCI(r, r - half, r + half, n)


def welch_diff_ci(a: ArrayLike, b: ArrayLike, level: float = 0.95) -> MeanCI:
    """Welch's interval for $\bar a - \bar b$ of two independent groups (module docstring); `n` is
    $n_a + n_b$. A group of one unit, or no spread at all with one side, gives an infinite interval.

    Raises:
      ValueError: an empty group or a non-finite unit.

    Example:
      >>> c = welch_diff_ci([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
      >>> round(c.mean, 3), round(c.lo, 3), round(c.hi, 3)
      (1.0, -1.267, 3.267)
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0 or b.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("need two non-empty groups of finite units")
    d = float(a.mean() - b.mean())
    n = int(a.size + b.size)
    if a.size < 2 or b.size < 2:
        return MeanCI(d, -np.inf, np.inf, n)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se2 = va + vb
    if se2 == 0:
        return MeanCI(d, d, d, n)
    nu = se2**2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, nu)) * math.sqrt(se2)
    return MeanCI(d, d - half, d + half, n)


def corr_ci(x: ArrayLike, y: ArrayLike) -> MeanCI:
    """Pearson's $r$ of paired values and its Fisher-$z$ 95% interval (infinite-free: inside $[-1, 1]$;
    NaN bounds for fewer than 4 pairs or a constant side).

    Example:
      >>> c = corr_ci([1, 2, 3, 4, 5], [1, 2, 3, 4, 6])
      >>> round(c.mean, 3), c.n
      (0.986, 5)
    """
    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y need one shape, got {x.shape} and {y.shape}")
    n = int(x.size)
    if n < 2 or x.std() == 0 or y.std() == 0:
        return MeanCI(math.nan, math.nan, math.nan, n)
    r = float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0))
    if n < 4:
        return MeanCI(r, math.nan, math.nan, n)
    z, half = math.atanh(min(max(r, -0.999999), 0.999999)), Z95 / math.sqrt(n - 3)
    return MeanCI(r, math.tanh(z - half), math.tanh(z + half), n)


def mean_interval(xs: Iterable[float | None], z: float = 2.0) -> tuple[float, float, float, int]:
    """Mean of the finite values of `xs` and the normal-approximation interval mean ± z·s/√n.

    Returns `(mean, lo, hi, n)`; NaNs when there is no value, an infinite interval when there is one (a single
    value says nothing about its spread).

    Example:
      >>> [round(x, 3) for x in mean_interval([1.0, 2.0, 3.0, None, float("nan")])]  # s = 1, n = 3
      [2.0, 0.845, 3.155, 3]
      >>> mean_interval([0.5])
      (0.5, -inf, inf, 1)
    """
    v = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(v) / n
    if n == 1:
        return mean, -math.inf, math.inf, 1
    var = sum((x - mean) ** 2 for x in v) / (n - 1)
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half, n


def normal_interval(mean: float, se: float, z: float = 1.96) -> tuple[float, float]:
    """The normal-approximation interval mean ± z·se (NaN-safe: a non-finite input gives (nan, nan)).

    Example:
      >>> normal_interval(1.0, 0.5, z=2.0)
      (0.0, 2.0)
    """
    if not (math.isfinite(mean) and math.isfinite(se)):
        return math.nan, math.nan
    return mean - z * se, mean + z * se


def wilson_ci(successes: int, n: int) -> tuple[float, float]:
    """Wilson score 95% interval of a binomial proportion ((nan, nan) for n = 0).

    Example:
      >>> [round(x, 4) for x in wilson_ci(0, 10)]
      [0.0, 0.2775]
    """
    if n == 0:
        return math.nan, math.nan
    p, z2 = successes / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)

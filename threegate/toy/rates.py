"""Empirical convergence rates: the log-log slope of a quantity against its small parameter.

Used wherever a theorem predicts an order ($\\sin\\Theta=O(\\varepsilon)$, $\\mathrm{KL}=O(\\varepsilon^2)$, an excess
$O(\\sqrt\\kappa)$): fit $\\log y=s\\log x+b$ and compare $s$ with the predicted order, after dropping the points that
have reached the float floor (following diffrax's `test_ode_order`).
"""

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from threegate._numerics import eps

__all__ = ["SlopeFit", "fit_loglog_slope"]


class SlopeFit(NamedTuple):
    """A least-squares line through (log x, log y)."""

    slope: float
    intercept: float
    rvalue: float
    n_used: int
    stderr: float = float("nan")  # standard error of the slope


def fit_loglog_slope(x: ArrayLike, y: ArrayLike, floor: float | None = None) -> SlopeFit:
    """Slope of log y against log x (scipy.stats.linregress), dropping points at or below the float floor.

    Args:
      x, y: positive samples, same length.
      floor: values `y <= floor` are rounding noise, not signal, and are dropped (default: 100·eps(float64)).

    Returns:
      `SlopeFit(slope, intercept, rvalue, n_used, stderr)` of $\\log y = s\\log x + b$.

    Raises:
      ValueError: fewer than 3 points survive.

    Example:
      >>> import numpy as np
      >>> eps_ = np.array([1e-3, 1e-2, 1e-1])
      >>> fit = fit_loglog_slope(eps_, 0.5 * eps_**2)  # a KL that is O(eps^2)
      >>> round(fit.slope, 6), fit.n_used
      (2.0, 3)
      >>> fit_loglog_slope(eps_, np.array([1e-3, 1e-20, 1e-1])).n_used  # a point at the float floor is dropped
      Traceback (most recent call last):
      ...
      ValueError: need at least 3 points above the floor 2.22e-14 to fit a slope, got 2
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    floor = 100 * eps(np.float64) if floor is None else floor
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > floor)
    if keep.sum() < 3:
        raise ValueError(
            f"need at least 3 points above the floor {floor:.3g} to fit a slope, got {keep.sum()}"
        )
    fit = stats.linregress(np.log(x[keep]), np.log(y[keep]))
    return SlopeFit(
        float(fit.slope),
        float(fit.intercept),
        float(fit.rvalue),
        int(keep.sum()),
        float(fit.stderr),
    )

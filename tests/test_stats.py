"""`threegate.stats`: each interval against its definition (SciPy's t interval, the normal formulas)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from threegate.stats import mean_ci, mean_interval, normal_interval, paired_diff_ci, wilson_ci


@pytest.mark.parametrize("n", [2, 5, 40])
def test_mean_ci_is_scipys_student_t_interval(n):
    x = np.random.default_rng(n).normal(size=n)
    lo, hi = sps.t.interval(0.9, n - 1, loc=x.mean(), scale=sps.sem(x))
    c = mean_ci(x, level=0.9)
    assert c.n == n and c.mean == pytest.approx(x.mean(), rel=1e-15)
    assert (c.lo, c.hi) == pytest.approx((lo, hi), rel=1e-12)


def test_mean_ci_edges():
    assert mean_ci([3.0]) == (3.0, -math.inf, math.inf, 1)
    assert mean_ci([2.0, 2.0]) == (2.0, 2.0, 2.0, 2)
    for bad in ([], [1.0, math.nan]):
        with pytest.raises(ValueError, match="finite"):
            mean_ci(bad)
    with pytest.raises(ValueError, match="shape"):
        paired_diff_ci([1.0], [1.0, 2.0])


def test_mean_interval_skips_undefined_values_and_uses_z():
    m, lo, hi, n = mean_interval([1.0, None, 3.0, math.nan], z=1.5)
    assert (m, n) == (2.0, 2) and (lo, hi) == pytest.approx((2 - 1.5, 2 + 1.5))  # s/sqrt(n) = 1
    assert math.isnan(mean_interval([None])[0])


def test_normal_interval_and_wilson():
    assert normal_interval(1.0, 0.25, z=2.0) == (0.5, 1.5)
    assert all(math.isnan(v) for v in normal_interval(math.nan, 1.0))
    lo, hi = wilson_ci(7, 10)
    p, z = 0.7, sps.norm.ppf(0.975)
    c, h = (
        (p + z * z / 20) / (1 + z * z / 10),
        z * math.sqrt(p * (1 - p) / 10 + z * z / 400) / (1 + z * z / 10),
    )
    assert (lo, hi) == pytest.approx((c - h, c + h), rel=1e-12)
    assert wilson_ci(10, 10)[1] == pytest.approx(1.0, abs=1e-15) and all(
        math.isnan(v) for v in wilson_ci(0, 0)
    )

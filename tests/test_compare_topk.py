"""`threegate.compare.topk`: the randomized top-k subspaces and their a-posteriori sin-theta certificate, against
SciPy's full SVD on planted spectra: it holds, it is not vacuous, it refuses without a gap, and the error falls
at the power-iteration rate."""

import itertools

import numpy as np
import pytest
import scipy.linalg as sla

from threegate.compare.topk import topk_spectrum

M, N, K = 300, 200, 10


def _planted(rng, s):
    u, _ = np.linalg.qr(rng.standard_normal((M, N)))
    v, _ = np.linalg.qr(rng.standard_normal((N, N)))
    return (u * s) @ v.T, u[:, :K], v[:, :K]


def _sin(a, b):
    return float(np.sin(sla.subspace_angles(a, b)).max())


def _spectrum(gap):
    top = np.linspace(3.0, 2.0, K)
    return np.concatenate([top, (2.0 - gap) * np.linspace(1.0, 0.05, N - K)])


def test_certificate_holds_and_is_not_vacuous(rng):
    w, u, v = _planted(rng, _spectrum(gap=0.5))
    s = sla.svdvals(w)
    t = topk_spectrum(w, K, iters=8, sigma_next=s[K] * (1 + 1e-12))
    err = max(_sin(t.u, u), _sin(t.v, v))
    assert t.sin_bound is not None
    assert err <= t.sin_bound < 1e-2  # holds, and certifies a small angle
    assert t.sin_bound < 1e4 * max(err, 1e-16)  # within four orders of the true error (not vacuous)
    np.testing.assert_allclose(t.s[:K], _spectrum(0.5)[:K], rtol=t.sin_bound**2 + 1e-12)
    assert np.all(t.s[:K] <= _spectrum(0.5)[:K] * (1 + 1e-12))  # Ritz values are lower bounds


def test_no_gap_no_certificate(rng):
    s = _spectrum(gap=0.0)
    s[K] = s[K - 1]  # sigma_k = sigma_{k+1}: the top-k subspace is not defined
    w, _, _ = _planted(rng, s)
    assert topk_spectrum(w, K, iters=2, sigma_next=sla.svdvals(w)[K]).sin_bound is None
    assert (
        topk_spectrum(w, K, iters=2).sin_bound is None
    )  # the probabilistic bound: no certificate either


def test_probabilistic_bound_is_vacuous_on_a_flat_tail(rng):
    """Without sigma_next the certificate relies on ||E w|| ~ ||E||_F: none for a weight-like flat tail."""
    w, _, _ = _planted(rng, _spectrum(gap=0.5))
    t = topk_spectrum(w, K, iters=2)
    assert t.eps_bound > np.linalg.norm(w - (w @ t.v) @ t.v.T, 2) and t.sin_bound is None


def test_error_falls_at_the_power_iteration_rate(rng):
    """sin(theta) after q iterations ~ (sigma_{l+1}/sigma_k)^(2q+1); with l = k: (1.6/2)^(2q+1)."""
    w, u, _ = _planted(rng, _spectrum(gap=0.4))
    errs = [_sin(topk_spectrum(w, K, oversample=0, iters=q).u, u) for q in (1, 3, 5)]
    ratio = (1.6 / 2.0) ** 4  # two more iterations
    assert errs[0] > errs[1] > errs[2]
    for a, b in itertools.pairwise(errs):
        assert b / a < 1.5 * ratio


def test_bad_k_is_refused(rng):
    with pytest.raises(ValueError, match="k must be"):
        topk_spectrum(rng.standard_normal((5, 4)), 4)

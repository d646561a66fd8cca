"""One implementation per mask metric: the NumPy (host) and jax (jit) paths of `threegate.masks` agree exactly,
with a stable-sort reference, and `threegate.compare.coords` only adapts their undefined values to None."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from threegate import masks
from threegate.compare import coords


def _stable_reference(scores: np.ndarray, count: int, largest: bool) -> np.ndarray:
    flat = scores.ravel().astype(np.float64)
    order = np.argsort(-flat if largest else flat, kind="stable")
    out = np.zeros(flat.size, bool)
    out[order[:count]] = True
    return out.reshape(scores.shape)


@pytest.mark.parametrize("alpha", [0.0, 0.05, 0.3, 0.5, 1.0])
def test_selections_agree_across_backends_and_with_a_stable_sort(alpha):
    rng = np.random.default_rng(11)
    # bf16 magnitudes: many exact ties at the threshold, where the tie rule decides
    w = np.abs(rng.standard_normal((24, 40)) * 0.02).astype(ml_dtypes.bfloat16).astype(np.float32)
    count = masks.selection_count(alpha, w.size)
    for largest, fn in ((True, masks.top_fraction_mask), (False, masks.bottom_fraction_mask)):
        host = fn(w, alpha)
        dev = fn(jnp.asarray(w), alpha)
        jitted = jax.jit(lambda x, fn=fn: fn(x, alpha))(jnp.asarray(w))
        ref = _stable_reference(w, count, largest)
        assert isinstance(host, np.ndarray) and isinstance(dev, jax.Array)
        np.testing.assert_array_equal(host, ref)
        np.testing.assert_array_equal(np.asarray(dev), ref)
        np.testing.assert_array_equal(np.asarray(jitted), ref)
        assert int(host.sum()) == count


def test_pair_metrics_agree_across_backends():
    rng = np.random.default_rng(12)
    a, b = rng.random((32, 16)) < 0.3, rng.random((32, 16)) < 0.6
    ov_h, ov_d = masks.overlap(a, b), masks.overlap(jnp.asarray(a), jnp.asarray(b))
    for h, d in zip(ov_h, ov_d, strict=True):
        assert float(h) == pytest.approx(float(d), rel=1e-6)
    assert float(ov_h.value) == np.count_nonzero(a & b) / np.count_nonzero(b)  # float64 on the host
    j = masks.jaccard(a, b)
    assert float(j) == np.count_nonzero(a & b) / np.count_nonzero(a | b)
    assert float(masks.jaccard(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(float(j), rel=1e-6)
    assert float(masks.jaccard_baseline(0.3, 0.6)) == 0.3 * 0.6 / (0.3 + 0.6 - 0.18)


def test_coords_adapts_undefined_to_none():
    a = np.zeros((4, 4), bool)
    assert coords.jaccard(a, a) is None and np.isnan(masks.jaccard(a, a))
    assert coords.overlap(a | True, a) == (None, 1.0)
    assert coords.jaccard_baseline(0.0, 0.0) is None
    assert coords.top_fraction_mask is masks.top_fraction_mask
    assert coords.bottom_fraction_mask is masks.bottom_fraction_mask

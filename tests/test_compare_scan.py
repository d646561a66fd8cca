"""`threegate.compare.scan`, the streaming bf16 pass, against the generic implementations and float64 sums."""

import math

import ml_dtypes
import numpy as np
import pytest

from threegate.compare.coords import bottom_fraction_mask, changed_mask
from threegate.compare.metrics import _magnitude_codes, prepare_base, tensor_metrics
from threegate.compare.scan import _CHUNK, low_selection, pair_scan
from threegate.masks import selection_count

BF16 = ml_dtypes.bfloat16


def _pair(rng, shape, frac=0.3):
    """bf16 base with many exact |w| ties (coarse values, both signs, ±0) and a tuned copy, `frac` moved."""
    w0 = (rng.integers(-40, 41, shape) / 64).astype(BF16)
    w0.ravel()[rng.choice(w0.size, w0.size // 50, replace=False)] = BF16(-0.0)
    bits = w0.view(np.uint16).copy().ravel()
    idx = rng.choice(bits.size, int(frac * bits.size), replace=False)
    bits[idx] += rng.integers(1, 4, idx.size).astype(np.uint16)
    w1 = bits.reshape(shape).view(BF16).copy()
    zeros = np.flatnonzero(w0.view(np.uint16).ravel() == 0)[:10]  # +0 -> -0: unchanged by rule (1)
    w1.ravel()[zeros] = BF16(-0.0)
    return w0, w1


# shapes that cross the chunk size, so the tie cut and the chunk tails are exercised
SHAPES = [(7, 5), (3, _CHUNK // 3 + 11), (2 * _CHUNK // 64 + 3, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [1e-9, 0.1, 0.5, 0.97, 1 - 1e-12])
def test_low_selection_is_bottom_fraction_mask(rng, shape, alpha):
    w0, _ = _pair(rng, shape)
    count = selection_count(alpha, w0.size)
    sel, nonfinite, w2 = low_selection(w0, alpha, count)
    ref = bottom_fraction_mask(_magnitude_codes(w0), alpha)
    np.testing.assert_array_equal(sel.mask(w0), ref)
    assert sel.count == count == int(ref.sum()) and nonfinite == 0
    assert w2 == pytest.approx(math.fsum(w0.astype(np.float64).ravel() ** 2), rel=1e-15, abs=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_pair_scan_matches_generic_mask_and_float64_sums(rng, shape):
    w0, w1 = _pair(rng, shape)
    sel, _, _ = low_selection(w0, 0.5, selection_count(0.5, w0.size))
    sc = pair_scan(w0, w1, sel)
    ref, rule = changed_mask(w0, w1)
    assert rule == "bits"
    np.testing.assert_array_equal(sc.mask, ref)
    assert sc.changed == int(ref.sum()) > 0
    a, b = w0.astype(np.float64).ravel(), w1.astype(np.float64).ravel()
    assert math.isnan(sc.w2)  # the base pass has it
    assert pair_scan(w0, w1).w2 == pytest.approx(math.fsum(a * a), rel=1e-14)
    assert sc.d2 == pytest.approx(math.fsum((b - a) ** 2), rel=1e-14)
    assert sc.low_hits == int((sel.mask(w0) & ref).sum())
    assert (sc.nonfinite0, sc.nonfinite1) == (0, 0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", [1e-9, 0.3, 0.5, 1 - 1e-12])
def test_joint_histogram_pass_gives_base_sums_and_low_hits(rng, shape, alpha):
    w0, w1 = _pair(rng, shape)
    count = selection_count(alpha, w0.size)
    sc = pair_scan(w0, w1, count=count)
    ref_low = bottom_fraction_mask(_magnitude_codes(w0), alpha)
    ref, _ = changed_mask(w0, w1)
    np.testing.assert_array_equal(sc.mask, ref)
    assert sc.low_hits == int((ref_low & ref).sum()) and sc.low_count == count
    a = w0.astype(np.float64).ravel()
    assert sc.w2 == pytest.approx(math.fsum(a * a), rel=1e-15)
    assert sc.d2 == pair_scan(w0, w1).d2
    w0.ravel()[5] = np.nan
    bad = pair_scan(w0, w1, count=count)
    assert bad.nonfinite0 == 1 and bad.low_hits is None


def test_pair_scan_counts_nonfinite_and_zero_update(rng):
    w0, w1 = _pair(rng, (9, 11))
    w1.ravel()[[3, 50]] = [np.nan, np.inf]
    sc = pair_scan(w0, w1)
    assert (sc.nonfinite0, sc.nonfinite1) == (0, 2)
    same = pair_scan(w0, w0.copy())
    assert same.changed == 0 and same.d2 == 0.0 and not same.mask.any()
    w0.ravel()[7] = -np.inf
    assert low_selection(w0, 0.5, 49)[:2] == (None, 1)


def test_fast_records_equal_generic_records(rng):
    """The bf16 path and the float32 path (generic: the same values upcast) give the same record."""
    w0, w1 = _pair(rng, (40, 32))
    for spectral in (False, True):
        fast_rec = tensor_metrics(
            "layers.0.mlp.up_proj.weight", w0, w1, 6, 0.5, spectral=spectral
        ).record
        base = prepare_base(w0.astype(np.float32), 6, 0.5, spectral=spectral)
        slow = tensor_metrics(
            "layers.0.mlp.up_proj.weight",
            w0.astype(np.float32),
            w1.astype(np.float32),
            6,
            0.5,
            base=base,
            spectral=spectral,
        ).record
        for key in ("changed", "sparsity", "overlap_low", "overlap_low_random", "row_update_ratio"):
            assert fast_rec[key] == slow[key], key
        for key in ("rel_update_fro", "update_fro"):
            assert fast_rec[key] == pytest.approx(slow[key], rel=1e-14)
        if spectral:
            for key in ("overlap_principal", "overlap_principal_not_low", "max_angle_u_deg"):
                assert fast_rec[key] == pytest.approx(slow[key], rel=1e-6), key

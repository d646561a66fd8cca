"""Gate III (threegate.bf16): exhaustive over the 65,536 bf16 codes, against NumPy + ml_dtypes (float64).

Bound-like results get four tests each: holds / tight / premise removed / rate (Lemma E.1, Lemma E.2,
Prop E.3 + Cor E.4, Cor 3.6). Library functions are called through jax.jit; outputs' dtypes are asserted.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _bf16_strategies import (
    BATCH,
    BF16,
    CODES,
    EXP,
    F64,
    FINITE,
    MANT,
    NEG,
    NORMAL,
    SUBNORMAL,
    VALUES,
    ZERO,
    bf16_batches,
    f32_batches,
    ref_realized,
    ref_rule,
    ref_ulp,
)
from hypothesis import example, given

from threegate import bf16
from threegate.errors import NonFiniteError

ulp = jax.jit(bf16.ulp)
half_ulp = jax.jit(bf16.half_ulp)
realized = jax.jit(bf16.realized)
round_to_bf16 = jax.jit(bf16.round_to_bf16)
unchanged = jax.jit(bf16.unchanged)  # eta traced: one compile per shape
bitwise_unchanged = jax.jit(bf16.bitwise_unchanged)
to_bits = jax.jit(bf16.to_bits)
from_bits = jax.jit(bf16.from_bits)
change_counts = jax.jit(bf16.change_counts)
min_realizing_update = jax.jit(bf16.min_realizing_update)  # one compile for both directions

F32 = np.float32
# |w| = 2^e with e > -126: the rounding cell toward zero is half as wide
EDGE = NORMAL & (EXP >= 2) & (MANT == 0)
ODD = (MANT & 1) == 1
# adjacent codes in magnitude order, both signs, all finite: (c, c+1)
_LO = np.concatenate([np.arange(0, 0x7F7F), np.arange(0x8000, 0xFF7F)]).astype(np.uint16)
ADJ = (_LO.view(BF16), (_LO + 1).astype(np.uint16).view(BF16))


def _np(x, dtype):
    x = np.asarray(x)
    assert x.dtype == dtype, x.dtype
    return x


@pytest.fixture(scope="module")
def ulp_all():
    return _np(ulp(VALUES), np.float32)


@pytest.fixture(scope="module")
def thresholds():
    return {d: _np(min_realizing_update(VALUES, d), np.float32) for d in (1, -1)}


# ---------------------------------------------------------------- bits, ulp, rounding


def test_bits_roundtrip_all_codes():
    bits = _np(to_bits(VALUES), np.uint16)
    np.testing.assert_array_equal(bits, CODES)
    back = _np(from_bits(CODES), BF16)
    np.testing.assert_array_equal(back.view(np.uint16), CODES)
    assert int(jax.jit(bf16.count_nonfinite)(VALUES)) == 2 * 128  # per sign: 1 inf + 127 NaN codes


def test_ulp_all_codes_against_float64(ulp_all):
    np.testing.assert_array_equal(ulp_all[FINITE], ref_ulp(F64[FINITE]))
    # ml_dtypes' spacing agrees except at ±max-finite, where it measures the distance to ±inf
    with np.errstate(invalid="ignore"):
        sp = np.abs(np.spacing(VALUES).astype(np.float64))
    diff = FINITE & (sp != ulp_all)
    assert set(CODES[diff]) == {0x7F7F, 0xFF7F}
    assert ulp_all[0x0000] == ulp_all[0x8000] == ulp_all[0x0001] == 2.0**-133  # zero and subnormals
    assert ulp_all[0x0080] == 2.0**-133  # min normal 2^-126: same spacing as the subnormals
    assert ulp_all[0x7F7F] == ulp_all[0xFF7F] == 2.0**120
    assert np.isnan(ulp_all[~FINITE]).all()
    h = _np(half_ulp(VALUES), np.float32)
    np.testing.assert_array_equal(h[FINITE], ulp_all[FINITE] / 2)
    assert bf16.DOMAIN.ulp_max == 2.0**120 and bf16.DOMAIN.max_finite == float(VALUES[0x7F7F])


@given(x=f32_batches())
@example(x=np.array([2.0**-134, 3 * 2.0**-134, 1 + 2.0**-8, 1 + 3 * 2.0**-8] * 16, F32))
def test_round_to_bf16_matches_ml_dtypes(x):
    got = _np(round_to_bf16(x), BF16).view(np.uint16)
    with np.errstate(invalid="ignore"):
        want = x.astype(BF16).view(np.uint16)
    np.testing.assert_array_equal(got, want)


def test_round_to_bf16_ties_to_even():
    x = np.array(
        [1 + 2.0**-8, 1 + 1.5 * 2.0**-8, bf16.DOMAIN.overflow, 2.0**-134, 3 * 2.0**-134], F32
    )
    got = _np(round_to_bf16(x), BF16).astype(np.float64)
    np.testing.assert_array_equal(got, [1.0, 1.0078125, np.inf, 0.0, 2.0**-132])


@given(w=bf16_batches())
def test_ulp_is_spacing_above_magnitude(w):
    u = _np(ulp(w), np.float32).astype(np.float64)
    a = np.abs(w.astype(np.float64))
    up = np.nextafter(np.abs(w), BF16(np.inf)).astype(np.float64)  # next code away from zero
    ok = a < bf16.DOMAIN.max_finite
    np.testing.assert_array_equal((up - a)[ok], u[ok])
    np.testing.assert_array_equal(_np(ulp(-w), np.float32), u.astype(F32))


# ---------------------------------------------------------------- Lemma E.1 (gap between representables)


def _binade_pairs(e: int):
    """All ordered distinct pairs of positive bf16 values in [2^e, 2^(e+1)) (128·127 pairs)."""
    x = 2.0**e * (1 + np.arange(128) / 128)
    i, j = np.nonzero(~np.eye(128, dtype=bool))
    return x[i], x[j]


def test_lemma_e1_holds_all_binades_exhaustive():
    for e in range(-126, 128):
        x, y = _binade_pairs(e)
        assert np.all(x.astype(BF16).astype(np.float64) == x)  # representable
        gap = np.abs(x - y)
        assert gap.min() >= 2.0 ** (e - 7)
        assert (gap / np.maximum(x, y)).min() > 2.0**-8
    # subnormals: distinct values differ by >= 2^-133, so relative gap >= 2^-7
    s = F64[SUBNORMAL & ~NEG]
    assert np.diff(np.sort(s)).min() == 2.0**-133


@given(a=bf16_batches(), b=bf16_batches())
def test_lemma_e1_holds_random_pairs(a, b):
    x, y = np.abs(a.astype(np.float64)), np.abs(b.astype(np.float64))
    u = np.maximum(_np(ulp(np.abs(a)), np.float32), _np(ulp(np.abs(b)), np.float32))
    ok = (x != y) & (np.minimum(x, y) >= 2.0**-126)  # distinct, normal (sign dropped: same sign)
    gap, m = np.abs(x - y)[ok], np.maximum(x, y)[ok]
    same = (ref_ulp(x) == ref_ulp(y))[ok]  # same binade
    assert np.all(gap[same] >= u[ok][same])  # |x - y| >= 2^(e-7)
    assert np.all(gap[same] / m[same] > 2.0**-8)  # strict within a binade
    assert np.all(gap / m >= 2.0**-8)  # across binades only ">=" (equality at the edge)


def test_lemma_e1_tight_and_boundary_equality():
    # within a binade the smallest relative gap is 1/(2^8-1): ratio 2^-8/min = 255/256 >= 0.9
    x, y = _binade_pairs(0)
    rel = np.abs(x - y) / np.maximum(x, y)
    assert rel.min() == 1 / 255 and 2.0**-8 / rel.min() >= 0.9
    # across every binade edge the paper's strict ">" is an EQUALITY
    e = np.arange(-126, 127)
    lo, hi = 2.0 ** (e + 1) - 2.0 ** (e - 7), 2.0 ** (e + 1)
    lo_c, hi_c = lo.astype(BF16), hi.astype(BF16)
    assert np.all(lo_c.view(np.uint16) + 1 == hi_c.view(np.uint16))  # adjacent codes
    np.testing.assert_array_equal((hi - lo) / hi, 2.0**-8)


def test_lemma_e1_premise_removed():
    # across the edge the absolute gap is half the larger value's ULP, below Lemma E.1's 2^(e-7)
    lo, hi = ADJ[0].astype(np.float64), ADJ[1].astype(np.float64)
    ok = (lo != 0) & (np.abs(hi) < bf16.DOMAIN.max_finite)
    gap = np.abs(hi - lo)[ok]
    u_hi = ref_ulp(hi[ok])
    assert np.sum(gap < u_hi) == 2 * 253  # exactly the 253 normal edges per sign
    # opposite signs: relative gap >= 1 (Lemma needs equal signs; the rule then trivially reports changed)
    x, y = F64[NORMAL & ~NEG][:500], -F64[NORMAL & ~NEG][-500:]
    assert (np.abs(x - y) / np.maximum(np.abs(x), np.abs(y))).min() >= 1


# ---------------------------------------------------------------- Lemma E.2 (ULP lens)


def test_lemma_e2_holds_all_normal_codes(ulp_all):
    r = ulp_all[NORMAL].astype(np.float64) / np.abs(F64[NORMAL])
    assert r.min() > 2.0**-8 and r.max() <= 2.0**-7


def test_lemma_e2_tight(ulp_all):
    r = ulp_all[NORMAL].astype(np.float64) / np.abs(F64[NORMAL])
    pow2 = MANT[NORMAL] == 0
    assert np.all(r[pow2] == 2.0**-7)  # attained at every power of two
    assert 2.0**-8 / r.min() >= 0.99  # infimum approached at the top of each binade (1/255)


def test_lemma_e2_premise_removed_subnormals(ulp_all):
    r = ulp_all[SUBNORMAL].astype(np.float64) / np.abs(F64[SUBNORMAL])
    assert np.all(r > 2.0**-7) and r.max() == 1.0  # min subnormal: ULP/|x| = 1


def test_lemma_e2_rate(ulp_all):
    # log2 ULP vs log2|x| over all normal codes: slope 1 (ULP scales with magnitude), intercept in (-8, -7]
    x = np.log2(np.abs(F64[NORMAL]))
    u = np.log2(ulp_all[NORMAL].astype(np.float64))
    slope, intercept = np.polyfit(x, u, 1)
    assert abs(slope - 1) < 1e-3 and -8 < intercept <= -7


# ---------------------------------------------------------------- Prop E.3 / Cor E.4 (rule (1) ⇔ bitwise)


def _rule_vs_bits(a, b, eta):
    r = _np(unchanged(a, b, eta=eta), np.bool_)
    bits = _np(bitwise_unchanged(a, b), np.bool_)
    zeros = (a.astype(np.float64) == 0) & (b.astype(np.float64) == 0)
    np.testing.assert_array_equal(r, ref_rule(a, b, eta) & np.isfinite(a.astype(F32)))
    return r, bits, zeros


@pytest.mark.parametrize("eta", [1e-3, 1.9e-3, 2.0**-8 * (1 - 2.0**-20)])
def test_prop_e3_holds_adjacent_and_equal_codes(eta):
    r, bits, _ = _rule_vs_bits(*ADJ, eta)
    assert not r.any() and not bits.any()
    a = VALUES[FINITE]
    r, bits, _ = _rule_vs_bits(a, a, eta)
    assert r.all() and bits.all()
    # signed zeros: rule says unchanged, bits differ
    pz, nz = np.array([0.0], BF16), np.array([-0.0], BF16)
    assert bool(unchanged(pz, nz, eta=eta)[0]) and not bool(bitwise_unchanged(pz, nz)[0])


@given(a=bf16_batches(), b=bf16_batches())
def test_prop_e3_holds_random_pairs(a, b):
    i = np.arange(BATCH)
    nxt = np.nextafter(a, BF16(np.inf))  # adjacent codes (a quarter), equal pairs (a quarter)
    b = np.where(
        i % 4 == 0, a, np.where((i % 4 == 1) & np.isfinite(nxt.astype(F32)), nxt, b)
    ).astype(BF16)
    for eta in (1e-3, 1.9e-3):
        r, bits, zeros = _rule_vs_bits(a, b, eta)
        np.testing.assert_array_equal(r, bits | zeros)


def test_prop_e3_premise_removed_eta_2pow_minus8():
    # tight: eta just below 2^-8 still bitwise (above); at eta = 2^-8 the binade-edge pairs are "unchanged"
    r, bits, _ = _rule_vs_bits(*ADJ, 2.0**-8)
    lo, hi = ADJ[0].astype(np.float64)[r], ADJ[1].astype(np.float64)[r]
    e = np.round(np.log2(np.abs(hi))) - 1
    np.testing.assert_array_equal(np.abs(hi), 2.0 ** (e + 1))
    np.testing.assert_array_equal(np.abs(lo), 2.0 ** (e + 1) - 2.0 ** (e - 7))
    assert r.sum() == 2 * 253 and not bits.any()  # every normal edge e = -126..126, both signs
    # larger eta disagrees on more pairs: at 2^-7 every adjacent pair at or above 2^-126 is "unchanged"
    r7, _, _ = _rule_vs_bits(*ADJ, 2.0**-7)
    assert r7.sum() > 100 * r.sum()


def test_unchanged_eta_is_used_as_float32():
    """Documented domain edges: eta is rounded to float32, so 2^-8 - 2^-40 acts as 2^-8 (the binade-edge pairs
    are unchanged), while the largest float32 below 2^-8 is still bitwise; larger eta is float32 arithmetic."""
    lo, hi = np.full(BATCH, 2 - 2.0**-7, BF16), np.full(BATCH, 2.0, BF16)
    below = float(np.nextafter(F32(2.0**-8), F32(0)))
    for eta, want in ((2.0**-8 - 2.0**-40, True), (below, False), (2.0**-8, True)):
        assert (_np(unchanged(lo, hi, eta=eta), np.bool_) == want).all()
    # beyond the bitwise regime it is float32 arithmetic: |-2^-30 - 1| = 1 + 2^-30 > 1·max rounds to 1 <= 1
    one, tiny = np.full(BATCH, 1.0, BF16), np.full(BATCH, -(2.0**-30), BF16)
    assert not ref_rule(one, tiny, 1.0).any() and _np(unchanged(one, tiny, eta=1.0), np.bool_).all()


def test_cor_e4_paper_eta_is_safe():
    assert 1e-3 < bf16.DOMAIN.eta_paper_bound < bf16.DOMAIN.eta_bitwise_sup
    # every pair of codes differing in the last k bits, k in 1..8, at eta = 1e-3: bitwise
    for k in range(1, 9):
        a = VALUES[FINITE]
        b = (CODES[FINITE] ^ np.uint16(1 << (k - 1))).view(BF16)
        ok = np.isfinite(b.astype(F32))
        r, bits, zeros = _rule_vs_bits(a[ok], b[ok], 1e-3)
        np.testing.assert_array_equal(r, bits | zeros)


def test_unchanged_subnormals_exact_on_every_backend():
    a = np.array([2.0**-133, 2.0**-133, -(2.0**-130), 2.0**-126], BF16)
    b = np.array([2.0**-132, 2.0**-133, -(2.0**-130) + 2.0**-133, 2.0**-126 - 2.0**-133], BF16)
    np.testing.assert_array_equal(
        _np(unchanged(a, b, eta=1e-3), np.bool_), [False, True, False, False]
    )


# ---------------------------------------------------------------- App. E.1 (absolute tolerance rule)


def test_app_e1_absolute_tolerance_counter_examples():
    atol = 1e-5
    a, b = np.array([1024.001], BF16), np.array([1024.002], BF16)
    assert abs(1024.002 - 1024.001) > atol  # atol rule: "changed"
    assert bool(bitwise_unchanged(a, b)[0]) and bool(
        unchanged(a, b, eta=1e-3)[0]
    )  # identical in bf16
    assert float(ulp(a)[0]) == 8.0
    c, d = np.array([1e-6], BF16), np.array([2e-6], BF16)
    assert abs(2e-6 - 1e-6) <= atol  # atol rule: "equal"
    assert not bool(bitwise_unchanged(c, d)[0]) and not bool(unchanged(c, d, eta=1e-3)[0])
    u = float(ulp(c)[0])
    assert u == 2.0**-27
    assert round((2e-6 - 1e-6) / u, 1) == 134.2
    np.testing.assert_allclose(c.astype(np.float64), 9.9838e-7, rtol=1e-5)
    np.testing.assert_allclose(d.astype(np.float64), 1.99676e-6, rtol=1e-5)


# ---------------------------------------------------------------- realized: exact vs NumPy + ml_dtypes


@pytest.mark.parametrize("c", [0.0, 0.25, 0.49, 0.5, 0.51, 1.0, 1e-30])
def test_realized_all_codes_against_numpy(c, ulp_all):
    for sign in (1.0, -1.0):
        delta = (F32(sign * c) * np.nan_to_num(ulp_all)).astype(F32)
        got = _np(realized(VALUES, delta), np.bool_)
        np.testing.assert_array_equal(got[FINITE], ref_realized(VALUES, delta)[FINITE])


@given(w=bf16_batches(finite=False), delta=f32_batches())
def test_realized_random_against_numpy(w, delta):
    got = _np(realized(w, delta), np.bool_)
    fin = np.isfinite(w.astype(F32))
    np.testing.assert_array_equal(got[fin], ref_realized(w, delta)[fin])
    inf = np.isinf(w.astype(F32))
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(got[inf], np.isnan(w.astype(F32) + delta)[inf])
    assert not got[np.isnan(w.astype(F32))].any()


def test_realized_is_optax_apply_updates(ulp_all):
    """Same semantics as optax.apply_updates (normal range, where no backend flushes)."""
    optax = pytest.importorskip("optax")
    sel = NORMAL & (np.abs(F64) >= 2.0**-100)
    w = VALUES[sel]
    for c in (0.5, 0.5 - 2.0**-17, 0.5 + 2.0**-17, 0.75):
        delta = (np.where(NEG[sel], -c, c) * ulp_all[sel]).astype(F32)
        with jax.numpy_dtype_promotion("standard"):  # optax adds bf16 + f32
            new = jax.jit(optax.apply_updates)(w, delta)
        assert new.dtype == jnp.bfloat16
        stored = np.asarray(new).view(np.uint16) != w.view(np.uint16)
        np.testing.assert_array_equal(_np(realized(w, delta), np.bool_), stored)


def test_realized_zero_signs_and_overflow():
    w = np.array([-0.0, 0.0, 0.0, 0.0, bf16.DOMAIN.max_finite, 1.0], BF16)
    d = np.array([0.0, -0.0, -(2.0**-149), 2.0**-134, 2.0**119, 2.0**-9], F32)
    np.testing.assert_array_equal(
        _np(realized(w, d), np.bool_), [True, False, True, False, True, False]
    )
    assert bool(realized(np.array([1.0], BF16), F32(2.0**-8 + 2.0**-20))[0])  # scalar delta


def test_realized_exact_where_xla_cpu_flushes(ulp_all):
    """Pins the backend behaviour: the naive jnp expression flushes subnormals on XLA:CPU only."""
    naive = jax.jit(lambda w, d: (w.astype(jnp.float32) + d).astype(jnp.bfloat16) != w)
    sign = np.where(NEG, F32(-1), F32(1))
    delta = (sign * F32(0.51) * np.nan_to_num(ulp_all)).astype(F32)  # away from zero
    ref = ref_realized(VALUES, delta)
    wrong = FINITE & (np.asarray(naive(VALUES, delta)) != ref)
    np.testing.assert_array_equal(_np(realized(VALUES, delta), np.bool_)[FINITE], ref[FINITE])
    if jax.default_backend() == "cpu":
        # flushed: only where w or delta is a float32 subnormal (|w| < 2^-126 or |delta| < 2^-126)
        tiny = (np.abs(F64) < 2.0**-126) | (np.abs(delta) < 2.0**-126)
        assert wrong.sum() > 0 and not (wrong & ~tiny).any()
        assert np.abs(F64[wrong]).max() >= 2.0**-119  # normal w with a flushed subnormal delta too
    else:
        assert wrong.sum() == 0


# ---------------------------------------------------------------- Cor 3.6 (realization threshold)


def _grid_case(direction_away: bool, ulp_all):
    """realized(w, ±c·ULP) on all finite codes × c = k/128, k = 0..128 (every sum is exact in float32)."""
    k = np.arange(129)
    c = k / 128
    w = VALUES[FINITE]
    away = np.where(NEG[FINITE], -1.0, 1.0) * (1.0 if direction_away else -1.0)
    delta = (away[:, None] * c[None, :] * ulp_all[FINITE][:, None].astype(np.float64)).astype(F32)
    wb = np.broadcast_to(w[:, None], delta.shape)
    got = _np(realized(np.ascontiguousarray(wb), delta), np.bool_)
    np.testing.assert_array_equal(got, ref_realized(wb, delta))
    return got, c


def test_cor36_holds_away_from_zero_with_enumerated_ties(ulp_all):
    got, c = _grid_case(True, ulp_all)
    paper = np.broadcast_to(c[None, :] > 0.5, got.shape)
    odd = ODD[FINITE][:, None]
    tie = (c[None, :] == 0.5) & odd  # exactly half a gap rounds to the even neighbour
    np.testing.assert_array_equal(got, paper | tie)
    assert tie.sum() == np.sum(ODD & FINITE)


def test_cor36_toward_zero_binade_edges_and_zeros(ulp_all):
    got, c = _grid_case(False, ulp_all)
    edge, odd = EDGE[FINITE][:, None], ODD[FINITE][:, None]
    pos_zero = (ZERO & ~NEG)[FINITE][:, None]
    neg_zero = (ZERO & NEG)[FINITE][:, None]
    cc = c[None, :]
    expected = (
        (cc > 0.5)
        | ((cc == 0.5) & odd)  # ties to the even neighbour
        | (edge & (cc > 0.25))  # cell below 2^e is half as wide; its tie (c = 1/4) keeps the even w
        | (pos_zero & (cc > 0))  # +0 minus anything is -0 or below: bits change
        | neg_zero  # -0 + (+0) = +0: bits change even for c = 0
    )
    np.testing.assert_array_equal(got, expected)
    # the edge exception is exactly the 2·253 codes ±2^e, e in -125..127 (not the min normal 2^-126)
    assert EDGE.sum() == 2 * 253 and not EDGE[0x0080]


def test_cor36_rate_step_at_half(ulp_all):
    """Realized fraction vs c for random normal w, updates c·ULP away from zero: 0 below the step, 1 above.
    The step at c = 1/2 is blurred only within 2^-17 of it (the float32 add's rounding), where exactly the odd
    mantissas realize."""
    rng = np.random.default_rng(3)
    pick = rng.choice(
        np.flatnonzero(NORMAL & (np.abs(F64) >= 2.0**-90) & (np.abs(F64) < 2.0**100)), 4096
    )
    w = VALUES[pick]
    u = ulp_all[pick].astype(np.float64) * np.where(NEG[pick], -1, 1)
    frac_odd = ODD[pick].mean()
    js = np.arange(2, 23)
    for side in (-1, 1):
        fr = []
        for j in js:
            delta = ((0.5 + side * 2.0 ** -float(j)) * u).astype(F32)
            fr.append(_np(realized(w, delta), np.bool_).mean())
        fr = np.array(fr)
        inside = js >= 17  # within 2^-17 of c = 1/2: only odd mantissas (ties) realize
        assert np.all(fr[~inside] == (0.0 if side < 0 else 1.0))
        np.testing.assert_array_equal(fr[inside], frac_odd)
    cs = rng.uniform(0, 1, 4096)
    r = _np(realized(w, (cs * u).astype(F32)), np.bool_)
    bins = np.digitize(cs, np.linspace(0, 1, 17)) - 1
    frac = np.array([r[bins == b].mean() for b in range(16)])
    np.testing.assert_array_equal(frac, np.repeat([0.0, 1.0], 8))


# ---------------------------------------------------------------- min_realizing_update (exact threshold)


@pytest.mark.parametrize("direction", [1, -1])
def test_min_realizing_update_brute_force_all_codes(direction, thresholds):
    t = thresholds[direction]
    assert np.isnan(t[~FINITE]).all() and (t[FINITE] >= 0).all()
    w = VALUES[FINITE]
    t = t[FINITE]
    at = (direction * t).astype(F32)
    below = (direction * np.nextafter(t, F32(0))).astype(F32)
    assert ref_realized(w, at).all()
    assert not ref_realized(w, below)[t > 0].any()
    np.testing.assert_array_equal(_np(realized(w, at), np.bool_), True)


def test_min_realizing_update_closed_forms(thresholds, ulp_all):
    """½ULP·(1 - 2^-16) at odd mantissas, the float32 after ½ULP·(1 + 2^-16) at even ones (normal |w| >= 2^-90);
    toward zero at a binade edge ¼ULP instead; exactly ½ULP (+2^-149 if even) where sums are exact."""
    u = ulp_all.astype(np.float64)
    big = NORMAL & (np.abs(F64) >= 2.0**-90) & (np.abs(F64) < bf16.DOMAIN.max_finite)
    for d in (1, -1):
        t = thresholds[d].astype(np.float64)
        away = np.where(NEG, -d, d) == 1
        for sel, q in ((big & (away | ~EDGE), u / 2), (big & ~away & EDGE, u / 4)):
            want = np.where(
                ODD, q * (1 - 2.0**-16), np.nextafter((q * (1 + 2.0**-16)).astype(F32), F32(np.inf))
            )
            np.testing.assert_array_equal(t[sel], want[sel])
        sub = SUBNORMAL
        want = np.where(ODD, 2.0**-134, 2.0**-134 + 2.0**-149)
        np.testing.assert_array_equal(t[sub], want[sub])
    # zeros: sign flips make -0 → +0 free and +0 → -0 one float32 step away
    assert thresholds[1][0x8000] == 0 and thresholds[-1][0x0000] == 2.0**-149
    assert thresholds[1][0x0000] == thresholds[-1][0x8000] == F32(2.0**-134 + 2.0**-149)
    assert thresholds[1][0x7F7F] == F32(2.0**119 - 2.0**103)  # overflow to inf (tie → even = inf)


@given(w=bf16_batches(), delta=f32_batches())
def test_realized_equals_threshold_rule(w, delta):
    """Monotonicity: realized(w, δ) ⇔ δ >= t⁺(w) or -δ >= t⁻(w) (compared on the host, no flushing)."""
    tp = _np(min_realizing_update(w, 1), np.float32)
    tm = _np(min_realizing_update(w, -1), np.float32)
    got = _np(realized(w, delta), np.bool_)
    dpos = ~np.signbit(delta) & ~np.isnan(delta)
    dneg = np.signbit(delta) & ~np.isnan(delta)
    want = np.isnan(delta) | (dpos & (delta >= tp)) | (dneg & (-delta >= tm))
    np.testing.assert_array_equal(got, want)


@given(w=bf16_batches())
def test_threshold_near_half_ulp(w):
    """Away from zero the exact threshold is within 2^-15 (relative) of the paper's ½ULP for every normal w."""
    h = _np(half_ulp(w), np.float32).astype(np.float64)
    a = w.astype(np.float64)
    for d in (1, -1):
        t = _np(min_realizing_update(w, d), np.float32).astype(np.float64)
        away = (np.sign(a) == d) & (np.abs(a) >= 2.0**-90) & (np.abs(a) < bf16.DOMAIN.max_finite)
        assert np.all(np.abs(t[away] / h[away] - 1) <= 2.0**-15)
        assert np.all(t[a != 0] >= h[a != 0] / 2 * (1 - 2.0**-15))  # never below ¼ULP


# ---------------------------------------------------------------- update sparsity (Def 2.2)


def test_update_sparsity_known_answers():
    a = np.array([1.0, 2.0, -3.0, 0.0, 5.0, 6.0, 7.0, 8.0], BF16)
    assert bf16.update_sparsity(a, a) == 1.0
    assert bf16.update_sparsity(a, (a * 2).astype(BF16)) == 1 / 8  # only the zero stays
    b = a.copy()
    b[0] = np.nextafter(b[0], BF16(2))  # one ulp
    b[3] = -0.0  # signed zero: unchanged by rule (1), bits differ
    assert bf16.update_sparsity(a, b) == 1 - 1 / 8
    tree0 = {"layer": {"q": a, "k": a}, "emb": a}
    tree1 = {"layer": {"q": b, "k": a}, "emb": (a * 2).astype(BF16)}
    assert bf16.update_sparsity(tree0, tree1) == 1 - 8 / 24
    cc = change_counts(a, b, eta=1e-3)
    assert all(x.dtype == jnp.int32 for x in cc)
    assert (int(cc.changed), int(cc.bit_changed), int(cc.nonfinite), int(cc.size)) == (1, 2, 0, 8)


@given(a=bf16_batches(), b=bf16_batches())
def test_change_counts_match_bits(a, b):
    b = np.where(np.arange(BATCH) % 2 == 0, a, b).astype(BF16)
    cc = change_counts(a, b, eta=1e-3)
    zero_flips = np.sum(
        (a.astype(F32) == 0) & (b.astype(F32) == 0) & (a.view(np.uint16) != b.view(np.uint16))
    )
    assert int(cc.bit_changed) == np.sum(a.view(np.uint16) != b.view(np.uint16))
    assert int(cc.changed) == int(cc.bit_changed) - zero_flips
    s = bf16.update_sparsity(a, b)
    assert s == 1 - int(cc.changed) / BATCH and 0 <= s <= 1


def test_update_sparsity_nonfinite_reported_not_folded():
    a = np.array([1.0, np.nan, np.inf, 2.0, 0.0, 0.0, 0.0, 0.0], BF16)
    b = np.array([1.0, np.nan, np.inf, 3.0, 0.0, 0.0, 0.0, 0.0], BF16)
    cc = change_counts(a, b, eta=1e-3)
    assert (int(cc.changed), int(cc.bit_changed), int(cc.nonfinite)) == (1, 1, 2)
    assert int(jax.jit(bf16.count_nonfinite)(a)) == 2
    assert int(jax.jit(bf16.count_nonfinite)(np.array([np.nan, 1.0], F32))) == 1
    with pytest.raises(NonFiniteError, match=r"\['w'\]: 2 non-finite"):
        bf16.update_sparsity({"w": a}, {"w": b})
    np.testing.assert_array_equal(  # rule (1) undefined on NaN/inf ⇒ never "unchanged"
        _np(unchanged(a, b, eta=1e-3), np.bool_), [True, False, False, False] + [True] * 4
    )


def test_errors():
    w = np.ones(3, BF16)
    with pytest.raises(TypeError, match="expected bfloat16, got float32"):
        ulp(np.ones(3, F32))
    with pytest.raises(TypeError, match="expected bfloat16, got float64"):
        bf16.unchanged(np.ones(3), w)
    with pytest.raises(TypeError, match="delta: expected float32, got float64"):
        bf16.realized(w, np.ones(3))
    with pytest.raises(TypeError, match="expected uint16, got int32"):
        bf16.from_bits(np.ones(3, np.int32))
    with pytest.raises(TypeError, match="expected float32, got bfloat16"):
        bf16.round_to_bf16(w)
    with pytest.raises(ValueError, match=r"shapes differ, \(3,\) vs \(2,\)"):
        bf16.realized(w, np.ones(2, F32))
    with pytest.raises(ValueError, match="shapes differ"):
        bf16.bitwise_unchanged(w, w[:2])
    with pytest.raises(ValueError, match="direction must be"):
        bf16.min_realizing_update(w, 0)
    with pytest.raises(TypeError, match="w: expected bfloat16, got float32"):
        min_realizing_update(np.ones(3, F32), 1)
    with pytest.raises(ValueError, match="eta must be"):
        bf16.unchanged(w, w, eta=-1.0)
    with pytest.raises(ValueError, match=r"\['b'\]: shapes differ"):
        bf16.update_sparsity({"a": w, "b": w}, {"a": w, "b": w[:2]})
    with pytest.raises(
        ValueError, match=r"only in theta0 \[\"\['b'\]\"\], only in theta1 \[\"\['c'\]\"\]"
    ):
        bf16.update_sparsity({"a": w, "b": w}, {"a": w, "c": w})
    with pytest.raises(TypeError, match=r"\['a'\]: expected bfloat16, got float32"):
        bf16.update_sparsity({"a": w}, {"a": np.ones(3, F32)})

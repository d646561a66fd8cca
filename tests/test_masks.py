"""Tests for threegate.masks (metrics M2–M10): float64 NumPy references, known answers (digest §9.2), nulls.

Library calls go through module-level `jax.jit` wrappers; (shape, k, alpha) come from small fixed sets so each
combination compiles once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import SEEDS, bool_masks, orthonormal

from threegate import masks as mk

F32 = np.float32

#: (m, n, k, alpha) combinations for the selection masks (static arguments: one compile each).
SELECTIONS = ((6, 4, 1, 0.3), (8, 8, 2, 0.5), (5, 7, 3, 0.05))


@functools.partial(jax.jit, static_argnames=("k", "alpha"))
def selections_j(w, k, alpha):
    return mk.principal_mask(w, k, alpha), mk.low_magnitude_mask(w, alpha)


@jax.jit
def pair_stats_j(a, b):
    """Every pairwise statistic of two `[m, n]` masks in one compiled call."""
    return {
        "overlap": mk.overlap(a, b),
        "jaccard": mk.jaccard(a, b),
        "jaccard_ba": mk.jaccard(b, a),
        "density_a": mk.density(a),
        "rows": mk.row_update_ratio(a),
        "cols": mk.column_update_ratio(a),
    }


consensus_j = jax.jit(mk.consensus)
baseline_j = jax.jit(mk.jaccard_baseline)
moving_average_j = jax.jit(mk.moving_average, static_argnames="width")


def _host(tree):
    return jax.tree.map(np.asarray, tree)


def _boundary_gap(scores: np.ndarray, count: int) -> float:
    """Distance between the count-th and (count+1)-th largest score (inf when the count is 0 or everything)."""
    s = np.sort(scores.reshape(-1))[::-1]
    if count in (0, s.size):
        return np.inf
    return float(s[count - 1] - s[count])


# ----------------------------------------------------------------------------------------- selection masks


@given(sel=st.sampled_from(SELECTIONS), seed=SEEDS)
def test_principal_mask_matches_reference(sel, seed):
    m, n, k, alpha = sel
    w = np.random.default_rng(seed).standard_normal((m, n)).astype(F32)
    count = mk.selection_count(alpha, m * n)
    u, s, vt = np.linalg.svd(ref.f64(w))
    recon = np.abs((u[:, :k] * s[:k]) @ vt[:k])
    assume(
        _boundary_gap(recon, count) > 1e3 * np.finfo(F32).eps * s[0]
    )  # no float32 near-tie at the cut
    principal, _ = _host(selections_j(w, k=k, alpha=alpha))
    assert principal.dtype == bool and principal.sum() == count == int(np.floor(alpha * m * n))
    np.testing.assert_array_equal(principal, ref.principal_mask(w, k, count))


@given(sel=st.sampled_from(SELECTIONS), seed=SEEDS, levels=st.sampled_from([3, 1000]))
def test_low_magnitude_mask_matches_reference_with_stable_ties(sel, seed, levels):
    m, n, k, alpha = sel
    # Few magnitude levels force many ties: the lower row-major index must win, as in a stable argsort.
    w = np.random.default_rng(seed).integers(-levels, levels + 1, (m, n)).astype(F32)
    count = mk.selection_count(alpha, m * n)
    _, low = _host(selections_j(w, k=k, alpha=alpha))
    assert low.sum() == count
    np.testing.assert_array_equal(low, ref.low_magnitude_mask(w, count))


def test_low_magnitude_ties_go_to_lower_flat_index():
    low = np.asarray(selections_j(np.ones((6, 4), F32), k=1, alpha=0.3)[1])
    np.testing.assert_array_equal(low.reshape(-1), np.arange(24) < 7)


def test_principal_mask_of_rank_one_is_top_alpha_of_outer_product():
    rng = np.random.default_rng(1)
    u, v = rng.standard_normal(8), rng.standard_normal(8)
    w = np.outer(u, v).astype(F32)
    count = mk.selection_count(0.5, 64)
    assert _boundary_gap(np.abs(np.outer(u, v)), count) > 1e-3
    principal, _ = _host(
        selections_j(w, k=2, alpha=0.5)
    )  # k ≥ 1 = rank: the reconstruction is W itself
    np.testing.assert_array_equal(
        principal, ref.stable_top(np.abs(np.outer(u, v)), count, largest=True)
    )


def test_full_rank_principal_mask_is_complement_of_low_magnitude_at_half():
    w = np.random.default_rng(2).standard_normal((8, 8)).astype(F32)
    assert _boundary_gap(np.abs(w), 32) > 1e-3  # no ties at the cut
    principal = np.asarray(mk.principal_mask(w, 8, 0.5))  # k = min(m, n): the reconstruction is W
    _, low_half = _host(selections_j(w, k=2, alpha=0.5))
    np.testing.assert_array_equal(principal, ~low_half)


@given(j=st.integers(0, 100), size=st.integers(1, 10**6))
def test_selection_count_is_exact_floor_for_decimal_alpha(j, size):
    assert mk.selection_count(j / 100, size) == (j * size) // 100


# ------------------------------------------------------------------------------------------ pair statistics


@given(a=bool_masks((6, 4)), b=bool_masks((6, 4)))
def test_overlap_and_jaccard_match_reference(a, b):
    out = _host(pair_stats_j(a, b))
    size = a.size
    if b.sum():
        assert out["overlap"].value == pytest.approx((a & b).sum() / b.sum(), rel=1e-6)
    else:
        assert np.isnan(out["overlap"].value)  # empty mask: NaN by convention
    assert out["overlap"].baseline == pytest.approx(a.sum() / size, rel=1e-6)
    assert out["density_a"] == pytest.approx(a.mean(), rel=1e-6)
    if (a | b).sum():
        assert out["jaccard"] == pytest.approx(ref.jaccard(a, b), rel=1e-6)
    else:
        assert np.isnan(out["jaccard"])
    np.testing.assert_array_equal(out["jaccard"], out["jaccard_ba"])  # symmetric
    if a.sum() and b.sum():
        want_lift = ((a & b).sum() / b.sum()) / (a.sum() / size)
        assert out["overlap"].lift == pytest.approx(want_lift, rel=1e-5)


@given(a=bool_masks((6, 4)))
def test_row_and_column_ratios_sum_to_density(a):
    out = _host(pair_stats_j(a, a))
    np.testing.assert_allclose(out["rows"], a.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(out["cols"], a.mean(axis=0), rtol=1e-6)
    # (1/m)Σρ_i = (1/n)Σκ_j = density
    assert out["rows"].mean() == pytest.approx(a.mean(), abs=1e-6)
    assert out["cols"].mean() == pytest.approx(a.mean(), abs=1e-6)
    if a.any():
        assert out["overlap"].value == pytest.approx(1.0) and out["jaccard"] == pytest.approx(1.0)


@given(seed=SEEDS, p=st.floats(0.0, 1.0))
def test_consensus_is_mean_over_runs(seed, p):
    masks = np.random.default_rng(seed).random((3, 6, 4)) < p
    got = np.asarray(consensus_j(masks))
    np.testing.assert_allclose(got, masks.mean(axis=0), rtol=1e-6)
    assert got.dtype == F32


@given(seed=SEEDS, width=st.sampled_from([3, 5]))
def test_moving_average_matches_reference(seed, width):
    x = np.random.default_rng(seed).standard_normal((2, 13)).astype(F32)
    got = np.asarray(moving_average_j(x, width=width))
    np.testing.assert_allclose(got, ref.moving_average(x, width), rtol=1e-5, atol=1e-6)


def test_moving_average_preserves_constants_and_width_one_is_identity():
    x = np.full((2, 13), 0.25, F32)
    np.testing.assert_array_equal(np.asarray(moving_average_j(x, width=3)), x)
    y = np.arange(13, dtype=F32).reshape(1, 13)
    np.testing.assert_array_equal(np.asarray(mk.moving_average(y, width=1)), y)


# ----------------------------------------------------------------------------------------------- nulls


def test_overlap_of_independent_random_mask_is_its_density():
    rng = np.random.default_rng(3)
    ref_mask, m = rng.random((64, 64)) < 0.3, rng.random((64, 64)) < 0.5
    out = _host(mk.overlap(ref_mask, m))
    # value ~ hypergeometric fraction: standard error sqrt(p(1-p)/|M|) ≈ 0.01; allow 4 of them.
    assert abs(out.value - out.baseline) <= 4 * np.sqrt(0.3 * 0.7 / m.sum())
    assert out.lift == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize(("p", "q"), [(0.1, 0.1), (0.3, 0.6), (0.8, 0.5)])
def test_jaccard_baseline_matches_monte_carlo(p, q):
    rng = np.random.default_rng(4)
    draws = [
        float(mk.jaccard(rng.random((64, 64)) < p, rng.random((64, 64)) < q)) for _ in range(20)
    ]
    # J of 4096-entry masks concentrates: its standard deviation is below 0.01 for these densities.
    assert np.mean(draws) == pytest.approx(float(baseline_j(p, q)), abs=0.01)
    assert float(baseline_j(p, q)) == pytest.approx(p * q / (p + q - p * q), rel=1e-6)


def test_table_2_inversion_reproduces_digest_densities():
    b = np.array([0.430, 0.413, 0.467, 0.373, 0.453, 0.443, 0.437])  # Table 2 random baselines
    p_digest = np.array([0.601, 0.585, 0.637, 0.543, 0.623, 0.614, 0.608])
    p = np.asarray(mk.density_from_jaccard_baseline(b))
    # The digest gives 3 decimals; MLP-down's 2·0.453/1.453 = 0.62354 is printed as 0.623 (truncated), so
    # allow one unit in the last place.
    np.testing.assert_allclose(p, p_digest, atol=1e-3)
    np.testing.assert_allclose(np.asarray(baseline_j(p, p)), b, rtol=1e-6)  # round trip


def test_undefined_ratios_are_nan_not_silent():
    empty = np.zeros((6, 4), bool)
    full = np.ones((6, 4), bool)
    out = _host(pair_stats_j(empty, empty))
    assert np.isnan(out["overlap"].value) and np.isnan(out["overlap"].lift)
    assert np.isnan(out["jaccard"])
    assert out["overlap"].baseline == 0.0
    out = _host(pair_stats_j(empty, full))
    assert out["overlap"].value == 0.0 and np.isnan(out["overlap"].lift)  # baseline 0
    assert np.isnan(float(baseline_j(0.0, 0.0)))


# --------------------------------------------------------------------------------- dtypes and bad inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ratio_dtypes_follow_default_float(dtype):
    a = np.random.default_rng(5).random((6, 4)) < 0.5
    with jax.enable_x64(dtype == np.float64):
        out = pair_stats_j(a, ~a)
        for leaf in jax.tree.leaves(out):
            assert leaf.dtype == dtype
        assert consensus_j(np.stack([a, a, ~a])).dtype == dtype
        assert moving_average_j(np.ones((2, 13), dtype), width=3).dtype == dtype


def test_half_precision_weights_are_accepted():
    w = jnp.asarray(np.random.default_rng(6).standard_normal((6, 4)), jnp.bfloat16)
    principal, low = selections_j(w, k=1, alpha=0.3)
    assert principal.dtype == bool and int(low.sum()) == 7


def test_bad_inputs_raise_clear_errors():
    w = np.ones((6, 4), F32)
    with pytest.raises(ValueError, match="alpha"):
        mk.low_magnitude_mask(w, 1.5)
    with pytest.raises(ValueError, match="k must be"):
        mk.principal_mask(w, 5, 0.5)
    with pytest.raises(ValueError, match="2-D"):
        mk.low_magnitude_mask(np.ones(4, F32), 0.5)
    with pytest.raises(TypeError, match="boolean"):
        mk.overlap(w, w)
    with pytest.raises(ValueError, match=r"\(6, 4\) and \(4, 6\)"):
        mk.jaccard(np.ones((6, 4), bool), np.ones((4, 6), bool))
    with pytest.raises(ValueError, match="3-D"):
        mk.consensus(np.ones((6, 4), bool))
    with pytest.raises(ValueError, match="odd"):
        mk.moving_average(np.ones(5, F32), width=2)
    with pytest.raises(TypeError, match="floating"):
        mk.low_magnitude_mask(np.ones((6, 4), np.int32), 0.5)


def test_masks_are_coordinate_sets_not_subspaces():
    # A rotation inside span(U_2) leaves the top-2 singular *subspace* where it was but moves the rank-2
    # reconstruction's large entries: the two meanings of "principal" differ (peers §9.3).
    rng = np.random.default_rng(7)
    u, v = orthonormal(rng, 8, 8), orthonormal(rng, 8, 8)
    w = (u * np.array([3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1])) @ v.T
    c, s_ = np.cos(0.7), np.sin(0.7)
    rot = np.eye(8) + u[:, :2] @ (np.array([[c, -s_], [s_, c]]) - np.eye(2)) @ u[:, :2].T
    u_before, _ = ref.top_bases(w, 2)
    u_after, _ = ref.top_bases(rot @ w, 2)
    assert ref.projector_distance(u_before, u_after) < 1e-12  # same subspace
    before = np.asarray(selections_j(w.astype(F32), k=2, alpha=0.5)[0])
    after = np.asarray(selections_j((rot @ w).astype(F32), k=2, alpha=0.5)[0])
    assert (before != after).sum() >= 4  # different coordinates

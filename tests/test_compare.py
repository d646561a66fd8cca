"""Unit tests of `threegate.compare`: per-tensor metrics on planted cases against float64 NumPy/SciPy references."""

import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import scipy.linalg as sla

from threegate import bf16, masks, spectral
from threegate._numerics import TEST_RTOL, eps, tol
from threegate.compare import gram_spectrum, prepare_base, spectral_norm, tensor_metrics
from threegate.compare.coords import (
    bottom_fraction_mask,
    changed_mask,
    jaccard,
    jaccard_baseline,
    overlap,
    top_fraction_mask,
)
from threegate.compare.jsonl import JsonlWriter, read_jsonl

BF16 = ml_dtypes.bfloat16
M, N, K = 40, 32, 6  # shared with tests/test_compare_cli.py: one compile per shape


def _matrix(rng, m=M, n=N, s=None):
    """`U diag(s) V^T` with a seeded spectrum (float64)."""
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    p = min(m, n)
    s = np.linspace(2.0, 0.1, p) if s is None else np.asarray(s)
    return (u[:, :p] * s[None, :]) @ v[:, :p].T


def _step_ulps(w: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    """Copy of bf16 `w` with the flat entries `idx` moved `n` ULPs away from zero (bit arithmetic)."""
    bits = w.view(np.uint16).copy().ravel()
    bits[idx] += np.uint16(n)
    return bits.reshape(w.shape).view(BF16)


def test_planted_changes_exact_counts(rng):
    w0 = (rng.standard_normal((M, N)) * 0.02).astype(BF16)
    idx = rng.choice(w0.size, 37, replace=False)
    w1 = _step_ulps(w0, idx, 1)
    # sub-half-ULP moves on other entries: the float32 add rounds back to the stored value
    rest = np.setdiff1d(np.arange(w0.size), idx)[:200]
    w32 = w1.astype(np.float32).ravel()
    ulp = np.spacing(np.abs(w0.astype(np.float32).ravel()[rest]).astype(BF16)).astype(np.float32)
    w32[rest] += np.sign(w32[rest]) * 0.45 * ulp
    w1 = w32.reshape(w0.shape).astype(BF16)
    res = tensor_metrics("model.layers.0.self_attn.q_proj.weight", w0, w1, K, 0.5)
    r = res.record
    ref = bf16.change_counts(w0, w1)
    assert r["changed"] == 37 == int(ref.changed)
    assert r["sparsity"] == 1 - 37 / w0.size
    assert r["changed_rule"] == "bits"
    assert np.flatnonzero(res.mask).tolist() == sorted(idx.tolist())
    d = w1.astype(np.float64) - w0.astype(np.float64)
    assert r["rel_update_fro"] == pytest.approx(
        np.linalg.norm(d) / np.linalg.norm(w0.astype(np.float64)), rel=1e-12
    )
    assert r["layer_type"] == "q_proj" and r["layer"] == 0
    json.dumps(r, allow_nan=False)  # JSON-ready, no NaN


def test_changed_mask_signed_zero_and_dtype_mix():
    a = np.array([0.0, -0.0, 1.0, 2.0], dtype=np.float32).astype(BF16)
    b = np.array([-0.0, 0.0, 1.0, 3.0], dtype=np.float32).astype(BF16)
    m, rule = changed_mask(a, b)
    assert m.tolist() == [False, False, False, True] and rule == "bits"
    assert (~m).tolist() == np.asarray(bf16.unchanged(a, b)).tolist()
    m2, rule2 = changed_mask(a, b.astype(np.float32))
    assert m2.tolist() == [False, False, False, True] and rule2 == "value"


def test_spectrum_matches_scipy(rng):
    w = _matrix(rng)
    spec = gram_spectrum(w, K)
    s_ref = sla.svdvals(w)
    np.testing.assert_allclose(spec.s, s_ref, rtol=0, atol=50 * N * eps(np.float64) * s_ref[0])
    u, _, vt = sla.svd(w)
    assert np.max(np.sin(sla.subspace_angles(spec.u, u[:, :K]))) < 1e-10
    assert np.max(np.sin(sla.subspace_angles(spec.v, vt[:K].T))) < 1e-10
    wide = gram_spectrum(w.T, K)  # m < n goes through W W^T
    np.testing.assert_allclose(wide.s, spec.s, rtol=1e-12)
    assert spectral_norm(w) == pytest.approx(s_ref[0], rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_planted_rotation_angles_against_scipy(rng, dtype):
    s = np.concatenate([np.linspace(3.0, 2.0, K), np.linspace(1.0, 0.1, N - K)])
    w0 = _matrix(rng, s=s)
    u, _, _ = np.linalg.svd(w0)
    phi = 0.01
    g = np.eye(
        M
    )  # Givens rotation of u_K into u_{K+1}: the top-K left subspace turns by exactly phi
    a, b = u[:, K - 1], u[:, K]
    g += (np.cos(phi) - 1) * (np.outer(a, a) + np.outer(b, b)) + np.sin(phi) * (
        np.outer(b, a) - np.outer(a, b)
    )
    w1 = g @ w0
    r = tensor_metrics("layers.1.mlp.down_proj.weight", w0, w1, K, 0.5, dtype=dtype).record
    u1, _, _ = np.linalg.svd(w1)
    ref = np.degrees(sla.subspace_angles(u[:, :K], u1[:, :K])).max()
    rtol = {"float32": 1e-3, "float64": 1e-9}[dtype]
    assert r["max_angle_u_deg"] == pytest.approx(ref, rel=rtol)
    assert r["max_angle_u_deg"] == pytest.approx(np.degrees(phi), rel=rtol)
    assert r["max_angle_v_deg"] == pytest.approx(0.0, abs=np.degrees(1e3 * eps(dtype)))
    assert r["spectral_shift"] == pytest.approx(0.0, abs=1e3 * eps(dtype))  # rotation keeps σ
    assert r["measure"]["dtype"] == dtype and r["measure"]["precision"] == "highest"


def test_bound_ratios_agree_with_spectral_checks(rng):
    w0 = _matrix(rng)
    w1 = w0 + 1e-3 * rng.standard_normal(w0.shape)
    r = tensor_metrics("a.b.0.q_proj.weight", w0, w1, K, 0.5, dtype="float64").record
    with jax.enable_x64(True):
        weyl = spectral.weyl_check(w0, w1)
        paper = spectral.wedin_check(w0, w1, K, form="paper")
        rig = spectral.wedin_check(w0, w1, K, form="rigorous")
        energy = spectral.subspace_energy_fraction(w0, w1 - w0, K)
        nss = spectral.spectral_shift(w0, w1)
        ratios = [float(c.ratio) for c in (weyl, paper, rig)]
    rtol = 1e-8
    assert r["weyl_ratio"] == pytest.approx(ratios[0], rel=rtol)
    assert r["wedin_ratio"] == pytest.approx(ratios[1], rel=rtol)
    assert r["wedin_rigorous_ratio"] == pytest.approx(ratios[2], rel=rtol)
    assert r["wedin_premise"] and r["wedin_rigorous_premise"]
    assert r["principal_energy_fraction"] == pytest.approx(float(energy), rel=rtol)
    assert r["principal_energy_null"] == K * K / (M * N)
    assert r["spectral_shift"] == pytest.approx(float(nss), rel=1e-6)
    s = np.linalg.svd(w0, compute_uv=False)
    assert r["gap_k"] == pytest.approx(s[K - 1] - s[K], rel=1e-10)
    assert r["gap_k_rel"] == pytest.approx((s[K - 1] - s[K]) / s[K - 1], rel=1e-10)
    assert 0 < r["weyl_ratio"] <= 1 + TEST_RTOL["float32"]


def test_zero_gap_premise_false_no_division(rng):
    s = np.concatenate([np.full(K + 1, 1.0), np.linspace(0.5, 0.1, N - K - 1)])  # σ_K = σ_{K+1}
    w0 = np.zeros((M, N))
    w0[:N, :N] = np.diag(s)  # exact: the Gram matrix is diagonal, its eigenvalues exact
    w1 = w0 + 1e-3 * rng.standard_normal(w0.shape)
    r = tensor_metrics("l.0.k_proj.weight", w0, w1, K, 0.5, dtype="float64").record
    assert r["gap_k"] == 0.0
    assert r["wedin_premise"] is False and r["wedin_ratio"] is None
    assert r["wedin_rigorous_premise"] is False and r["wedin_rigorous_ratio"] is None
    assert r["weyl_ratio"] is not None and r["max_angle_u_deg"] is not None
    json.dumps(r, allow_nan=False)


def test_identical_tensors_and_k_clipping(rng):
    w = (rng.standard_normal((8, 6)) * 0.1).astype(BF16)
    r = tensor_metrics("layers.2.self_attn.v_proj.weight", w, w.copy(), 100, 0.5).record
    assert r["changed"] == 0 and r["sparsity"] == 1.0 and r["rel_update_fro"] == 0.0
    assert r["k"] == 5 and r["k_clipped"] is True and r["k_requested"] == 100
    floor = np.degrees(
        tol("float32", 8)
    )  # identical inputs: only float32 rounding of the angle formula
    assert 0 <= r["max_angle_u_deg"] <= floor and 0 <= r["max_angle_v_deg"] <= floor
    assert r["spectral_shift"] == 0.0 and r["weyl_ratio"] == 0.0 and r["wedin_ratio"] == 0.0
    assert r["overlap_principal"] is None  # empty update mask: overlap undefined
    assert r["overlap_principal_random"] == 0.5
    assert r["principal_energy_fraction"] is None  # ΔW = 0


def test_nonfinite_tensor_gets_null_metrics(rng):
    w0 = (rng.standard_normal((8, 6)) * 0.1).astype(BF16)
    w1 = w0.copy()
    w1[1, 2] = np.nan
    w1[3, 3] = np.inf
    r = tensor_metrics("layers.0.mlp.up_proj.weight", w0, w1, 2, 0.5).record
    assert r["nonfinite"] == {"base": 0, "tuned": 2}
    assert r["changed"] is None and r["sparsity"] is None and r["max_angle_u_deg"] is None
    assert r["spectral_skipped"] == "non-finite values"


def test_masks_match_threegate_masks(rng):
    w = (rng.standard_normal((M, N)) * 0.02).astype(BF16)  # bf16: many exact |w| ties
    w32 = w.astype(np.float32)
    with jax.enable_x64(True):
        ref_p = np.asarray(masks.principal_mask(jnp.asarray(w32, jnp.float64), K, 0.3))
    ref_l = np.asarray(masks.low_magnitude_mask(w32, 0.3))
    base = prepare_base(w, K, 0.3, dtype="float64")
    np.testing.assert_array_equal(base.low, ref_l)
    np.testing.assert_array_equal(base.principal, ref_p)
    assert base.principal.sum() == base.low.sum() == int(0.3 * M * N)
    x = np.array([3.0, 1.0, 3.0, 3.0, 0.0])
    assert top_fraction_mask(x, 0.4).tolist() == [True, False, True, False, False]
    assert bottom_fraction_mask(x, 0.6).tolist() == [True, True, False, False, True]


def test_overlaps_against_hand_counts(rng):
    w0 = (rng.standard_normal((M, N)) * 0.02).astype(BF16)
    idx = rng.choice(w0.size, 300, replace=False)
    w1 = _step_ulps(w0, idx, 3)
    base = prepare_base(w0, K, 0.5)
    r = tensor_metrics("x.0.o_proj.weight", w0, w1, K, 0.5, base=base).record
    mask = np.zeros(w0.size, bool)
    mask[idx] = True
    mask = mask.reshape(w0.shape)
    p, low = base.principal, base.low
    assert r["overlap_principal"] == np.count_nonzero(p & mask) / 300
    assert r["overlap_low"] == np.count_nonzero(low & mask) / 300
    both = p & ~low
    assert r["overlap_principal_not_low"] == np.count_nonzero(both & mask) / 300
    assert r["overlap_principal_not_low_random"] == np.count_nonzero(both) / w0.size
    ov = masks.overlap(p, mask)
    assert r["overlap_principal"] == pytest.approx(float(ov.value), rel=1e-6)
    assert r["overlap_principal_random"] == pytest.approx(float(ov.baseline), rel=1e-6)
    assert r["row_update_ratio"]["mean"] == pytest.approx(300 / w0.size)
    assert overlap(p, np.zeros_like(p)) == (None, 0.5)


def test_jaccard_and_baseline_by_hand():
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 1, 0, 1, 0], bool)
    assert jaccard(a, b) == 2 / 4
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) is None
    assert jaccard_baseline(0.5, 0.5) == pytest.approx(0.25 / 0.75)
    assert jaccard_baseline(0.0, 0.0) is None
    assert jaccard_baseline(0.6, 0.3) == pytest.approx(float(masks.jaccard_baseline(0.6, 0.3)))


def test_jsonl_tolerates_truncated_tail(tmp_path):
    p = tmp_path / "x.jsonl"
    with JsonlWriter(p) as w:
        w.write({"a": 1, "b": np.float32(0.5), "c": float("nan")})
        w.write({"a": 2})
    p.write_bytes(p.read_bytes() + b'{"a": 3, "b"')  # interrupted mid-write
    assert [r["a"] for r in read_jsonl(p)] == [1, 2]
    assert read_jsonl(p)[0]["c"] is None
    with JsonlWriter(p) as w:
        w.write({"a": 4})
    assert [r["a"] for r in read_jsonl(p)] == [1, 2, 4]
    p.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(p)

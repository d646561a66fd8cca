"""Tests for threegate.spectral: every Gate II bound gets holds / tight / premise-removed / rate (style E8).

All library calls go through module-level `jax.jit` wrappers with static `k`, so each (shape, k, dtype) compiles
once. References are float64 NumPy/SciPy (`tests/reference.py`) on float64 copies of the exact inputs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference as ref
import scipy.linalg as sla
from hypothesis import assume, example, given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from strategies import (
    LeashCase,
    PerturbedCase,
    SchurCase,
    leash_cases,
    orthonormal,
    perturbed_cases,
    schur_cases,
    with_spectrum,
)

from threegate import spectral as sp
from threegate._numerics import bound_holds, eps, tol


@functools.partial(jax.jit, static_argnames="k")
def checks_j(w0, w1, k):
    """Every perturbation check of one (W0, W1) pair in one compiled call: one compile per (shape, k, dtype)."""
    return {
        "weyl": sp.weyl_check(w0, w1),
        "mirsky": sp.mirsky_check(w0, w1),
        "ky_fan": sp.ky_fan_check(w0, w1, k),
        "paper": sp.wedin_check(w0, w1, k, form="paper"),
        "rigorous": sp.wedin_check(w0, w1, k, form="rigorous"),
        "projector": sp.projector_check(w0, w1, k),
    }


@functools.partial(jax.jit, static_argnames="k")
def metrics_j(w0, w1, u, u_hat, k):
    """The subspace metrics of one pair in one compiled call."""
    top = sp.top_k(w0, k)
    return {
        "sin_theta": sp.sin_theta(u, u_hat),
        "shift": sp.spectral_shift(w0, w1),
        "energy": sp.subspace_energy_fraction(w0, w1 - w0, k),
        "energy_basis": sp.subspace_energy_fraction_from_basis(top.u, top.v, w1 - w0),
    }


leash_j = jax.jit(sp.leash_check)
schur_j = jax.jit(sp.schur_check, static_argnames="block")
schur_complement_j = jax.jit(sp.schur_complement, static_argnames="n_w")
angles_j = jax.jit(sp.principal_angles)
projector_distance_j = jax.jit(sp.projector_distance)
energy_basis_j = jax.jit(sp.subspace_energy_fraction_from_basis)
top_k_j = jax.jit(sp.top_k, static_argnames="k")
gap_j = jax.jit(sp.spectral_gap, static_argnames="k")

F32 = np.float32
SWEEP = 2.0 ** -np.arange(1, 17)  # ‖ΔW‖ = 2^-1 … 2^-16

# Edge cases pinned for every perturbation property test (E7): E = 0, k = min(m, n) - 1, repeated top values.
ZERO_E = PerturbedCase(6, 4, 1, (2.0, 1.0, 0.5, 0.1), (0.0, 0.0, 0.0, 0.0), 7)
K_MIN_MINUS_1 = PerturbedCase(4, 7, 3, (3.0, 2.0, 1.5, 0.5), (0.3, 0.2, 0.1, 0.0), 11)
REPEATED_TOP = PerturbedCase(4, 7, 3, (2.0, 2.0, 2.0, 0.5), (0.4, 0.4, 0.1, 0.0), 13)


def _f32(case: PerturbedCase) -> tuple[np.ndarray, np.ndarray]:
    """W0 and W1 as float32: the exact matrices the theorem is applied to."""
    return case.w0().astype(F32), case.w1().astype(F32)


def _holds(chk, dtype, size, scale) -> bool:
    ok = bound_holds(chk.lhs, chk.rhs, dtype, size, scale) | ~chk.premise
    return bool(jnp.all(ok))


def _scale(*ws) -> float:
    return sum(ref.norm2(w) for w in ws)


def _host(tree):
    """Device results as NumPy (call inside the `enable_x64` block that produced them)."""
    return jax.tree.map(np.asarray, tree)


def _ratio(chk) -> np.ndarray:
    return np.asarray(chk.lhs, np.float64) / np.asarray(chk.rhs, np.float64)


def _rotation(phi: float) -> np.ndarray:
    return np.array([[np.cos(phi), -np.sin(phi)], [np.sin(phi), np.cos(phi)]])


# ------------------------------------------------------------------------------------------------ Weyl (Cor 3.4)

W_RATE = with_spectrum(np.random.default_rng(1), 6, 4, [3.0, 2.0, 1.0, 0.5])
# A generic direction plus U_2V_2ᵀ, so that the first-order change of ‖W‖_(2) (Ky Fan link 1) does not cancel.
DIR_RATE = with_spectrum(np.random.default_rng(2), 6, 4, [1.0, 0.8, 0.5, 0.2]) + np.matmul(
    *ref.top_bases(W_RATE, 2)[:1], ref.top_bases(W_RATE, 2)[1].T
)


@functools.cache
def _sweep(dtype: type) -> dict[str, np.ndarray]:
    """All checks along W0 + ε·D, ε = 2^-1 … 2^-16 (k = 2, γ_2 = 1), stacked per check: the shared rate data."""
    rows = []
    with jax.enable_x64(dtype == np.float64):
        for e in SWEEP:
            out = checks_j(W_RATE.astype(dtype), (W_RATE + e * DIR_RATE).astype(dtype), k=2)
            rows.append({name: np.asarray(c.lhs, np.float64) for name, c in out.items()})
    return {name: np.array([r[name] for r in rows]) for name in rows[0]}


def _rate_floor(dtype: type, c: float = 1.0) -> float:
    return c * tol(dtype, 6) * _scale(W_RATE, W_RATE)


@given(case=perturbed_cases(rel=(1e-4, 3.0), relative_to_gap=False))
@example(case=ZERO_E)
@example(case=K_MIN_MINUS_1)
@example(case=REPEATED_TOP)
def test_weyl_holds(case):
    w0, w1 = _f32(case)
    chk = checks_j(w0, w1, k=case.k)["weyl"]
    size, scale = max(w0.shape), _scale(w0, w1)
    assert bool(chk.premise)
    assert _holds(chk, F32, size, scale)
    want = np.max(np.abs(ref.svdvals(w1) - ref.svdvals(w0)))
    assert abs(float(chk.lhs) - want) <= tol(F32, size) * scale
    assert abs(float(chk.rhs) - ref.norm2(ref.f64(w1) - ref.f64(w0))) <= tol(F32, size) * scale


def test_weyl_tight_on_rank_one_top_perturbation():
    w0 = with_spectrum(np.random.default_rng(0), 6, 4, [3.0, 2.0, 1.0, 0.5])
    u, v = ref.top_bases(w0, 1)
    chk = checks_j(w0.astype(F32), (w0 + 0.1 * u @ v.T).astype(F32), k=1)["weyl"]
    assert float(chk.ratio) >= 0.9
    np.testing.assert_allclose(float(chk.ratio), 1.0, rtol=1e-4)


def _jordan_pair(eps_: float, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Nilpotent Jordan block J and J + ε e_n e_1ᵀ, whose eigenvalues have modulus ε^(1/n)."""
    j = np.diag(np.ones(n - 1), 1)
    e = np.zeros((n, n))
    e[-1, 0] = eps_
    return j, j + e


def _jordan_checks(eps_: float) -> tuple[np.ndarray, np.ndarray, dict]:
    j, j1 = _jordan_pair(eps_)
    return j, j1, checks_j(j.astype(F32), j1.astype(F32), k=2)


def test_weyl_premise_removed_eigenvalues_of_non_normal_matrix():
    # Weyl's premise: singular values (or eigenvalues of a *normal* matrix). Drop it: eigenvalues of a Jordan
    # block move by ε^(1/3) ≫ ε = ‖E‖₂, while the singular values still obey the bound.
    for e in (1e-3, 1e-6):
        j, j1, out = _jordan_checks(e)
        chk = out["weyl"]
        eig_shift = np.max(np.abs(ref.eig_moduli(j1) - ref.eig_moduli(j)))
        assert not bool(bound_holds(eig_shift, chk.rhs, F32, 3, _scale(j, j1)))
        assert eig_shift > 5 * float(chk.rhs)
        assert _holds(chk, F32, 3, _scale(j, j1))


def test_weyl_rate_is_linear():
    lhs = _sweep(np.float64)["weyl"]
    assert ref.fit_slope(SWEEP, lhs, _rate_floor(np.float64)) == pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------------------------- Mirsky / Hoffman–Wielandt


@given(case=perturbed_cases(rel=(1e-4, 3.0), relative_to_gap=False))
@example(case=ZERO_E)
@example(case=REPEATED_TOP)
def test_mirsky_holds(case):
    w0, w1 = _f32(case)
    chk = checks_j(w0, w1, k=case.k)["mirsky"]
    size, scale = max(w0.shape), _scale(w0, w1)
    # Compared in the square-root form ‖Δσ‖₂ ≤ ‖ΔW‖_F, whose rounding error is linear in eps·‖W‖.
    assert bool(bound_holds(jnp.sqrt(chk.lhs), jnp.sqrt(chk.rhs), F32, size, scale))
    want = np.linalg.norm(ref.svdvals(w1) - ref.svdvals(w0))
    assert abs(np.sqrt(float(chk.lhs)) - want) <= tol(F32, size) * scale


def test_mirsky_tight_when_perturbation_is_diagonal_in_singular_basis():
    rng = np.random.default_rng(3)
    u, v = orthonormal(rng, 5, 3), orthonormal(rng, 3, 3)
    sigma = np.array([3.0, 2.0, 1.0])
    d = np.array([0.1, -0.05, 0.08])  # keeps the order of σ
    w0, w1 = (u * sigma) @ v.T, (u * (sigma + d)) @ v.T
    chk = checks_j(w0.astype(F32), w1.astype(F32), k=3)["mirsky"]
    assert float(chk.ratio) >= 0.9
    np.testing.assert_allclose(float(chk.ratio), 1.0, rtol=1e-3)


def test_mirsky_premise_removed_eigenvalues_of_non_normal_matrix():
    j, j1, out = _jordan_checks(1e-4)
    chk = out["mirsky"]
    eig_sq = float(np.sum((ref.eig_moduli(j1) - ref.eig_moduli(j)) ** 2))  # 3 ε^(2/3)
    assert eig_sq > 1e3 * float(chk.rhs)
    assert bool(bound_holds(jnp.sqrt(chk.lhs), jnp.sqrt(chk.rhs), F32, 3, _scale(j, j1)))


def test_mirsky_rate_is_quadratic():
    lhs = _sweep(np.float64)["mirsky"]
    assert ref.fit_slope(SWEEP, lhs, _rate_floor(np.float64) ** 2) == pytest.approx(2.0, abs=0.05)


# ----------------------------------------------------------------------------------------- Ky Fan (Cor 3.5)


@given(case=perturbed_cases(rel=(1e-4, 3.0), relative_to_gap=False))
@example(case=ZERO_E)
@example(case=K_MIN_MINUS_1)
def test_ky_fan_chain_holds(case):
    w0, w1 = _f32(case)
    chk = checks_j(w0, w1, k=case.k)["ky_fan"]
    size, scale = max(w0.shape), case.k * _scale(w0, w1)
    assert chk.lhs.shape == (2,)
    assert _holds(chk, F32, size, scale)
    ds = ref.svdvals(w1)[: case.k] - ref.svdvals(w0)[: case.k]
    want = [abs(ds.sum()), np.abs(ds).sum()]
    np.testing.assert_allclose(np.asarray(chk.lhs), want, atol=tol(F32, size) * scale)


def test_ky_fan_both_links_tight_on_aligned_perturbation():
    w0 = with_spectrum(np.random.default_rng(4), 4, 7, [3.0, 2.5, 1.0, 0.5])
    u, v = ref.top_bases(w0, 3)
    chk = checks_j(w0.astype(F32), (w0 + 0.1 * u @ v.T).astype(F32), k=3)["ky_fan"]
    assert np.all(np.asarray(chk.ratio) >= 0.9)
    np.testing.assert_allclose(np.asarray(chk.ratio), 1.0, rtol=1e-4)


def test_ky_fan_premise_removed_eigenvalues_of_non_normal_matrix():
    # Link 1 is the triangle inequality (no premise to drop). Link 2 rests on Weyl for singular values; with
    # eigenvalue moduli of a non-normal matrix in their place it fails by orders of magnitude.
    j, j1, out = _jordan_checks(1e-6)
    chk = out["ky_fan"]
    eig_sum = float(np.sum(np.abs(ref.eig_moduli(j1)[:2] - ref.eig_moduli(j)[:2])))
    assert eig_sum > 100 * float(chk.rhs[1])
    assert _holds(chk, F32, 3, 2 * _scale(j, j1))


def test_ky_fan_rate_is_linear():
    lhs = _sweep(np.float64)["ky_fan"]
    for link in range(2):
        slope = ref.fit_slope(SWEEP, lhs[:, link], 2 * _rate_floor(np.float64))
        assert slope == pytest.approx(1.0, abs=0.05)


# -------------------------------------------------------------------------------- Wedin (Thm 3.3, Lemma F.11)


def _wedin_scale(case: PerturbedCase, w0, w1) -> float:
    """Rounding of computed singular subspaces: about eps·‖W‖/(gap of the perturbed matrix ≥ γ − ‖E‖)."""
    return _scale(w0, w1) / max(case.gap - case.e_norm, case.gap / 10)


@given(case=perturbed_cases(rel=(1e-4, 0.9)))
@example(case=ZERO_E)
@example(case=K_MIN_MINUS_1)
@example(case=REPEATED_TOP)
def test_wedin_rigorous_holds(case):
    w0, w1 = _f32(case)
    chk = checks_j(w0, w1, k=case.k)["rigorous"]
    assume(bool(chk.premise))  # float32 rounding can move ‖ΔW‖₂ across γ_k at ρ ≈ 0.9
    size, scale = max(w0.shape), _wedin_scale(case, w0, w1)
    assert _holds(chk, F32, size, scale)
    assert abs(float(chk.lhs) - ref.wedin_lhs(w0, w1, case.k)) <= tol(F32, size) * scale


@given(case=perturbed_cases(rel=(1e-4, 0.5)))
@example(case=ZERO_E)
@example(case=REPEATED_TOP)
def test_wedin_paper_holds_up_to_cubic_term(case):
    # The paper's form (unperturbed gap, constant 1) is only first-order correct: assert it with the digest's
    # tolerance (‖ΔW‖₂/γ_k)³ (B16), for ‖ΔW‖₂ ≤ γ_k/2.
    w0, w1 = _f32(case)
    chk = checks_j(w0, w1, k=case.k)["paper"]
    assert bool(chk.premise)
    size, scale = max(w0.shape), _wedin_scale(case, w0, w1)
    assert bool(bound_holds(chk.lhs, chk.rhs + chk.rhs**3, F32, size, scale))


def _two_by_two(eps_: float, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Digest §4 family: W0 = diag(1, 0), ΔW = [[-a, b], [b, a]] with (a, b) = ε(cos t, sin t), ‖ΔW‖₂ = ε."""
    a, b = eps_ * np.cos(t), eps_ * np.sin(t)
    w0 = np.diag([1.0, 0.0])
    return w0, w0 + np.array([[-a, b], [b, a]])


def _sin_top(w: np.ndarray) -> float:
    """sin of the angle between e1 and the top left/right singular vectors of a 2×2 matrix (the larger)."""
    u, _, vt = np.linalg.svd(w)
    return max(abs(u[1, 0]), abs(vt[0, 1]))


def _worst_paper_ratio(eps_: float) -> tuple[float, float]:
    """argmax over t of sinΘ/(ε/γ) on the 2×2 family, float64 (grid, then bounded Brent refinement)."""

    def ratio(t: float) -> float:
        return _sin_top(_two_by_two(eps_, t)[1]) / eps_

    grid = np.linspace(0.0, 2 * np.pi, 361)
    i = int(np.argmax([ratio(t) for t in grid]))
    res = minimize_scalar(
        lambda t: -ratio(t),
        bounds=(grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return -float(res.fun), float(res.x)


def test_wedin_paper_form_exceeded_on_2x2_family_rigorous_form_holds():
    eps_list = np.array([0.3, 0.1, 0.03, 0.01, 0.003])
    digest = {
        0.3: (1.054, 5e-4),
        0.1: (1.0051, 5e-5),
        0.03: (1.00045, 5e-6),
    }  # value, half its last digit
    excess = []
    with jax.enable_x64(True):
        for e in eps_list:
            _, t = _worst_paper_ratio(e)
            w0, w1 = _two_by_two(e, t)
            out = checks_j(w0, w1, k=1)
            paper, rigorous = out["paper"], out["rigorous"]
            got = float(paper.ratio)
            assert got == pytest.approx(ref.wedin_lhs(w0, w1, 1) / e, rel=1e-12)
            assert got > 1.0 and bool(paper.premise)  # the printed bound (8) is violated ...
            assert (
                bool(rigorous.premise) and float(rigorous.ratio) <= 1.0
            )  # ... the rigorous one holds
            if e in digest:
                assert got == pytest.approx(digest[e][0], abs=digest[e][1])
            excess.append(got - 1)
    # Measured: ratio − 1 → ε²/2 (an absolute excess sinΘ − ε/γ ≈ ε³/2), so the log-log slope is 2.
    assert ref.fit_slope(eps_list, excess) == pytest.approx(2.0, abs=0.05)
    np.testing.assert_allclose(excess[-1] / eps_list[-1] ** 2, 0.5, rtol=1e-3)


def test_wedin_tight_on_2x2_rotation():
    _, t = _worst_paper_ratio(0.03)
    w0, w1 = _two_by_two(0.03, t)
    with jax.enable_x64(True):
        out = _host(checks_j(w0, w1, k=1))
    for form in ("paper", "rigorous"):
        assert _ratio(out[form]) >= 0.9


def test_wedin_paper_premise_removed_zero_gap_rotates_90_degrees():
    # γ_1 = 0 (W0 = I): an arbitrarily small ΔW = diag(−ε, ε) swaps the top singular direction.
    for e in (1e-1, 1e-3, 1e-6):
        w0 = np.eye(2, dtype=F32)
        w1 = np.diag([1 - e, 1 + e]).astype(F32)
        chk = checks_j(w0, w1, k=1)["paper"]
        assert not bool(chk.premise) and float(chk.rhs) == np.inf
        np.testing.assert_allclose(
            float(chk.lhs), 1.0, atol=tol(F32, 2)
        )  # sinΘ = 1, however small ‖ΔW‖₂


def test_wedin_rigorous_premise_removed_norm_beyond_gap():
    # ‖ΔW‖₂ ≥ γ_k: the subspace can flip (sinΘ = 1); the formula ε/(γ − ε) is negative, i.e. no bound exists.
    w0 = np.diag([1.0, 0.5]).astype(F32)
    w1 = np.diag([0.4, 1.1]).astype(F32)  # ΔW = diag(−0.6, 0.6), γ = 0.5
    chk = checks_j(w0, w1, k=1)["rigorous"]
    assert not bool(chk.premise) and float(chk.rhs) == np.inf
    formula = 0.6 / (0.5 - 0.6)
    assert float(chk.lhs) == pytest.approx(1.0, abs=tol(F32, 2)) and float(chk.lhs) > formula


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wedin_rate_is_linear_until_float_floor(dtype):
    lhs = _sweep(dtype)["rigorous"]
    floor = _rate_floor(dtype) / ref.gap(W_RATE, 2)
    if dtype == np.float32:
        assert (
            np.sum(lhs <= floor) >= 2
        )  # the sweep does reach the float32 floor, and those points are dropped
    assert ref.fit_slope(SWEEP, lhs, floor) == pytest.approx(1.0, abs=0.05)


# ------------------------------------------------------------------------------------- Projectors (Cor F.13)


@given(case=perturbed_cases(rel=(1e-4, 0.9)))
@example(case=ZERO_E)
@example(case=REPEATED_TOP)
def test_projector_identity_holds(case):
    w0, w1 = _f32(case)
    chk = checks_j(w0, w1, k=case.k)["projector"]
    size = max(w0.shape)
    # An identity on the same computed bases: only arithmetic rounding separates the two sides.
    np.testing.assert_allclose(
        np.asarray(chk.lhs), np.asarray(chk.rhs), atol=tol(F32, size), rtol=0
    )
    u0, v0 = ref.top_bases(w0, case.k)
    u1, v1 = ref.top_bases(w1, case.k)
    want = [ref.projector_distance(u0, u1), ref.projector_distance(v0, v1)]
    np.testing.assert_allclose(
        np.asarray(chk.lhs), want, atol=tol(F32, size) * _wedin_scale(case, w0, w1)
    )


def test_projector_identity_tight_on_2x2_rotation():
    phi = 0.3
    w0 = np.diag([2.0, 1.0])
    w1 = _rotation(phi) @ w0  # left subspace rotated by φ, right subspace unchanged
    with jax.enable_x64(True):
        chk = _host(checks_j(w0, w1, k=1)["projector"])
    assert chk.lhs[0] / chk.rhs[0] >= 0.9  # (the right subspace does not move: index 1 is 0/0)
    np.testing.assert_allclose(np.asarray(chk.lhs)[0], np.sin(phi), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(chk.rhs)[0], np.sin(phi), rtol=1e-12)


def test_projector_identity_premise_removed_unequal_dimensions():
    # The identity needs equal dimensions: for span(e1) ⊂ span(e1, e2) all principal angles are 0, yet the
    # projectors differ by a rank-one projector of norm 1.
    e = np.eye(4, dtype=F32)
    assert float(projector_distance_j(e[:, :1], e[:, :2])) == pytest.approx(1.0, abs=tol(F32, 4))
    assert float(jnp.max(angles_j(e[:, :1], e[:, :2]))) <= tol(F32, 4)


def test_projector_rate_is_linear():
    lhs = _sweep(np.float64)["projector"]
    for side in range(2):
        assert ref.fit_slope(SWEEP, lhs[:, side], _rate_floor(np.float64)) == pytest.approx(
            1.0, abs=0.05
        )


# ---------------------------------------------------------------------------------------- Leash (Eq. 7, F.10)


@given(case=leash_cases())
@example(case=LeashCase(2, 3, (0.5, 0.5, 0.5, 0.5, 0.5, 0.5), 0.1, 1e-3, 3))
def test_leash_holds(case):
    dw, s_w = case.dw().astype(F32), case.s_w().astype(F32)
    chk = leash_j(dw, s_w, F32(case.delta()))
    assume(bool(jnp.all(chk.premise)))
    assert _holds(chk, F32, case.m * case.n, 0.0)
    np.testing.assert_allclose(
        chk.lhs[0], np.linalg.norm(ref.f64(dw)), rtol=tol(F32, case.m * case.n)
    )


def _leash_tight_case(t: float) -> tuple[np.ndarray, np.ndarray, float]:
    """ΔW = t·abᵀ (rank one, so ‖ΔW‖₂ = ‖ΔW‖_F) along the μ-eigenvector of S_W, δ_W = ½vecᵀS vec exactly."""
    rng = np.random.default_rng(8)
    x = np.outer(rng.standard_normal(2), rng.standard_normal(3)).reshape(-1)
    q, _ = np.linalg.qr(np.column_stack([x, rng.standard_normal((6, 5))]))
    s_w = (q * np.array([0.2, 1.0, 2.0, 3.0, 4.0, 5.0])[None, :]) @ q.T
    dw = t * (x / np.linalg.norm(x)).reshape(2, 3)
    return dw, s_w, 0.5 * 0.2 * t**2


def test_leash_tight_along_min_curvature_direction():
    with jax.enable_x64(True):
        chk = _host(leash_j(*_leash_tight_case(0.7)))
    assert np.all(_ratio(chk) >= 0.9)
    np.testing.assert_allclose(_ratio(chk), 1.0, rtol=1e-10)


def test_leash_premise_removed_budget_exceeded_or_flat_direction():
    dw, s_w, delta = _leash_tight_case(0.7)
    chk = leash_j(dw.astype(F32), s_w.astype(F32), F32(delta / 4))  # quadratic = 4 δ_W
    assert not bool(jnp.any(chk.premise))
    np.testing.assert_allclose(_ratio(chk), 2.0, rtol=1e-4)  # lhs = 2 × the leash
    flat = np.diag([0.0, 1.0, 1.0, 1.0, 1.0, 1.0]).astype(F32)  # μ_W = 0: ΔW = e_1 costs nothing
    chk = leash_j(np.eye(2, 3, dtype=F32), flat, F32(0.0))
    assert not bool(jnp.any(chk.premise)) and np.all(np.isinf(np.asarray(chk.rhs)))


def test_leash_premise_on_budget_edge_survives_rounding():
    # A step scaled exactly onto its budget (δ_W = ½vecᵀS vec in float64, then stored one float32 ulp *below*)
    # meets the budget up to rounding (issue 11: premises get the bounds' slack); a budget 1e-3 short does not.
    dw, s_w, _ = _leash_tight_case(0.7)
    x = dw.reshape(-1)
    quad = np.float32(0.5 * x @ s_w @ x)
    delta = np.nextafter(quad, np.float32(0))
    chk = leash_j(dw.astype(F32), s_w.astype(F32), delta)
    assert bool(jnp.all(chk.premise))
    assert _holds(chk, F32, dw.size, 0.0)
    chk = leash_j(dw.astype(F32), s_w.astype(F32), F32(quad * (1 - 1e-3)))
    assert not bool(jnp.any(chk.premise))


def test_leash_rate_square_root_of_budget():
    with jax.enable_x64(True):
        rows = [
            (_host(leash_j(*_leash_tight_case(t))), _leash_tight_case(t)[2]) for t in np.sqrt(SWEEP)
        ]
    deltas = np.array([d for _, d in rows])
    lhs = np.array([np.asarray(c.lhs) for c, _ in rows])
    for j in range(2):
        assert ref.fit_slope(deltas, lhs[:, j]) == pytest.approx(0.5, abs=0.01)


def test_chain_to_layer_budget():
    # B22: with δ_W = ½vec(ΔW)ᵀS_W vec(ΔW) and L = √(2δ_W/μ_W), the right-most terms of (8)–(10) bound the
    # Gate II quantities: max|Δσ| ≤ L, Σ(Δσ)² ≤ L², Ky Fan ≤ kL, and sinΘ ≤ L/(γ_k − L) (rigorous form).
    rng = np.random.default_rng(19)
    w0 = with_spectrum(rng, 6, 4, [3.0, 2.0, 1.0, 0.5])  # k = 1, γ_1 = 1
    q = orthonormal(rng, 24, 24)
    s_w = (q * np.geomspace(0.5, 50.0, 24)[None, :]) @ q.T
    for scale in (1e-3, 1e-2, 5e-2):
        dw = scale * rng.standard_normal((6, 4))
        x = dw.reshape(-1)
        delta = 0.5 * x @ s_w @ x * (1 + 1e-3)
        w1 = (w0 + dw).astype(F32)
        dw32 = w1 - w0.astype(F32)  # the ΔW the checks see
        leash = leash_j(dw32, s_w.astype(F32), F32(delta))
        assert bool(jnp.all(leash.premise))
        big_l = float(leash.rhs[0])
        out = checks_j(w0.astype(F32), w1, k=1)
        sc = _scale(w0, w1)
        assert bool(bound_holds(out["weyl"].lhs, big_l, F32, 6, sc))
        assert bool(bound_holds(jnp.sqrt(out["mirsky"].lhs), big_l, F32, 6, sc))
        assert bool(bound_holds(out["ky_fan"].lhs[1], big_l, F32, 6, sc))
        assert big_l < 1.0
        assert bool(bound_holds(out["rigorous"].lhs, big_l / (1.0 - big_l), F32, 6, 4 * sc))


# ------------------------------------------------------------------------------------------ Schur step (F.3)


@given(case=schur_cases())
@example(case=SchurCase(5, 2, (1e-2, 0.1, 1.0, 2.0, 3.0), 1.0, 5))
def test_schur_step_holds(case):
    f, dtheta = case.f(), case.dtheta()
    with jax.enable_x64(True):
        chk = _host(schur_j(f, dtheta, block=case.block))
        s = np.asarray(
            schur_complement_j(f[np.ix_(*(2 * [_perm(case)]))], n_w=len(case.w_indices()))
        )
        cond = np.linalg.cond(f)
        scale = np.linalg.norm(f, 2) * np.sum(dtheta**2) * cond
        assert bool(bound_holds(chk.lhs, chk.rhs, np.float64, case.p, scale))
    assert bool(chk.premise)
    want = ref.schur_complement(f, list(case.w_indices()))
    np.testing.assert_allclose(s, want, atol=tol(np.float64, case.p) * np.linalg.norm(f, 2) * cond)


def _perm(case: SchurCase) -> list[int]:
    w = list(case.w_indices())
    return w + [i for i in range(case.p) if i not in w]


def _schur_tight_case(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Δθ_¬W = −F_¬W,¬W⁻¹ F_¬W,W ΔW: the minimizer, where the step is an equality."""
    f = with_spectrum(np.random.default_rng(9), 5, 5, [3.0, 2.0, 1.0, 0.5, 0.1])
    f = 0.5 * (f @ f.T)
    x_w = scale * np.array([1.0, -0.5])
    x_r = -np.linalg.solve(f[2:, 2:], f[2:, :2] @ x_w)
    return f, np.concatenate([x_w, x_r])


def test_schur_step_tight_at_the_minimizer():
    with jax.enable_x64(True):
        chk = _host(schur_j(*_schur_tight_case(1.0), block=2))
    assert _ratio(chk) >= 0.9
    np.testing.assert_allclose(_ratio(chk), 1.0, rtol=1e-10)


def test_schur_step_premise_removed_indefinite_fisher():
    # F ⪰ 0 dropped: with F_¬W,¬W negative definite the Schur complement is a maximum, not a minimum.
    f = np.diag([1.0, 1.0, -1.0])
    f[0, 2] = f[2, 0] = 0.5
    dtheta = np.array([1.0, 0.0, 0.0])
    with jax.enable_x64(True):
        chk = _host(schur_j(f, dtheta, block=(0, 1)))
    assert not bool(chk.premise)
    assert float(chk.lhs) > 1.1 * float(chk.rhs)  # ½·1.25 > ½·1


def test_schur_step_rate_is_quadratic():
    with jax.enable_x64(True):
        lhs = [float(schur_j(*_schur_tight_case(float(e)), block=2).lhs) for e in SWEEP]
    assert ref.fit_slope(SWEEP, lhs) == pytest.approx(2.0, abs=0.01)


# ---------------------------------------------------------------------------------- Angles and metrics (M11–M13)

ANGLE_SHAPES = ((8, 3, 3), (8, 2, 3))  # (m, ka, kb); (8, 3, 3) is shared with the micro-radian test


@given(shape=st.sampled_from(ANGLE_SHAPES), seed=st.integers(0, 2**32 - 1))
def test_principal_angles_match_scipy(shape, seed):
    m, ka, kb = shape
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, ka)), rng.standard_normal((m, kb))
    assume(min(np.linalg.cond(a), np.linalg.cond(b)) < 1e3)
    with jax.enable_x64(True):
        got64 = np.asarray(angles_j(a, b))
    got32 = np.asarray(angles_j(a.astype(F32), b.astype(F32)))
    np.testing.assert_allclose(got64, sla.subspace_angles(a, b), atol=100 * eps(np.float64))
    want32 = sla.subspace_angles(ref.f64(a.astype(F32)), ref.f64(b.astype(F32)))
    np.testing.assert_allclose(got32, want32, atol=tol(F32, m) * 1e3)
    assert np.all(np.diff(got64) <= 0)  # descending, like SciPy


@pytest.mark.parametrize(
    ("dtype", "atol"), [(np.float64, 1e-12), (np.float32, 4 * eps(np.float32))]
)
def test_principal_angles_accurate_at_micro_radians(dtype, atol):
    rng = np.random.default_rng(10)
    q = orthonormal(rng, 8, 6)
    theta = np.array([1e-6, 2e-6, 5e-6])
    a, b = q[:, :3], q[:, :3] * np.cos(theta) + q[:, 3:] * np.sin(theta)
    a, b = a.astype(dtype), b.astype(dtype)
    with jax.enable_x64(dtype == np.float64):
        got = np.asarray(angles_j(a, b))
    assert got.dtype == dtype
    # Reference: SciPy (arcsin branch for small angles) on float64 copies of the very inputs.
    np.testing.assert_allclose(got, sla.subspace_angles(ref.f64(a), ref.f64(b)), atol=atol, rtol=0)
    if dtype == np.float64:
        np.testing.assert_allclose(np.sort(got), theta, atol=atol, rtol=0)


def test_principal_angles_exact_cases():
    h = sla.hadamard(4).astype(F32)
    np.testing.assert_allclose(
        np.asarray(angles_j(h[:, :2], h[:, 2:])), np.pi / 2, atol=4 * eps(F32)
    )
    a = np.random.default_rng(11).standard_normal((6, 3)).astype(F32)
    assert float(jnp.max(angles_j(a, a))) <= tol(F32, 6)
    phi = 0.7  # a 2-D rotation by φ
    with jax.enable_x64(True):
        got = angles_j(np.eye(3)[:, :1], np.array([[np.cos(phi)], [np.sin(phi)], [0.0]]))
    np.testing.assert_allclose(np.asarray(got), [phi], rtol=1e-14)


def test_left_rotation_inside_top_span_keeps_u_angles_zero():
    w0 = with_spectrum(np.random.default_rng(12), 6, 4, [3.0, 2.0, 1.0, 0.5])
    u, _ = ref.top_bases(w0, 2)
    rot = (
        np.eye(6) + u @ (_rotation(0.4) - np.eye(2)) @ u.T
    )  # rotates within span(U_2), identity elsewhere
    with jax.enable_x64(True):
        u0, u1 = top_k_j(w0, k=2).u, top_k_j(rot @ w0, k=2).u
        assert float(jnp.max(angles_j(u0, u1))) <= tol(np.float64, 6)


def _metrics(case: PerturbedCase, w1: np.ndarray | None = None) -> dict:
    """metrics_j on a case (float32), with numpy top-k bases of W0 and W1 for the sin-theta input."""
    w0 = case.w0().astype(F32)
    w1 = case.w1().astype(F32) if w1 is None else w1
    u0, _ = ref.top_bases(case.w0(), case.k)
    u1, _ = ref.top_bases(case.w1(), case.k)
    return metrics_j(w0, w1, u0.astype(F32), u1.astype(F32), k=case.k)


@given(case=perturbed_cases(rel=(1e-3, 0.9)))
def test_sin_theta_matches_scipy(case):
    u0, _ = ref.top_bases(case.w0(), case.k)
    u1, _ = ref.top_bases(case.w1(), case.k)
    got = float(_metrics(case)["sin_theta"])
    want = ref.sin_theta(u0.astype(F32), u1.astype(F32))
    assert got == pytest.approx(want, abs=tol(F32, case.m))


@given(case=perturbed_cases(rel=(1e-3, 3.0), relative_to_gap=False), c=st.floats(0.0, 3.0))
def test_spectral_shift_matches_reference(case, c):
    w0, w1 = _f32(case)
    got = float(_metrics(case)["shift"])
    assert got == pytest.approx(ref.spectral_shift(w0, w1), abs=tol(F32, case.m) * _scale(w0, w1))
    scaled = float(_metrics(case, (c * ref.f64(w0)).astype(F32))["shift"])
    assert scaled == pytest.approx(abs(c - 1), abs=tol(F32, case.m) * (1 + c))


def test_spectral_shift_zero_under_orthogonal_maps_and_nan_for_zero_base():
    rng = np.random.default_rng(13)
    w0 = rng.standard_normal((5, 3)).astype(F32)
    q, p = orthonormal(rng, 5, 5), orthonormal(rng, 3, 3)
    u = np.eye(5, 3, dtype=F32)
    assert float(metrics_j(w0, (q @ w0 @ p).astype(F32), u, u, k=3)["shift"]) <= tol(F32, 5)
    assert np.isnan(float(metrics_j(np.zeros((5, 3), F32), w0, u, u, k=3)["shift"]))


@given(case=perturbed_cases(rel=(1e-3, 3.0), relative_to_gap=False))
def test_subspace_energy_fraction_matches_reference(case):
    w0, dw = case.w0().astype(F32), case.w1().astype(F32) - case.w0().astype(F32)
    assume(np.linalg.norm(dw) > 0 and case.gap > 0.1)
    out = _metrics(case)
    want = ref.energy_fraction(w0, dw, case.k)
    assert float(out["energy"]) == pytest.approx(want, abs=tol(F32, case.m) * _scale(w0) / case.gap)
    assert float(out["energy_basis"]) == pytest.approx(float(out["energy"]), abs=tol(F32, case.m))


def test_subspace_energy_null_is_k_squared_over_mn():
    m, n, k, draws = 6, 4, 2, 2000
    w0 = with_spectrum(np.random.default_rng(14), m, n, [3.0, 2.0, 1.0, 0.5]).astype(F32)
    u, _, v = top_k_j(w0, k=k)
    dws = np.random.default_rng(15).standard_normal((draws, m, n)).astype(F32)
    fractions = np.asarray(jax.vmap(energy_basis_j, in_axes=(None, None, 0))(u, v, dws))
    null = sp.subspace_energy_null(m, n, k)
    # Beta(k²/2, (mn−k²)/2): variance null(1−null)/(mn/2+1); allow 4 standard errors of the mean.
    sem = np.sqrt(null * (1 - null) / (m * n / 2 + 1) / draws)
    assert abs(fractions.mean() - null) <= 4 * sem
    assert np.isnan(float(energy_basis_j(u, v, jnp.zeros((m, n), F32))))


def test_top_k_and_gap_against_reference():
    w = with_spectrum(np.random.default_rng(15), 5, 3, [3.0, 2.0, 1.0])
    res = top_k_j(w.astype(F32), k=3)
    recon = (np.asarray(res.u, np.float64) * np.asarray(res.s, np.float64)) @ np.asarray(
        res.v, np.float64
    ).T
    assert (
        np.linalg.norm(recon - w, 2) <= tol(F32, 5) * 3.0
    )  # backward error, never entrywise vectors
    np.testing.assert_allclose(np.asarray(res.u).T @ np.asarray(res.u), np.eye(3), atol=tol(F32, 5))
    np.testing.assert_allclose(np.asarray(res.s), ref.svdvals(w), rtol=tol(F32, 5))
    assert float(gap_j(w.astype(F32), k=3)) == pytest.approx(1.0, rel=tol(F32, 5))  # σ_{r+1} := 0
    assert float(gap_j(w.astype(F32), k=1)) == pytest.approx(1.0, rel=tol(F32, 5))


# ------------------------------------------------------------------------------------ dtypes, vmap, bad inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_dtypes(dtype):
    w0 = with_spectrum(np.random.default_rng(16), 6, 4, [3.0, 2.0, 1.0, 0.5]).astype(dtype)
    w1 = (w0 + 0.01).astype(dtype)
    u = np.eye(6, 1, dtype=dtype)
    k = (
        1 if dtype == np.float32 else 2
    )  # reuse the compiled (shape, k, dtype) of the property / rate tests
    with jax.enable_x64(dtype == np.float64):
        checks = [
            *checks_j(w0, w1, k=k).values(),
            leash_j(w0[:2, :3], np.eye(6, dtype=dtype), dtype(1.0)),
            schur_j(np.eye(5, dtype=dtype), np.ones(5, dtype), block=2),
        ]
        for chk in checks:
            assert chk.lhs.dtype == dtype and chk.rhs.dtype == dtype and chk.premise.dtype == bool
        outs = [
            *metrics_j(w0, w1, u, u, k=1).values(),
            angles_j(w0[:, :3], w1[:, :3]),
            top_k_j(w0, k=2).u,
        ]
        for out in outs:
            assert out.dtype == dtype


def test_half_precision_inputs_are_upcast_to_float32():
    w = jnp.asarray(
        with_spectrum(np.random.default_rng(17), 6, 4, [3.0, 2.0, 1.0, 0.5]), jnp.bfloat16
    )
    assert top_k_j(w, k=2).s.dtype == jnp.float32
    assert sp.weyl_check(w, w).lhs.dtype == jnp.float32


def test_checks_vmap_over_a_batch():
    rng = np.random.default_rng(18)
    w0 = rng.standard_normal((4, 6, 4)).astype(F32)
    w1 = (w0 + 1e-2 * rng.standard_normal((4, 6, 4))).astype(F32)
    batched = jax.jit(jax.vmap(lambda a, b: sp.wedin_check(a, b, k=1)))(w0, w1)
    assert batched.lhs.shape == (4,) and batched.premise.shape == (4,)
    single = checks_j(w0[2], w1[2], k=1)["rigorous"]
    np.testing.assert_allclose(batched.lhs[2], single.lhs, rtol=tol(F32, 6))


@pytest.mark.parametrize("k", [0, 5, -1])
def test_k_out_of_range_raises(k):
    w = np.ones((6, 4), F32)
    with pytest.raises(ValueError, match="k must be"):
        sp.top_k(w, k)
    with pytest.raises(ValueError, match="k must be"):
        sp.wedin_check(w, w, k)


def test_non_integer_k_raises():
    # ValueError from threegate; under pytest the jaxtyping hook may reject the `int` annotation first.
    with pytest.raises((TypeError, ValueError), match="k"):
        sp.top_k(np.ones((6, 4), F32), 1.0)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(6, 4\) and \(4, 6\)"):
        sp.weyl_check(np.ones((6, 4), F32), np.ones((4, 6), F32))
    with pytest.raises(ValueError, match=r"\(6, 2\) and \(5, 2\)"):
        sp.principal_angles(np.ones((6, 2), F32), np.ones((5, 2), F32))
    with pytest.raises(ValueError, match=r"\(36, 36\)"):
        sp.leash_check(np.ones((6, 6), F32), np.eye(6, dtype=F32), 1.0)


def test_wrong_rank_dtype_and_options_raise():
    with pytest.raises(ValueError, match="2-D"):
        sp.spectral_gap(np.ones((2, 3, 4), F32), 1)
    with pytest.raises(ValueError, match="2-D"):
        sp.top_k(np.ones(4, F32), 1)
    with pytest.raises(TypeError, match="floating"):
        sp.top_k(np.ones((3, 3), np.int32), 1)
    with pytest.raises(ValueError, match="form"):
        sp.wedin_check(np.eye(3, dtype=F32), np.eye(3, dtype=F32), 1, form="tight")
    with pytest.raises(ValueError, match="block"):
        sp.schur_check(np.eye(3, dtype=F32), np.ones(3, F32), (0, 0))
    with pytest.raises(ValueError, match="block size"):
        sp.schur_check(np.eye(3, dtype=F32), np.ones(3, F32), 4)
    with pytest.raises(ValueError, match="dtheta"):
        sp.schur_check(np.eye(3, dtype=F32), np.ones(4, F32), 1)
    with pytest.raises(ValueError, match="n_w"):
        sp.schur_complement(np.eye(3, dtype=F32), 0)
    with pytest.raises(ValueError, match="k must be"):
        sp.subspace_energy_null(3, 4, 4)

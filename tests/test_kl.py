"""Gate I library: threegate.kl, threegate.toy.policy, threegate.toy.autoregressive against float64 NumPy/SciPy references.

Every bound gets: holds (hypothesis, drawing the premises), tight (extremal case, ratio >= 0.9), fails without its
premise, and its rate (log-log slope). Shapes come from small fixed sets; jitted functions are built once here.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from scipy import stats
from scipy.special import logsumexp, rel_entr

from threegate._numerics import bound_holds, tol
from threegate.errors import NonFiniteError
from threegate.kl import (
    gibbs_tilt,
    kl_categorical,
    kl_k1,
    kl_k3,
    pinsker_bound,
    pinsker_check,
    tv_categorical,
)
from threegate.toy.autoregressive import (
    ar_kl_exact,
    ar_log_ratios,
    ar_sample,
    clip_kl_bound,
    clipped_ratio_check,
    ratio_band_perturbation,
)
from threegate.toy.policy import (
    LogLinearPolicy,
    TanhPolicy,
    fisher,
    fisher_hessian_form,
    kl_quadratic,
    log_linear_policy,
    log_probs,
    m_projection,
    policy_kl,
)

kl_jit = jax.jit(kl_categorical)
tv_jit = jax.jit(tv_categorical)
k1_jit = jax.jit(kl_k1)
k3_jit = jax.jit(kl_k3)
tilt_jit = jax.jit(gibbs_tilt)
mproj_jit = jax.jit(m_projection)
policy_kl_jit = jax.jit(policy_kl)
fisher_jit = jax.jit(fisher)
fisher_h_jit = jax.jit(fisher_hessian_form)
ar_exact_jit = jax.jit(lambda p, q, e: clipped_ratio_check(p, q, e))
ar_kl_jit = jax.jit(ar_kl_exact)
pinsker_jit = jax.jit(pinsker_check)
ar_sample_jit = jax.jit(ar_sample, static_argnums=2)
ar_log_ratios_jit = jax.jit(ar_log_ratios)
ar_mc_jit = jax.jit(clipped_ratio_check)

SIZES = (2, 7, 16)
A_LL, P_LL = 8, 3  # log-linear test class: outcomes, parameters
T_AR, N_AR = 4, 3  # autoregressive toy: steps, vocabulary


def _softmax64(z: np.ndarray) -> np.ndarray:
    return np.exp(z - logsumexp(z, axis=-1, keepdims=True))


def _logits(seed: int, a: int, scale: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=a) * scale


def _x64(f):
    """Run `f` with float64 enabled (scoped)."""

    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            return f(*args, **kwargs)

    wrapped.__name__ = f.__name__
    wrapped.__doc__ = f.__doc__
    return wrapped


# ---------------------------------------------------------------- categorical KL / TV


@given(
    seed=st.integers(0, 2**31 - 1), a=st.sampled_from(SIZES), scale=st.sampled_from([0.1, 1.0, 5.0])
)
@_x64
def test_kl_matches_rel_entr(seed, a, scale):
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=a) * scale, rng.normal(size=a) * scale
    ref = rel_entr(_softmax64(p), _softmax64(q)).sum()
    got = float(kl_jit(jnp.asarray(p), jnp.asarray(q)))
    assert got == pytest.approx(ref, rel=1e-10, abs=tol(np.float64, a))


@_x64
def test_kl_near_equal_is_accurate():
    """The cancellation-free branch: KL ~ 1e-14 to ~1e-8 relative, against an extended-precision reference."""
    q = _logits(1, 10, 3.0)
    for h in (1e-3, 1e-5, 1e-7):
        p = q + h * np.random.default_rng(2).normal(size=10)
        lp = p.astype(np.longdouble) - np.log(np.exp(p.astype(np.longdouble)).sum())
        lq = q.astype(np.longdouble) - np.log(np.exp(q.astype(np.longdouble)).sum())
        d = lp - lq
        # KL(p||q) = E_q[psi(d)], psi(d) = d e^d - e^d + 1 >= 0 (uses E_q e^d = 1): no cancellation in the sum
        ref = float((np.exp(lq) * (d * np.exp(d) - np.expm1(d))).sum())
        got = float(kl_jit(jnp.asarray(p), jnp.asarray(q)))
        assert got == pytest.approx(ref, rel=1e-6)
        textbook = rel_entr(_softmax64(p), _softmax64(q)).sum()
        assert abs(got / ref - 1) <= abs(textbook / ref - 1) + 1e-12


@_x64
def test_kl_zero_probability_conventions():
    inf = -np.inf
    p = jnp.asarray([0.0, inf, 1.0])
    assert float(kl_jit(p, jnp.asarray([0.0, 1.0, inf]))) == np.inf  # p > 0 = q
    pz, qz = np.array([0.0, inf, 1.0]), np.array([0.3, 2.0, -1.0])
    ref = rel_entr(_softmax64(pz), _softmax64(qz)).sum()  # 0 log 0 = 0
    assert float(kl_jit(jnp.asarray(pz), jnp.asarray(qz))) == pytest.approx(ref, rel=1e-13)
    assert float(kl_jit(p, p)) == 0.0


@given(seed=st.integers(0, 2**31 - 1), a=st.sampled_from(SIZES))
@_x64
def test_tv_by_hand_symmetric_and_bounded(seed, a):
    rng = np.random.default_rng(seed)
    p, q = rng.normal(size=a) * 2, rng.normal(size=a) * 2
    ref = 0.5 * np.abs(_softmax64(p) - _softmax64(q)).sum()
    got = float(tv_jit(jnp.asarray(p), jnp.asarray(q)))
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-15)
    assert got == pytest.approx(float(tv_jit(jnp.asarray(q), jnp.asarray(p))), abs=1e-15)
    assert 0.0 <= got <= 1.0


def test_kl_float32_dtype_and_batch():
    p = jnp.asarray(np.random.default_rng(3).normal(size=(4, 5)), dtype=jnp.float32)
    q = jnp.asarray(np.random.default_rng(4).normal(size=(4, 5)), dtype=jnp.float32)
    out = kl_jit(p, q)
    assert out.shape == (4,) and out.dtype == jnp.float32
    ref = rel_entr(
        _softmax64(np.asarray(p, np.float64)), _softmax64(np.asarray(q, np.float64))
    ).sum(-1)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=tol(np.float32, 5))


# ---------------------------------------------------------------- Pinsker (holds / tight / fails / rate)


@given(
    seed=st.integers(0, 2**31 - 1),
    a=st.sampled_from(SIZES),
    scale=st.sampled_from([0.01, 1.0, 4.0]),
)
@example(seed=0, a=2, scale=0.01)
@_x64
def test_pinsker_holds(seed, a, scale):
    rng = np.random.default_rng(seed)
    chk = pinsker_jit(
        jnp.asarray(rng.normal(size=a) * scale), jnp.asarray(rng.normal(size=a) * scale)
    )
    assert bool(chk.premise)
    assert bool(bound_holds(chk.lhs, chk.rhs, np.float64, a))


@_x64
def test_pinsker_tight_for_near_equal_two_point():
    for delta in (1e-2, 1e-4):
        p = jnp.log(jnp.asarray([0.5 + delta, 0.5 - delta]))
        q = jnp.log(jnp.asarray([0.5, 0.5]))
        assert float(pinsker_jit(p, q).ratio) >= 0.99


@_x64
def test_pinsker_fails_with_wrong_constant_or_reversed_direction():
    p = jnp.log(jnp.asarray([0.5 + 1e-2, 0.5 - 1e-2]))
    q = jnp.log(jnp.asarray([0.5, 0.5]))
    tv, kl = float(tv_jit(p, q)), float(kl_jit(p, q))
    assert tv > np.sqrt(kl / 8)  # constant 1/8 in place of 1/2: false
    pf, qf = jnp.log(jnp.asarray([1 - 1e-9, 1e-9])), jnp.log(jnp.asarray([1e-6, 1 - 1e-6]))
    assert (
        float(kl_jit(pf, qf)) > 2 * float(tv_jit(pf, qf)) ** 2 * 5
    )  # KL <= 2 TV^2 (reversed) fails badly


@_x64
def test_pinsker_rate_tv_is_order_sqrt_kl():
    q = jnp.log(jnp.asarray([0.5, 0.5]))
    deltas = 2.0 ** -np.arange(2, 12)
    tvs = [float(tv_jit(jnp.log(jnp.asarray([0.5 + d, 0.5 - d])), q)) for d in deltas]
    kls = [float(kl_jit(jnp.log(jnp.asarray([0.5 + d, 0.5 - d])), q)) for d in deltas]
    assert stats.linregress(np.log(kls), np.log(tvs)).slope == pytest.approx(0.5, abs=0.02)
    assert float(pinsker_bound(jnp.asarray(0.5))) == pytest.approx(0.5)


# ---------------------------------------------------------------- k1 / k3 estimators


@given(lp=st.floats(-30, 0), lr=st.floats(-30, 0))
@example(lp=0.0, lr=-1e-9)
@_x64
def test_k3_nonnegative_and_matches_reference(lp, lr):
    got = float(k3_jit(jnp.asarray(lp), jnp.asarray(lr)))
    d = lr - lp
    assert got >= 0.0
    ref = d * d / 2 + d**3 / 6 + d**4 / 24 + d**5 / 120 if abs(d) < 1e-3 else np.expm1(d) - d
    assert got == pytest.approx(ref, rel=1e-12, abs=1e-300)


@_x64
def test_k1_k3_monte_carlo_unbiased():
    """Both estimators average to KL(pi||pi_ref) within 5 CLT standard errors; k1 takes negative values."""
    rng = np.random.default_rng(5)
    pi_l, ref_l = rng.normal(size=6), rng.normal(size=6)
    exact = rel_entr(_softmax64(pi_l), _softmax64(ref_l)).sum()
    n = 100_000
    y = jax.random.categorical(jax.random.key(0), jnp.asarray(pi_l), shape=(n,))
    lp = jax.nn.log_softmax(jnp.asarray(pi_l))[y]
    lr = jax.nn.log_softmax(jnp.asarray(ref_l))[y]
    for est in (np.asarray(k1_jit(lp, lr)), np.asarray(k3_jit(lp, lr))):
        assert abs(est.mean() - exact) <= 5 * est.std() / np.sqrt(n)
    assert np.asarray(k1_jit(lp, lr)).min() < 0 <= np.asarray(k3_jit(lp, lr)).min()


def test_k1_k3_errors():
    with pytest.raises(ValueError, match="same shape"):
        kl_k1(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(TypeError, match="dtype"):
        kl_k3(jnp.zeros(3, jnp.float32), jnp.zeros(3, jnp.float16))
    with pytest.raises(TypeError, match="floating"):
        kl_k3(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32))


# ---------------------------------------------------------------- Gibbs tilt (Lemma F.2)


@given(
    seed=st.integers(0, 2**31 - 1),
    a=st.sampled_from(SIZES),
    beta=st.sampled_from([0.05, 1.0, 30.0]),
)
@_x64
def test_gibbs_tilt_closed_form_and_variational(seed, a, beta):
    rng = np.random.default_rng(seed)
    q, r = rng.normal(size=a), rng.normal(size=a)
    got = np.exp(np.asarray(tilt_jit(jnp.asarray(q), jnp.asarray(r), beta)))
    ref = _softmax64(q) * np.exp(r / beta)
    ref /= ref.sum()
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-300)
    pi = _softmax64(rng.normal(size=a))

    def objective(x):
        return x @ r - beta * rel_entr(x, _softmax64(q)).sum()

    assert objective(pi) <= objective(got) + tol(np.float64, a) * (1 + abs(objective(got)))


def test_gibbs_tilt_errors():
    with pytest.raises(ValueError, match="beta"):
        gibbs_tilt(jnp.zeros(3), jnp.zeros(3), 0.0)
    with pytest.raises(ValueError, match="same shape"):
        gibbs_tilt(jnp.zeros(3), jnp.zeros(2), 1.0)
    with pytest.raises(NonFiniteError):
        gibbs_tilt(jnp.asarray([0.0, jnp.nan, 1.0]), jnp.zeros(3), 1.0)


def test_logits_errors():
    with pytest.raises(NonFiniteError):
        kl_categorical(jnp.asarray([0.0, jnp.inf]), jnp.zeros(2))
    with pytest.raises(NonFiniteError, match="row"):
        tv_categorical(jnp.asarray([-jnp.inf, -jnp.inf]), jnp.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        kl_categorical(jnp.zeros(3), jnp.zeros(4))
    with pytest.raises(ValueError, match="a >= 1"):
        kl_categorical(jnp.zeros(()), jnp.zeros(()))
    with pytest.raises(ValueError, match="p <= a - 1"):
        log_linear_policy(jnp.zeros((3, 3)))
    # under jit, non-finite logits cannot raise: documented NaN propagation
    assert np.isnan(float(kl_jit(jnp.asarray([0.0, jnp.nan]), jnp.zeros(2))))


# ---------------------------------------------------------------- policy class: Fisher, M-projection, Prop 3.1


def _loglinear(seed: int) -> tuple[LogLinearPolicy, jax.Array]:
    rng = np.random.default_rng(seed)
    return log_linear_policy(jnp.asarray(rng.normal(size=(A_LL, P_LL)))), jnp.asarray(
        rng.normal(size=P_LL)
    )


@_x64
def test_fisher_covariance_equals_hessian_form_and_closed_form():
    pol, th = _loglinear(7)
    pi = _softmax64(np.asarray(pol.logits(th)))
    phi = np.asarray(pol.features)
    ref = phi.T @ (np.diag(pi) - np.outer(pi, pi)) @ phi
    np.testing.assert_allclose(np.asarray(fisher_jit(pol, th)), ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(fisher_h_jit(pol, th)), ref, rtol=1e-12, atol=1e-14)
    rng = np.random.default_rng(8)
    tanh = TanhPolicy(*(jnp.asarray(rng.normal(size=s)) for s in [(6, 3), (6, 4), (4, 3), (4,)]))
    th3 = jnp.asarray(rng.normal(size=3))
    np.testing.assert_allclose(
        np.asarray(fisher_jit(tanh, th3)),
        np.asarray(fisher_h_jit(tanh, th3)),
        rtol=1e-11,
        atol=1e-13,
    )
    assert np.linalg.eigvalsh(np.asarray(fisher_jit(pol, th)))[0] > 0  # minimal parametrization


@given(seed=st.integers(0, 2**31 - 1), beta=st.sampled_from([0.3, 1.0, 10.0]))
@_x64
def test_m_projection_moment_matching_and_pythagorean_identity(seed, beta):
    """Prop 3.1 for an exponential family: D(q~||pi) = D(q~||pi+) + D(pi+||pi) exactly, so the ratio is <= 1."""
    pol, th = _loglinear(seed)
    reward = jnp.asarray(np.random.default_rng(seed + 1).normal(size=A_LL))
    target = tilt_jit(pol.logits(th), reward, beta)
    mp = mproj_jit(pol, th, target)
    assert bool(mp.converged) and bool(mp.hess_pd)
    phi = np.asarray(pol.features)
    pi_plus = np.exp(np.asarray(log_probs(pol, mp.theta)))
    np.testing.assert_allclose(pi_plus @ phi, np.exp(np.asarray(target)) @ phi, atol=1e-13)
    kappa = float(kl_jit(target, pol.logits(th)))
    resid = float(kl_jit(target, pol.logits(mp.theta)))
    step = float(policy_kl_jit(pol, mp.theta, th))
    assert kappa == pytest.approx(resid + step, rel=1e-12, abs=1e-15)
    assert bool(bound_holds(step, kappa, np.float64, A_LL))


@_x64
def test_prop_3_1_tight_when_target_in_family_and_fails_for_overshoot():
    pol, th = _loglinear(11)
    reward = pol.features @ jnp.asarray([0.7, -0.3, 1.1])  # R in span(Phi): q~ in the family
    target = tilt_jit(pol.logits(th), reward, 1.0)
    mp = mproj_jit(pol, th, target)
    kappa = float(kl_jit(target, pol.logits(th)))
    assert float(policy_kl_jit(pol, mp.theta, th)) / kappa >= 0.999
    over = float(
        policy_kl_jit(pol, th + 3 * (mp.theta - th), th)
    )  # not the M-projection: premise removed
    assert over > kappa


@_x64
def test_kl_quadratic_expansion_rate():
    """Lemma F.5: KL(pi_{theta+t d} || pi_theta) - t^2/2 d^T F d = O(t^3): log-log slope ~3."""
    pol, th = _loglinear(13)
    d = jnp.asarray([0.6, -0.8, 0.0])
    f = fisher_jit(pol, th)
    ts = 2.0 ** -np.arange(2, 14)
    res = [
        abs(float(policy_kl_jit(pol, th + t * d, th)) - float(kl_quadratic(f, t * d))) for t in ts
    ]
    assert stats.linregress(np.log(ts), np.log(res)).slope == pytest.approx(3.0, abs=0.1)


# ---------------------------------------------------------------- Lemma F.9 (clipped-ratio leash)


def _ar_pair(seed: int, eps: float) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(seed)
    base = jnp.asarray(rng.normal(size=(T_AR, N_AR, N_AR)))
    return ratio_band_perturbation(base, jnp.asarray(rng.normal(size=base.shape)), eps), base


@_x64
def test_ar_kl_exact_matches_enumeration():
    plus, base = _ar_pair(0, 0.2)
    lp, lq = np.asarray(jax.nn.log_softmax(plus, -1)), np.asarray(jax.nn.log_softmax(base, -1))
    ref = 0.0
    for ys in itertools.product(range(N_AR), repeat=T_AR):
        prev, a, b = 0, 0.0, 0.0
        for t, y in enumerate(ys):
            a, b, prev = a + lp[t, prev, y], b + lq[t, prev, y], y
        ref += np.exp(a) * (a - b)
    assert float(ar_kl_jit(plus, base)) == pytest.approx(ref, rel=1e-12)
    toks = ar_sample_jit(jax.random.key(1), plus, 5)
    lr = ar_log_ratios_jit(plus, base, toks)
    assert lr.shape == (5, T_AR) and toks.dtype == jnp.int32


@given(seed=st.integers(0, 2**31 - 1), eps=st.sampled_from([0.5, 0.1, 0.01]))
@_x64
def test_clipped_ratio_bound_holds(seed, eps):
    plus, base = _ar_pair(seed, eps)
    chk = ar_exact_jit(plus, base, eps)
    assert bool(chk.premise)
    assert bool(bound_holds(chk.lhs, chk.rhs, np.float64, T_AR * N_AR))


@_x64
def test_clipped_ratio_premise_on_band_edge_seed_6674():
    """Regression (issue 11): the `thorough` profile drew seed 6674, eps = 0.5. `ratio_band_perturbation` puts the
    smallest ratio exactly on 1 - eps; log-softmax renormalisation leaves it at 0.5 - 2.8e-15, which a premise
    without the bounds' rounding slack rejected."""
    eps = 0.5
    plus, base = _ar_pair(6674, eps)
    ratios = np.exp(np.asarray(jax.nn.log_softmax(plus, -1) - jax.nn.log_softmax(base, -1)))
    assert (
        ratios.min() < 1 - eps
    )  # the reproduction: rounding moved the edge ratio just outside the band
    assert (1 - eps) - ratios.min() < tol(np.float64, N_AR)  # ... by rounding only
    chk = ar_exact_jit(plus, base, eps)
    assert bool(chk.premise)
    assert bool(bound_holds(chk.lhs, chk.rhs, np.float64, T_AR * N_AR))
    # a band narrower by 1e-9 (far above rounding) must still reject the same pair, on both estimates
    narrower = eps * (1 - 1e-9)
    assert not bool(ar_exact_jit(plus, base, narrower).premise)
    toks = ar_sample_jit(jax.random.key(6674), plus, 4096)
    assert bool(ar_mc_jit(plus, base, eps, toks).premise)


@_x64
def test_clipped_ratio_bound_tight_on_batch_and_broken_without_premise():
    eps, mass = 0.02, 1e-13
    w = np.full((T_AR, N_AR, N_AR - 1), 1.0 / (N_AR - 1))
    pi_s = (1 - mass) / (1 + eps)
    pi = np.concatenate([w * pi_s, np.full((T_AR, N_AR, 1), 1 - pi_s)], -1)
    plus = np.concatenate([w * pi_s * (1 + eps), np.full((T_AR, N_AR, 1), mass)], -1)
    toks = ar_sample_jit(jax.random.key(2), jnp.log(jnp.asarray(plus)), 512)
    chk = ar_mc_jit(jnp.log(jnp.asarray(plus)), jnp.log(jnp.asarray(pi)), eps, toks)
    assert bool(chk.premise) and 0.9 <= float(chk.ratio) <= 1.0
    other = jnp.asarray(np.random.default_rng(3).normal(size=(T_AR, N_AR, N_AR)) * 2)
    bad = ar_exact_jit(other, jnp.asarray(np.log(pi)), eps)
    assert not bool(bad.premise) and float(bad.lhs) > float(bad.rhs)


@_x64
def test_clipped_ratio_kl_scales_as_eps_squared():
    rng = np.random.default_rng(4)
    base = jnp.asarray(rng.normal(size=(T_AR, N_AR, N_AR)))
    adv = jnp.asarray(rng.normal(size=base.shape))
    epss = 2.0 ** -np.arange(2, 10)
    kls = [float(ar_kl_jit(ratio_band_perturbation(base, adv, e), base)) for e in epss]
    assert stats.linregress(np.log(epss), np.log(kls)).slope == pytest.approx(2.0, abs=0.05)
    assert float(clip_kl_bound(4, jnp.asarray(0.1))) == pytest.approx(-4 * np.log(0.9))


def test_autoregressive_errors():
    # jaxtyping's runtime check (active under pytest) raises its TypeError subclass first; plain use: ValueError
    with pytest.raises((ValueError, TypeError), match=r"T, N, N|T N N"):
        ar_kl_exact(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3, 4)))
    with pytest.raises((ValueError, TypeError), match=r"same shape|T N N"):
        ar_kl_exact(jnp.zeros((2, 3, 3)), jnp.zeros((3, 3, 3)))
    with pytest.raises((ValueError, TypeError), match=r"tokens"):
        ar_log_ratios(jnp.zeros((2, 3, 3)), jnp.zeros((2, 3, 3)), jnp.zeros((4, 5), jnp.int32))

"""Losses of the RL lab against hand-computed float64 NumPy references (threegate.lm.losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate._numerics import TEST_RTOL
from threegate.lm.losses import (
    DEFAULT_ADV_EPS,
    batch_normalized_advantages,
    clipped_pg_loss,
    dynamic_sampling_mask,
    group_advantages,
    masked_mean,
    sft_loss,
    token_kl,
)

RTOL = TEST_RTOL["float32"] * 10

group_adv_jit = jax.jit(group_advantages)
batch_adv_jit = jax.jit(batch_normalized_advantages)
pg_jit = jax.jit(
    clipped_pg_loss,
    static_argnames=("eps_low", "eps_high", "normalization", "beta", "kl_estimator"),
)


def np_masked_mean(x, mask, normalization, w=None):
    x, mask = np.asarray(x, np.float64), np.asarray(mask, bool)
    w = np.ones(x.shape[0]) if w is None else np.asarray(w, np.float64)
    rows = [x[i][mask[i]] for i in range(x.shape[0])]
    if normalization == "token":
        num = sum(w[i] * r.sum() for i, r in enumerate(rows))
        return num / max(sum(w[i] * r.size for i, r in enumerate(rows)), 1)
    num = sum(w[i] * (r.sum() / max(r.size, 1)) for i, r in enumerate(rows))
    return num / max(w.sum(), 1)


def test_group_advantages_match_numpy(rng):
    r = rng.choice([-1.0, 1.0], size=(6, 4)).astype(np.float32)
    r[0] = 1.0  # an all-equal group: advantage 0
    got = np.asarray(group_adv_jit(r))
    r64 = r.astype(np.float64)
    want = (r64 - r64.mean(1, keepdims=True)) / (
        r64.std(1, ddof=1, keepdims=True) + DEFAULT_ADV_EPS
    )
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL)
    assert np.all(got[0] == 0)
    assert got.dtype == np.float32
    # one correct out of four: the hand value (1 - 1/4 · 1 - 3/4 · (-1)) / std = 1.5 / 1.0
    hand = np.asarray(group_adv_jit(np.array([[1.0, -1.0, -1.0, -1.0]], np.float32)))
    np.testing.assert_allclose(hand[0, 0], 1.5 / (1.0 + DEFAULT_ADV_EPS), rtol=RTOL)


def test_batch_normalized_advantages_match_numpy(rng):
    r = rng.normal(size=12).astype(np.float32)
    got = np.asarray(batch_adv_jit(r))
    r64 = r.astype(np.float64)
    np.testing.assert_allclose(
        got, (r64 - r64.mean()) / (r64.std() + DEFAULT_ADV_EPS), rtol=RTOL, atol=RTOL
    )
    np.testing.assert_allclose(got.mean(), 0.0, atol=RTOL)


def test_dynamic_sampling_drops_uniform_groups():
    r = np.array([[1, 1, 1], [-1, 1, -1], [-1, -1, -1], [0, 0, 1]], np.float32)
    np.testing.assert_array_equal(np.asarray(dynamic_sampling_mask(r)), [False, True, False, True])


@pytest.mark.parametrize("adv", [1.0, -1.0])
def test_clip_boundaries(adv):
    """Ratios just inside / outside [1 - eps_low, 1 + eps_high]: value, clip fraction and zero gradient."""
    el, eh, d = 0.2, 0.28, 1e-3
    ratios = np.array([1 - el - d, 1 - el + d, 1 + eh - d, 1 + eh + d, 1.0])
    logp = jnp.asarray(np.log(ratios)[None, :], jnp.float32)
    zeros = jnp.zeros_like(logp)
    a = jnp.full(logp.shape, adv, jnp.float32)
    mask = jnp.ones(logp.shape, bool)
    out = pg_jit(logp, zeros, a, mask, eps_low=el, eps_high=eh, normalization="token")
    r64 = np.exp(np.log(ratios))
    surrogate = np.minimum(r64 * adv, np.clip(r64, 1 - el, 1 + eh) * adv)
    np.testing.assert_allclose(float(out.loss), -surrogate.mean(), rtol=RTOL)
    clipped = [False, False, False, True, False] if adv > 0 else [True, False, False, False, False]
    np.testing.assert_allclose(float(out.clip_frac), np.mean(clipped), rtol=RTOL)
    grad = jax.grad(
        lambda lp: (
            clipped_pg_loss(lp, zeros, a, mask, eps_low=el, eps_high=eh, normalization="token").loss
        )
    )(logp)
    g = np.asarray(grad)[0]
    np.testing.assert_array_equal(g == 0, clipped)
    # unclipped tokens: d(-r·A/T)/d logp = -r·A/T
    np.testing.assert_allclose(
        g[~np.array(clipped)], -(r64 * adv / 5)[~np.array(clipped)], rtol=1e-5
    )


def test_token_vs_sequence_normalization(rng):
    """DAPO divides by the total token count, GRPO averages per-sequence means (different for ragged lengths)."""
    b, n = 4, 6
    logp = jnp.asarray(rng.normal(scale=0.1, size=(b, n)) - 1.0, jnp.float32)
    old = logp + jnp.asarray(rng.normal(scale=0.05, size=(b, n)), jnp.float32)
    adv = jnp.asarray(np.repeat(rng.normal(size=(b, 1)), n, axis=1), jnp.float32)
    lengths = np.array([1, 3, 6, 2])
    mask = jnp.asarray(np.arange(n)[None, :] < lengths[:, None])
    r = np.exp(np.asarray(logp, np.float64) - np.asarray(old, np.float64))
    a64 = np.asarray(adv, np.float64)
    s = np.minimum(r * a64, np.clip(r, 0.8, 1.28) * a64)
    for norm in ("token", "sequence"):
        out = pg_jit(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, normalization=norm)
        np.testing.assert_allclose(float(out.pg_loss), -np_masked_mean(s, mask, norm), rtol=1e-5)
    tok = float(
        pg_jit(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, normalization="token").loss
    )
    seq = float(
        pg_jit(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, normalization="sequence").loss
    )
    assert abs(tok - seq) > 1e-3
    # token normalisation, by hand: the sum over all real tokens / 12 tokens
    np.testing.assert_allclose(-tok, (s * np.asarray(mask)).sum() / lengths.sum(), rtol=1e-5)


def test_seq_weight_removes_dropped_groups_from_denominator(rng):
    x = rng.normal(size=(4, 3)).astype(np.float32)
    mask = np.ones((4, 3), bool)
    w = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
    for norm in ("token", "sequence"):
        got = float(masked_mean(x, mask, norm, w))
        np.testing.assert_allclose(got, x[[0, 2]].astype(np.float64).mean(), rtol=1e-6)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_penalty_term(rng, estimator):
    b, n = 3, 4
    logp = jnp.asarray(-rng.uniform(0.1, 2.0, size=(b, n)), jnp.float32)
    ref = jnp.asarray(-rng.uniform(0.1, 2.0, size=(b, n)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(b, n)) < 0.8).at[:, 0].set(True)
    adv = jnp.zeros((b, n), jnp.float32)
    beta = 0.05
    out = pg_jit(
        logp,
        logp,
        adv,
        mask,
        logp_ref=ref,
        beta=beta,
        kl_estimator=estimator,
        normalization="sequence",
    )
    d = np.asarray(ref, np.float64) - np.asarray(logp, np.float64)
    k = -d if estimator == "k1" else np.expm1(d) - d
    want = np_masked_mean(k, mask, "sequence")
    np.testing.assert_allclose(float(out.kl), want, rtol=1e-5)
    np.testing.assert_allclose(float(out.loss), beta * want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(token_kl(logp, ref, estimator)), k, rtol=1e-5, atol=1e-7)


def test_sft_loss_matches_numpy(rng):
    logp = -rng.uniform(0, 3, size=(3, 5)).astype(np.float32)
    mask = np.ones((3, 5), bool)
    mask[1, 3:] = False
    got = float(jax.jit(sft_loss)(logp, mask))
    np.testing.assert_allclose(got, -logp.astype(np.float64)[mask].mean(), rtol=1e-6)


def test_empty_mask_gives_zero_not_nan():
    x = jnp.ones((2, 3), jnp.float32)
    m = jnp.zeros((2, 3), bool)
    assert float(masked_mean(x, m, "token")) == 0.0
    assert float(masked_mean(x, m, "sequence")) == 0.0


def test_bad_inputs_raise():
    x = jnp.zeros((2, 3), jnp.float32)
    m = jnp.ones((2, 3), bool)
    with pytest.raises(ValueError, match="eps_low"):
        clipped_pg_loss(x, x, x, m, eps_low=1.5)
    with pytest.raises(ValueError, match="logp_ref"):
        clipped_pg_loss(x, x, x, m, beta=0.1)
    with pytest.raises(
        (ValueError, TypeError)
    ):  # the shape check (jaxtyping's, under pytest, is a TypeError)
        clipped_pg_loss(x, x[:1], x, m)
    with pytest.raises(TypeError):
        masked_mean(x, m.astype(jnp.int32))
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(jnp.zeros((3, 1)))
    # unknown literals: ValueError from the function, or jaxtyping's TypeError first under pytest
    with pytest.raises((ValueError, TypeError)):
        masked_mean(x, m, "per-batch")
    with pytest.raises((ValueError, TypeError)):
        token_kl(x, x, "k2")

"""Chunked log-probabilities (threegate.lm.logprobs), layer remat and the lean update of the trainer.

References are float64 NumPy on the full `[b, n, V]` logits; the chunked float32 path must match them in values
and gradients for every chunking (dividing the vocabulary, padding the last block, one block), and a whole
training update must not depend on the chunking, on remat or on skipping the redundant old-policy pass.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate._numerics import TEST_RTOL
from threegate.lm.config import LlamaConfig
from threegate.lm.fit import fit
from threegate.lm.logprobs import (
    chunk_size,
    completion_hidden,
    token_logprobs,
    token_stats,
)
from threegate.lm.model import forward, init_params
from threegate.lm.tasks import CharTask
from threegate.lm.train import TrainConfig, _straight_through

B, N, D, V = 3, 4, 8, 50
CHUNKS = [7, 10, 16, 50, 64]  # pads the last block, divides V, pads, one block, larger than V
F32_TOL = dict(rtol=2e-5, atol=2e-5)


def _case(seed=0, scale=2.0):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(B, N, D)).astype(np.float32)
    w = (scale * rng.normal(size=(V, D)) / np.sqrt(D)).astype(np.float32)
    tok = rng.integers(0, V, size=(B, N)).astype(np.int32)
    return h, w, tok


def _ref_logits(h, w, temperature):
    return np.einsum("bnd,vd->bnv", h.astype(np.float64), w.astype(np.float64)) / temperature


def _ref_logp(h, w, tok, temperature):
    z = _ref_logits(h, w, temperature)
    lse = np.log(np.sum(np.exp(z - z.max(-1, keepdims=True)), -1)) + z.max(-1)
    return np.take_along_axis(z, tok[..., None], -1)[..., 0] - lse, z, lse


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_match_float64_values_and_gradients(chunk, temperature):
    h, w, tok = _case()
    g = np.random.default_rng(1).normal(size=(B, N))
    lp = token_logprobs(jnp.asarray(h), jnp.asarray(w), tok, temperature=temperature, chunk=chunk)
    ref, z, lse = _ref_logp(h, w, tok, temperature)
    np.testing.assert_allclose(np.asarray(lp), ref, **F32_TOL)
    # d/dz sum(g * logp) = g (onehot - softmax) / T, then chain to h and w
    p = np.exp(z - lse[..., None])
    onehot = np.eye(V)[tok]
    dz = g[..., None] * (onehot - p) / temperature
    dh_ref = np.einsum("bnv,vd->bnd", dz, w.astype(np.float64))
    dw_ref = np.einsum("bnv,bnd->vd", dz, h.astype(np.float64))
    loss = lambda h, w: jnp.sum(  # noqa: E731
        jnp.asarray(g, jnp.float32)
        * token_logprobs(h, w, tok, temperature=temperature, chunk=chunk)
    )
    dh, dw = jax.grad(loss, argnums=(0, 1))(jnp.asarray(h), jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(dh), dh_ref, **F32_TOL)
    np.testing.assert_allclose(np.asarray(dw), dw_ref, **F32_TOL)


def test_chunked_equals_unchunked_autodiff_bitwise_close_on_a_real_llama():
    """The trainer's path (hidden states + chunked log-probs) against plain autodiff of log_softmax(forward)."""
    task = CharTask("modadd", modulus=7)
    mcfg = LlamaConfig.tiny(task.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
    params = init_params(mcfg, jax.random.key(3))
    p = task.sample(jax.random.key(4), 6)
    prompts, pmask = task.prompts(p)
    comp, cmask = task.references(p)
    adv = jax.random.normal(jax.random.key(5), comp.shape)

    def chunked(params):
        h = completion_hidden(params, mcfg, prompts, pmask, comp, cmask, remat=True)
        lp = token_logprobs(h, params["model.embed_tokens.weight"], comp, temperature=0.7, chunk=5)
        return jnp.sum(jnp.where(cmask, adv * lp, 0.0))

    def plain(params):
        full = jnp.concatenate([prompts, comp], axis=1)
        fmask = jnp.concatenate([pmask, cmask], axis=1)
        z = forward(params, mcfg, full, mask=fmask)[:, prompts.shape[1] - 1 : -1] / 0.7
        lp = jnp.take_along_axis(jax.nn.log_softmax(z, -1), comp[..., None], -1)[..., 0]
        return jnp.sum(jnp.where(cmask, adv * lp, 0.0))

    va, ga = jax.value_and_grad(chunked)(params)
    vb, gb = jax.value_and_grad(plain)(params)
    np.testing.assert_allclose(float(va), float(vb), rtol=1e-5)
    for name in params:
        scale = float(jnp.max(jnp.abs(gb[name]))) + 1e-12
        err = float(jnp.max(jnp.abs(ga[name] - gb[name])))
        assert err <= 1e-4 * scale, (name, err, scale)


@pytest.mark.parametrize("chunk", [7, 25, 50])
def test_token_stats_match_float64(chunk):
    h, w, tok = _case(2)
    h_ref, w_ref, _ = _case(3)
    st = token_stats(
        jnp.asarray(h), jnp.asarray(w), tok, h_ref, w_ref, temperature=0.7, chunk=chunk
    )
    lp, z, lse = _ref_logp(h, w, tok, 0.7)
    lq, zr, lse_r = _ref_logp(h_ref, w_ref, tok, 0.7)
    p = np.exp(z - lse[..., None])
    la, lb = z - lse[..., None], zr - lse_r[..., None]
    np.testing.assert_allclose(np.asarray(st["logp"]), lp, **F32_TOL)
    np.testing.assert_allclose(np.asarray(st["logp_ref"]), lq, **F32_TOL)
    np.testing.assert_allclose(np.asarray(st["kl_exact"]), np.sum(p * (la - lb), -1), **F32_TOL)
    np.testing.assert_allclose(np.asarray(st["entropy"]), -np.sum(p * la, -1), **F32_TOL)


def test_token_stats_controls():
    """A policy against itself has KL exactly 0; uniform logits have entropy log V."""
    h, w, tok = _case(4)
    st = token_stats(jnp.asarray(h), jnp.asarray(w), tok, h, w, chunk=7)
    assert float(jnp.max(jnp.abs(st["kl_exact"]))) <= 10 * TEST_RTOL["float32"]
    zero = jnp.zeros((B, N, D), jnp.float32)
    st = token_stats(zero, jnp.asarray(w), tok, zero, jnp.asarray(w), chunk=16)
    np.testing.assert_allclose(np.asarray(st["entropy"]), np.log(V), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(st["logp"]), -np.log(V), rtol=1e-6)


def test_chunk_size_divides_or_pads():
    assert chunk_size(49152) == 8192
    assert chunk_size(50) == 50
    assert 49152 % chunk_size(49152, 6000) == 0
    assert chunk_size(8209, 8192) == 8192  # 8209 is prime: the last block is padded


def test_straight_through_is_exactly_the_stored_values_with_identity_gradient():
    rng = np.random.default_rng(7)
    x = np.concatenate(
        [
            rng.normal(size=2000) * 10.0 ** rng.integers(-40, 30, 2000),
            [
                0.0,
                -0.0,
                1e-45,
                -1e-45,
                3.0e38,
                -3.0e38,
                1.00390625,
                -1.00390625,
                1.01171875,
            ],  # huge, bf16 ties
        ]
    ).astype(np.float32)
    m = {"w": jnp.asarray(x)}
    stored = {"w": m["w"].astype(jnp.bfloat16)}
    want = np.asarray(stored["w"].astype(jnp.float32))
    got = np.asarray(_straight_through(m, stored)["w"])
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    c = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
    grad = jax.grad(lambda m: jnp.sum(c * _straight_through(m, stored)["w"]))(m)["w"]
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(c))


# ------------------------------------------------------------------- whole updates of the trainer

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
BASE = TrainConfig(
    algo="grpo", steps=2, lr=3e-3, prompts_per_step=4, group_size=4, minibatches=1, seed=3
)


@pytest.fixture(scope="module")
def params0():
    return init_params(MCFG, jax.random.key(0))


def _close_runs(a, b, *, master_rtol):
    for name in a.state.master:
        np.testing.assert_allclose(
            np.asarray(a.state.master[name]), np.asarray(b.state.master[name]), rtol=master_rtol,
            atol=master_rtol,
        )  # fmt: skip
    for ra, rb in zip(a.logs, b.logs, strict=True):
        for k in ("loss", "grad_norm", "kl_exact", "entropy", "reward", "accuracy"):
            if k in ra or k in rb:
                np.testing.assert_allclose(ra[k], rb[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.parametrize(
    "change",
    [dict(vocab_chunk=3), dict(remat=True), dict(vocab_chunk=5, remat=True)],
    ids=["chunk3", "remat", "chunk5+remat"],
)
def test_update_does_not_depend_on_chunking_or_remat(params0, change):
    # the reference: one vocabulary block (the plain softmax) and every activation kept
    plain = dataclasses.replace(BASE, vocab_chunk=TASK.vocab_size, remat=False)
    one_block = fit(plain, MCFG, TASK, params0)
    other = fit(dataclasses.replace(plain, **change), MCFG, TASK, params0)
    _close_runs(one_block, other, master_rtol=1e-5)


def test_kl_metrics_flag_drops_only_the_instrumentation(params0):
    on = fit(BASE, MCFG, TASK, params0)
    off = fit(dataclasses.replace(BASE, kl_metrics=False), MCFG, TASK, params0)
    instrument = {"kl_k1", "kl_k3", "kl_exact", "entropy"}
    for a, b in zip(on.logs, off.logs, strict=True):
        assert instrument <= set(a) and not instrument & set(b)
        assert {k: v for k, v in a.items() if k not in instrument | {"seconds"}} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    assert on.logs[0]["kl_exact"] <= 1e-6  # step 1 samples from the base itself


def test_single_update_takes_pi_old_from_its_own_pass(params0):
    """With one update per step the sampling policy is the differentiated one: the ratio is exactly 1, so no
    token is clipped and GRPO's loss is minus the mean advantage, which is 0 (advantages are centred per group).
    Several updates per step need the old-policy pass."""
    single = fit(dataclasses.replace(BASE, steps=1), MCFG, TASK, params0)
    assert single.logs[0]["clip_frac"] == 0.0
    assert abs(single.logs[0]["loss"]) <= 1e-6
    assert not BASE.needs_old_pass
    assert dataclasses.replace(BASE, epochs=2).needs_old_pass
    assert not dataclasses.replace(BASE, algo="sft", group_size=1, minibatches=2).needs_old_pass

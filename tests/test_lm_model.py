"""The JAX Llama (`threegate.lm.model`) and its sampler on a tiny random model, against a float64 NumPy reference."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _lm_reference import reference_logits
from hypothesis import given
from hypothesis import strategies as st

from threegate._numerics import tol
from threegate.errors import MismatchError
from threegate.lm.config import LlamaConfig
from threegate.lm.model import (
    apply_rope,
    decode_step,
    forward,
    forward_with_cache,
    init_params,
    log_probs,
    param_shapes,
    rope_angles,
)
from threegate.lm.sample import generate, generate_passes, top_p_filter

V = 32
CFG = LlamaConfig.tiny(V, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=32)
#: Scale 1.0 instead of 0.02 makes the logits O(1) and the attention non-uniform, so a bug cannot hide.
PARAMS = {
    k: (v if k.endswith("norm.weight") else v * 25.0)
    for k, v in init_params(CFG, jax.random.key(1)).items()
}
TOKENS = np.asarray(jax.random.randint(jax.random.key(2), (3, 12), 0, V), np.int32)
# Slack for an f32 forward against float64: eps · width, c = 50 (see threegate._numerics).
TOL = tol(jnp.float32, CFG.d_ff)


def _close(got, want, scale=None):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = np.abs(want).max() if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL * scale)


def test_config_json_roundtrip_and_validation():
    text = CFG.to_json()
    assert LlamaConfig.from_json(text) == CFG
    assert hash(LlamaConfig.from_json(text)) == hash(CFG)
    data = json.loads(text) | {"note": "extra keys are ignored"}
    assert LlamaConfig.from_dict(data) == CFG
    assert CFG.head_dim == 8 and CFG.d_ff == 128 and CFG.n_rep == 2
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        LlamaConfig.tiny(V, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="missing"):
        LlamaConfig.from_json('{"vocab_size": 3}')
    with pytest.raises(ValueError, match="positive int"):
        LlamaConfig.tiny(0)


def test_init_params_names_shapes_dtypes():
    p = init_params(CFG, jax.random.key(0), dtype=jnp.bfloat16)
    assert {k: v.shape for k, v in p.items()} == param_shapes(CFG)
    assert all(v.dtype == jnp.bfloat16 for v in p.values())
    assert "lm_head.weight" not in p
    std = float(jnp.std(p["model.layers.0.mlp.up_proj.weight"].astype(jnp.float32)))
    assert 0.018 < std < 0.022
    assert bool(jnp.all(p["model.norm.weight"] == 1))
    assert "lm_head.weight" in param_shapes(LlamaConfig.tiny(V, tie_embeddings=False))


def test_forward_matches_float64_reference():
    logits = forward(PARAMS, CFG, TOKENS)
    assert logits.shape == (3, 12, V) and logits.dtype == jnp.float32
    _close(logits, reference_logits(PARAMS, CFG, TOKENS))


def test_forward_untied_head_matches_reference():
    cfg = LlamaConfig.tiny(V, d_model=32, n_layers=1, tie_embeddings=False, max_seq_len=32)
    p = init_params(cfg, jax.random.key(3))
    _close(forward(p, cfg, TOKENS), reference_logits(p, cfg, TOKENS))


def test_forward_with_padding_matches_reference():
    mask = np.ones(TOKENS.shape, bool)
    mask[0, :5] = False
    mask[2, :1] = False
    got = np.asarray(forward(PARAMS, CFG, TOKENS, mask=mask))
    want = reference_logits(PARAMS, CFG, TOKENS, mask)
    _close(got[mask], want[mask], scale=np.abs(want).max())


def test_bf16_params_give_the_logits_of_their_f32_upcast():
    p16 = {k: v.astype(jnp.bfloat16) for k, v in PARAMS.items()}
    p32 = {k: v.astype(jnp.float32) for k, v in p16.items()}
    got = forward(p16, CFG, TOKENS)
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(got), np.asarray(forward(p32, CFG, TOKENS)))


def test_causal_future_tokens_do_not_change_past_logits():
    changed = TOKENS.copy()
    changed[:, 7:] = (changed[:, 7:] + 1) % V
    a, b = np.asarray(forward(PARAMS, CFG, TOKENS)), np.asarray(forward(PARAMS, CFG, changed))
    np.testing.assert_array_equal(a[:, :7], b[:, :7])
    assert np.abs(a[:, 7:] - b[:, 7:]).max() > 1e-3


def test_left_padding_is_invisible():
    seq = TOKENS[:1, :8]
    padded = np.concatenate([np.full((1, 4), 5, np.int32), seq], axis=1)
    mask = np.concatenate([np.zeros((1, 4), bool), np.ones((1, 8), bool)], axis=1)
    got = np.asarray(forward(PARAMS, CFG, padded, mask=mask))[:, 4:]
    _close(got, np.asarray(forward(PARAMS, CFG, seq)))


def test_gqa_equals_multi_head_attention_with_repeated_kv_heads():
    mha = LlamaConfig.tiny(V, d_model=32, n_layers=2, n_heads=4, n_kv_heads=4, max_seq_len=32)
    p = dict(PARAMS)
    for i in range(CFG.n_layers):
        for proj in ("k_proj", "v_proj"):
            name = f"model.layers.{i}.self_attn.{proj}.weight"
            w = p[name].reshape(CFG.n_kv_heads, CFG.head_dim, CFG.d_model)
            p[name] = jnp.repeat(w, CFG.n_rep, axis=0).reshape(CFG.q_dim, CFG.d_model)
    _close(forward(PARAMS, CFG, TOKENS), forward(p, mha, TOKENS))


@jax.jit
def _rope_score(q, k, pm, pn):
    cq, sq = rope_angles(jnp.reshape(pm, (1, 1)), q.shape[-1], 10000.0)
    ck, sk = rope_angles(jnp.reshape(pn, (1, 1)), k.shape[-1], 10000.0)
    return jnp.sum(apply_rope(q, cq, sq) * apply_rope(k, ck, sk))


@given(m=st.integers(0, 200), n=st.integers(0, 200), shift=st.integers(1, 300))
def test_rope_scores_depend_only_on_the_position_difference(m, n, shift):
    q = jax.random.normal(jax.random.key(4), (1, 1, 1, 16))
    k = jax.random.normal(jax.random.key(5), (1, 1, 1, 16))
    base = float(_rope_score(q, k, m, n))
    # Angles up to 500 rad in f32 carry ~500·eps error each; the score is a sum of 8 such products.
    assert abs(float(_rope_score(q, k, m + shift, n + shift)) - base) <= tol(jnp.float32, 500) * 16
    assert abs(float(_rope_score(q, k, 0, 0)) - float(jnp.sum(q * k))) <= tol(jnp.float32, 16)


def test_log_probs_equal_log_softmax_of_reference():
    mask = np.ones(TOKENS.shape, bool)
    mask[1, :3] = False
    lp = np.asarray(log_probs(PARAMS, CFG, TOKENS, mask))
    ref = reference_logits(PARAMS, CFG, TOKENS, mask)[:, :-1]
    ref = ref - ref.max(-1, keepdims=True)
    ref = ref - np.log(np.exp(ref).sum(-1, keepdims=True))
    want = np.take_along_axis(ref, TOKENS[:, 1:, None], axis=-1)[:, :, 0]
    want = np.where(mask[:, 1:], want, 0.0)
    _close(lp, want, scale=np.abs(want).max())


def test_kv_cache_decode_equals_full_forward():
    mask = np.ones((3, 6), bool)
    mask[0, :2] = False
    prompt, rest = TOKENS[:, :6], TOKENS[:, 6:]
    logits, cache = forward_with_cache(PARAMS, CFG, prompt, mask, cache_size=12)
    full_mask = np.concatenate([mask, np.ones(rest.shape, bool)], axis=1)
    full = np.asarray(forward(PARAMS, CFG, TOKENS, mask=full_mask))
    _close(np.asarray(logits)[mask], full[:, :6][mask], scale=np.abs(full).max())
    for j in range(rest.shape[1]):
        step, cache = decode_step(PARAMS, CFG, cache, rest[:, j])
        _close(step, full[:, 6 + j], scale=np.abs(full).max())
    assert int(cache.length) == 12


def test_bad_inputs_raise_one_line_errors():
    # (under pytest the jaxtyping hook raises its own TypeError before the function's check)
    with pytest.raises(TypeError):
        forward(PARAMS, CFG, TOKENS, mask=np.ones(TOKENS.shape, np.int32))
    with pytest.raises(TypeError):
        forward(PARAMS, CFG, TOKENS.astype(np.float32))
    with pytest.raises(MismatchError, match="missing"):
        forward({k: v for k, v in PARAMS.items() if "norm" not in k}, CFG, TOKENS)
    with pytest.raises(ValueError, match="max_seq_len"):
        forward(PARAMS, CFG, np.zeros((1, 40), np.int32))
    with pytest.raises(ValueError, match="left-padded"):
        right = np.ones((1, 4), bool)
        right[0, -1] = False
        generate(PARAMS, CFG, TOKENS[:1, :4], right, jax.random.key(0), max_new_tokens=2)
    with pytest.raises(ValueError, match="temperature"):
        generate(
            PARAMS,
            CFG,
            TOKENS[:1, :4],
            np.ones((1, 4), bool),
            jax.random.key(0),
            max_new_tokens=2,
            temperature=0,
        )


# --- sampler ----------------------------------------------------------------------------------------------------

PROMPT, PMASK = TOKENS[:, :5], np.ones((3, 5), bool)
PMASK[1, :2] = False


def test_greedy_is_the_argmax_chain_and_logprobs_are_model_logprobs():
    out = generate(PARAMS, CFG, PROMPT, PMASK, jax.random.key(0), max_new_tokens=6, greedy=True)
    assert (
        out.tokens.shape == (3, 6)
        and out.tokens.dtype == jnp.int32
        and out.logprobs.dtype == jnp.float32
    )
    assert bool(jnp.all(out.mask))
    # Causality lets one fixed-shape buffer stand in for the growing sequence (one compile).
    seq = np.concatenate([PROMPT, np.zeros((3, 6), np.int32)], axis=1)
    mask = np.concatenate([PMASK, np.ones((3, 6), bool)], axis=1)
    for j in range(6):
        nxt = np.asarray(
            jnp.argmax(forward(PARAMS, CFG, seq, mask=mask)[:, 4 + j], axis=-1), np.int32
        )
        np.testing.assert_array_equal(np.asarray(out.tokens[:, j]), nxt)
        seq[:, 5 + j] = nxt
    lp = np.asarray(log_probs(PARAMS, CFG, seq, mask))[:, -6:]
    np.testing.assert_allclose(np.asarray(out.logprobs), lp, rtol=0, atol=TOL * np.abs(lp).max())


def test_group_prefill_equals_prefilling_every_row():
    # GRPO's G completions per prompt: each prompt is prefilled once and its cache shared by the group
    rep = np.repeat(PROMPT, 4, axis=0), np.repeat(PMASK, 4, axis=0)
    key = jax.random.key(3)
    every = generate(PARAMS, CFG, *rep, key, max_new_tokens=5, temperature=1.0)
    shared = generate(PARAMS, CFG, *rep, key, max_new_tokens=5, temperature=1.0, group=4)
    np.testing.assert_array_equal(np.asarray(shared.tokens), np.asarray(every.tokens))
    lp = np.asarray(every.logprobs)
    np.testing.assert_allclose(np.asarray(shared.logprobs), lp, rtol=0, atol=TOL * np.abs(lp).max())
    assert (
        len({tuple(r) for r in np.asarray(shared.tokens)[:4].tolist()}) > 1
    )  # rows sample independently
    with pytest.raises(ValueError, match="group"):
        generate(PARAMS, CFG, *rep, key, max_new_tokens=2, group=5)


def test_passes_sharing_one_prefill_sample_as_separate_generate_calls():
    # an evaluation's greedy and k sampled passes prefill the prompts once; each pass samples as its own call
    rep = np.repeat(PROMPT, 3, axis=0), np.repeat(PMASK, 3, axis=0)
    passes = [
        (jax.random.key(0), True, 1.0),
        (jax.random.key(5), False, 0.7),
        (jax.random.key(6), False, 1.3),
    ]
    outs = generate_passes(PARAMS, CFG, *rep, passes, max_new_tokens=6, eos_id=3)
    for (key, greedy, temp), got in zip(passes, outs, strict=True):
        want = generate(
            PARAMS, CFG, *rep, key, max_new_tokens=6, temperature=temp, greedy=greedy, eos_id=3
        )
        np.testing.assert_array_equal(np.asarray(got.tokens), np.asarray(want.tokens))
        np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(want.mask))
        lp = np.asarray(want.logprobs)
        np.testing.assert_allclose(
            np.asarray(got.logprobs), lp, rtol=0, atol=TOL * np.abs(lp).max()
        )
    assert not np.array_equal(np.asarray(outs[1].tokens), np.asarray(outs[2].tokens))
    with pytest.raises(ValueError, match="temperature"):
        generate_passes(PARAMS, CFG, *rep, [(jax.random.key(0), False, 0.0)], max_new_tokens=2)


def test_eos_masks_everything_after_the_first_eos():
    greedy = generate(PARAMS, CFG, PROMPT, PMASK, jax.random.key(0), max_new_tokens=6, greedy=True)
    eos = int(greedy.tokens[0, 2])
    out = generate(
        PARAMS, CFG, PROMPT, PMASK, jax.random.key(0), max_new_tokens=6, greedy=True, eos_id=eos
    )
    tokens, mask = np.asarray(out.tokens), np.asarray(out.mask)
    for r in range(3):
        hits = np.flatnonzero(tokens[r] == eos)
        first = hits[0] if hits.size else 6
        np.testing.assert_array_equal(mask[r], np.arange(6) <= first)
    assert not mask[0, 3:].any() and mask[0, :3].all()


def _nucleus_reference(logits: np.ndarray, top_p: float) -> np.ndarray:
    """Minimal set of most likely tokens with mass >= top_p (float64, ties by lower id)."""
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    n = int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1
    keep = np.zeros(z.shape, bool)
    keep[order[: min(n, z.size)]] = True
    return keep


@given(seed=st.integers(0, 2**16), top_p=st.sampled_from([0.05, 0.3, 0.5, 0.8, 0.95, 1.0]))
def test_top_p_keeps_the_minimal_nucleus(seed, top_p):
    logits = 2.0 * jax.random.normal(jax.random.key(seed), (V,))
    got = np.isfinite(np.asarray(top_p_filter(logits, top_p)))
    want = _nucleus_reference(np.asarray(logits), top_p)
    if top_p == 1.0:
        want = np.ones(V, bool)
    np.testing.assert_array_equal(got, want)


N_SAMPLES = 4000
MANY = np.tile(TOKENS[:1, :5], (N_SAMPLES, 1))


def _sample_many(key, temperature, top_p):
    """One new token for N_SAMPLES copies of one prompt (one compile shared by the tests below)."""
    out = generate(
        PARAMS,
        CFG,
        MANY,
        np.ones(MANY.shape, bool),
        key,
        max_new_tokens=1,
        temperature=temperature,
        top_p=top_p,
    )
    return np.asarray(out.tokens[:, 0]), np.asarray(out.logprobs[:, 0])


def test_sampling_frequencies_follow_the_tempered_nucleus():
    tokens, logprobs = _sample_many(jax.random.key(11), 0.7, 0.9)
    z = np.asarray(forward(PARAMS, CFG, MANY[:1]), np.float64)[0, -1]
    keep = _nucleus_reference(z / 0.7, 0.9)
    p = np.where(keep, np.exp(z / 0.7 - z.max() / 0.7), 0.0)
    p /= p.sum()
    freq = np.bincount(tokens, minlength=V) / N_SAMPLES
    assert freq[~keep].sum() == 0
    # 5 binomial standard deviations per token.
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / N_SAMPLES) + 1.0 / N_SAMPLES)
    # logprobs are the untempered model's: log softmax(z) of the drawn token.
    lsm = z - z.max() - np.log(np.exp(z - z.max()).sum())
    np.testing.assert_allclose(logprobs, lsm[tokens], rtol=0, atol=TOL * np.abs(lsm).max())


def test_low_temperature_sampling_is_greedy():
    tokens, _ = _sample_many(jax.random.key(7), 1e-4, 1.0)
    z = np.asarray(forward(PARAMS, CFG, MANY[:1]))[0, -1]
    np.testing.assert_array_equal(tokens, np.full(N_SAMPLES, z.argmax()))

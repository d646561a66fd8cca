"""V/O rotation and head permutation (Prop D.1, App. D): exact invariance up to rounding, controls, inverses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate._numerics import tol
from threegate.lm.config import LlamaConfig
from threegate.lm.interventions import (
    haar_orthogonal,
    permute_heads,
    query_permutation,
    rotate_vo,
    unpermute_mask,
)
from threegate.lm.model import forward, init_params

CFG = LlamaConfig.tiny(16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=16)


@pytest.fixture(scope="module")
def setup():
    params = init_params(CFG, jax.random.key(0))
    # larger weights than the 0.02 init, so attention is far from uniform and a wrong edit shows
    params = {k: v * 10 if v.ndim == 2 else v for k, v in params.items()}
    tokens = jax.random.randint(jax.random.key(1), (3, 12), 0, 16)
    return params, tokens, forward(params, CFG, tokens)


def _max_diff(params, tokens, ref):
    return float(jnp.max(jnp.abs(forward(params, CFG, tokens) - ref)))


def _slack(ref) -> float:
    # float32 rounding of a d_model-long reduction chain, relative to the logits' scale
    return tol(jnp.float32, CFG.d_model) * float(jnp.max(jnp.abs(ref)))


def test_vo_rotation_preserves_the_function(setup):
    params, tokens, ref = setup
    r = haar_orthogonal(jax.random.key(2), CFG.head_dim)
    for layer in range(CFG.n_layers):
        new = rotate_vo(params, CFG, layer, r)
        assert not np.array_equal(
            new[f"model.layers.{layer}.self_attn.v_proj.weight"],
            params[f"model.layers.{layer}.self_attn.v_proj.weight"],
        )
        assert _max_diff(new, tokens, ref) <= _slack(ref)


def test_head_permutation_preserves_the_function(setup):
    params, tokens, ref = setup
    new = permute_heads(params, CFG, 0, [1, 0])
    assert _max_diff(new, tokens, ref) <= _slack(ref)
    # a gather: every weight keeps its bits, only its place changes
    q0, q1 = (
        params["model.layers.0.self_attn.q_proj.weight"],
        new["model.layers.0.self_attn.q_proj.weight"],
    )
    assert np.array_equal(np.sort(np.asarray(q0).ravel()), np.sort(np.asarray(q1).ravel()))


def test_rotate_and_permute_together(setup):
    params, tokens, ref = setup
    r = haar_orthogonal(jax.random.key(3), CFG.head_dim)
    new = permute_heads(rotate_vo(params, CFG, 0, r), CFG, 0, [1, 0])
    new = rotate_vo(new, CFG, 1, haar_orthogonal(jax.random.key(4), CFG.head_dim))
    assert _max_diff(new, tokens, ref) <= _slack(ref)


def test_identity_interventions_change_nothing(setup):
    params, _, _ = setup
    same = permute_heads(rotate_vo(params, CFG, 0, jnp.eye(CFG.head_dim)), CFG, 0, [0, 1])
    for k in params:
        assert np.array_equal(np.asarray(same[k]), np.asarray(params[k])), k


def test_half_an_intervention_changes_the_function(setup):
    # premise removed: rotate V without O, or permute q heads without their KV heads -> a different function
    params, tokens, ref = setup
    r = haar_orthogonal(jax.random.key(5), CFG.head_dim)
    rotated = rotate_vo(params, CFG, 0, r)
    only_v = dict(params)
    only_v["model.layers.0.self_attn.v_proj.weight"] = rotated[
        "model.layers.0.self_attn.v_proj.weight"
    ]
    assert _max_diff(only_v, tokens, ref) > 100 * _slack(ref)
    permuted = permute_heads(params, CFG, 0, [1, 0])
    only_kv = dict(params)
    for p in ("k_proj", "v_proj"):
        only_kv[f"model.layers.0.self_attn.{p}.weight"] = permuted[
            f"model.layers.0.self_attn.{p}.weight"
        ]
    assert _max_diff(only_kv, tokens, ref) > 100 * _slack(ref)


def test_query_permutation_groups_heads():
    assert query_permutation(CFG, [1, 0]).tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="permutation"):
        query_permutation(CFG, [0, 0])


def test_unpermute_mask_inverts_the_permutation(setup):
    params, _, _ = setup
    rng = np.random.default_rng(0)
    masks = {
        p: rng.random(np.shape(params[f"model.layers.0.self_attn.{p}.weight"])) < 0.3
        for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    }
    as_params = {f"model.layers.0.self_attn.{p}.weight": jnp.asarray(m) for p, m in masks.items()}
    full = dict(params) | as_params
    moved = permute_heads(full, CFG, 0, [1, 0])
    for p, m in masks.items():
        back = unpermute_mask(
            np.asarray(moved[f"model.layers.0.self_attn.{p}.weight"]), p, CFG, [1, 0]
        )
        assert np.array_equal(back, m), p


def test_bad_rotation_is_a_value_error(setup):
    params, _, _ = setup
    with pytest.raises(ValueError, match="orthogonal"):
        rotate_vo(params, CFG, 0, 2 * jnp.eye(CFG.head_dim))
    with pytest.raises(ValueError, match="rot must be"):
        rotate_vo(params, CFG, 0, jnp.eye(3))
    with pytest.raises(ValueError, match="layer"):
        rotate_vo(params, CFG, 5, jnp.eye(CFG.head_dim))

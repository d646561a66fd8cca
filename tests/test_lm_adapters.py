"""LoRA and PiSSA adapters (threegate.lm.adapters): init identities and PiSSA's principal subspace."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate._numerics import eps, tol
from threegate.lm.adapters import AdapterConfig, init_adapters, merge, target_names
from threegate.lm.config import LlamaConfig
from threegate.lm.model import forward, init_params

MCFG = LlamaConfig.tiny(16, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, max_seq_len=16)


@pytest.fixture(scope="module")
def params():
    return init_params(MCFG, jax.random.key(3))


def test_lora_init_merges_to_base_bitwise(params):
    cfg = AdapterConfig("lora", rank=4, alpha=8.0)
    frozen, adapters = init_adapters(params, cfg, jax.random.key(0))
    assert sorted(adapters) == target_names(params)
    assert len(adapters) == 7 * MCFG.n_layers
    merged = merge(frozen, adapters, cfg.scale)
    for name, w in params.items():
        np.testing.assert_array_equal(np.asarray(merged[name]), np.asarray(w))
    pair = adapters["model.layers.0.self_attn.q_proj.weight"]
    assert pair.a.shape == (4, MCFG.d_model) and pair.b.shape == (MCFG.q_dim, 4)
    assert np.all(np.asarray(pair.b) == 0) and np.any(np.asarray(pair.a) != 0)
    tokens = jnp.arange(8, dtype=jnp.int32)[None, :] % 16
    np.testing.assert_array_equal(
        np.asarray(forward(merged, MCFG, tokens)), np.asarray(forward(params, MCFG, tokens))
    )


@pytest.mark.parametrize("store_dtype", [jnp.float32, jnp.bfloat16])
def test_pissa_init_merges_to_base_and_spans_top_subspace(params, store_dtype):
    r = 3
    cfg = AdapterConfig("pissa", rank=r, alpha=6.0, targets=("q_proj", "down_proj"))
    frozen, adapters = init_adapters(params, cfg, jax.random.key(0), store_dtype)
    assert sorted(adapters) == target_names(params, ("q_proj", "down_proj"))
    merged = merge(frozen, adapters, cfg.scale)
    for name, w in params.items():
        w64 = np.asarray(w, np.float64)
        err = np.abs(np.asarray(merged[name], np.float64) - w64).max()
        assert err <= tol(jnp.float32, max(w.shape)) * np.abs(w64).max(), name
    for name, pair in adapters.items():
        w64 = np.asarray(params[name], np.float64)
        u, s, vt = np.linalg.svd(w64)
        a, b = np.asarray(pair.a, np.float64), np.asarray(pair.b, np.float64)
        # sin of the largest principal angle between span(B) and U_r (and rowspan(A) and V_r), via projectors
        qb, _ = np.linalg.qr(b)
        qa, _ = np.linalg.qr(a.T)
        sin_u = np.linalg.norm(qb - u[:, :r] @ (u[:, :r].T @ qb), 2)
        sin_v = np.linalg.norm(qa - vt[:r].T @ (vt[:r] @ qa), 2)
        # float32 SVD backward error (tol: 50·size·eps) plus, stored in bf16, a relative rounding of about
        # eps(bf16) per factor; Wedin turns a perturbation into an angle of that order over the relative gap
        rel = 20 * eps(store_dtype) + tol(jnp.float32, max(w64.shape))
        gap = (s[r - 1] - s[r]) / s[0]
        bound = rel / gap
        assert sin_u <= bound and sin_v <= bound, (name, sin_u, sin_v, bound)
        # s·BA is the rank-r truncation, and the residual keeps the tail spectrum
        ba = cfg.scale * b @ a
        trunc = (u[:, :r] * s[:r]) @ vt[:r]
        assert np.linalg.norm(ba - trunc, 2) <= rel * s[0]
        res_s = np.linalg.svd(np.asarray(frozen[name], np.float64), compute_uv=False)
        assert abs(res_s[0] - s[r]) <= rel * s[0]  # Weyl


def test_adapter_config_errors(params):
    with pytest.raises(ValueError, match="targets"):
        AdapterConfig("lora", targets=("lm_head",))
    with pytest.raises(ValueError, match="rank"):
        AdapterConfig("lora", rank=0)
    with pytest.raises((ValueError, TypeError)):
        AdapterConfig("dora")
    with pytest.raises(ValueError, match="no weight"):
        init_adapters(
            {"model.norm.weight": params["model.norm.weight"]}, AdapterConfig(), jax.random.key(0)
        )


def test_rank_is_clipped_to_matrix_size():
    small = {
        "model.layers.0.mlp.up_proj.weight": jnp.asarray(
            np.arange(6.0).reshape(2, 3) + 1, jnp.float32
        )
    }
    frozen, adapters = init_adapters(small, AdapterConfig("pissa", rank=8), jax.random.key(0))
    pair = adapters["model.layers.0.mlp.up_proj.weight"]
    assert pair.a.shape == (2, 3) and pair.b.shape == (2, 2)
    merged = merge(frozen, adapters, AdapterConfig("pissa", rank=8).scale)
    np.testing.assert_allclose(
        np.asarray(merged["model.layers.0.mlp.up_proj.weight"]),
        np.asarray(small["model.layers.0.mlp.up_proj.weight"]),
        rtol=1e-5,
    )

"""Fisher curvature along direction families (`threegate.lm.curvature`, `threegate.study.curvature`).

A float64 explicit-Jacobian reference for the quadratic form, the second-order KL rate it must show, the direction
families' defining properties, a planted policy whose inputs live in the top-k right singular subspace (the
orthogonal family must have exactly zero curvature), and the Llama driver on a tiny model against a plain closure.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate._numerics import TEST_RTOL, tol
from threegate.claims import VERDICTS
from threegate.kl import kl_categorical
from threegate.lm.curvature import FAMILIES, fisher_along, tensor_curvature, unit_directions
from threegate.masks import principal_mask

V, D, T = 12, 8, 20


def _policy(seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((V, D)).astype(np.float32)
    x = rng.standard_normal((T, D)).astype(np.float32)
    c = (rng.random(T) < 0.8).astype(np.float32)
    c[0] = 1.0
    return w, x, c


def _reference_q(w, x, c, d):
    """dᵀFd from the explicit Fisher F = Σ_t c_t J_tᵀ(diag p_t − p_t p_tᵀ)J_t / Σ c, float64."""
    w, x, d = (np.asarray(a, np.float64) for a in (w, x, d))
    z = x @ w.T
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    f = np.zeros((V * D, V * D))
    for t in range(T):
        jac = np.kron(np.eye(V), x[t][None, :])  # dz_t / d vec(W), row-major vec
        h = np.diag(p[t]) - np.outer(p[t], p[t])
        f += c[t] * jac.T @ h @ jac
    f /= c.sum()
    return float(d.ravel() @ f @ d.ravel())


def test_fisher_along_matches_explicit_fisher_reference():
    w, x, c = _policy()
    dirs = np.random.default_rng(1).standard_normal((5, V, D)).astype(np.float32)
    got = np.asarray(fisher_along(lambda m: jnp.asarray(x) @ m.T, w, dirs, c), np.float64)
    want = np.array([_reference_q(w, x, c, d) for d in dirs])
    np.testing.assert_allclose(got, want, rtol=50 * TEST_RTOL["float32"] * D)


def test_half_quadratic_form_is_the_second_order_kl():
    """KL(π_W ‖ π_{W+εD}) = ½ε² q(D) + O(ε³): the ratio's error halves with ε (first order)."""
    with jax.enable_x64(True):
        w, x, c = (np.asarray(a, np.float64) for a in _policy(2))
        d = np.random.default_rng(3).standard_normal((1, V, D))
        fn = lambda m: jnp.asarray(x) @ m.T  # noqa: E731
        q = float(fisher_along(fn, jnp.asarray(w), d, c)[0])
        errs = []
        for eps in (1e-2, 5e-3, 2.5e-3):
            kl = np.asarray(kl_categorical(fn(jnp.asarray(w)), fn(jnp.asarray(w + eps * d[0]))))
            errs.append(abs(float((c * kl).sum() / c.sum()) / (0.5 * eps**2 * q) - 1))
        assert errs[0] < 0.1
        rates = [errs[i] / errs[i + 1] for i in range(2)]
        assert all(1.7 < r < 2.3 for r in rates), (errs, rates)


def test_unit_directions_have_their_defining_properties():
    w = np.random.default_rng(4).standard_normal((16, 24)).astype(np.float32)
    k, alpha, n = 3, 0.5, 4
    dirs = unit_directions(w, k, alpha, jax.random.key(0), n)
    assert set(dirs) == set(FAMILIES)
    u, _, vt = np.linalg.svd(w.astype(np.float64))
    uk, vk = u[:, :k], vt[:k].T
    princ = np.asarray(principal_mask(w, k, alpha))
    t = tol(jnp.float32, max(w.shape))
    for f, d in dirs.items():
        d = np.asarray(d, np.float64)
        assert d.shape == (n, *w.shape)
        np.testing.assert_allclose(np.sqrt((d**2).sum((1, 2))), 1.0, rtol=t, err_msg=f)
    assert np.all(np.asarray(dirs["principal"])[:, ~princ] == 0)
    assert np.all(np.asarray(dirs["nonprincipal"])[:, princ] == 0)
    for d in np.asarray(dirs["orthogonal"], np.float64):
        assert np.abs(uk.T @ d).max() < t and np.abs(d @ vk).max() < t
    for d in np.asarray(dirs["subspace"], np.float64):
        np.testing.assert_allclose(uk @ (uk.T @ d @ vk) @ vk.T, d, atol=t)
    with pytest.raises(ValueError, match="k must satisfy"):
        unit_directions(w, 16, alpha, jax.random.key(0), n)
    with pytest.raises(ValueError, match="n must be"):
        unit_directions(w, k, alpha, jax.random.key(0), 0)


def test_planted_inputs_in_the_top_subspace_make_the_orthogonal_family_flat():
    """z = W x with every x in span(V_k): a direction D with D V_k = 0 moves no logit, so q(D) = 0 exactly
    (up to rounding), while directions inside the subspace have q > 0 — the ratio must come back huge."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((V, D)).astype(np.float32)
    k = 3
    vk = np.linalg.svd(w.astype(np.float64))[2][:k].T
    x = (rng.standard_normal((T, k)) @ vk.T).astype(np.float32)
    c = np.ones(T, np.float32)
    fn = lambda m: jnp.asarray(x) @ m.T  # noqa: E731
    rec = tensor_curvature(
        lambda d: fisher_along(fn, w, d, c), w, k=k, alpha=0.5, key=jax.random.key(1), n=6
    )
    fam = rec["families"]
    assert max(fam["orthogonal"]["values"]) < tol(jnp.float32, D) * fam["subspace"]["mean"]
    assert min(fam["subspace"]["values"]) > 0
    assert rec["ratios"]["subspace/orthogonal"] > 1e3
    assert rec["finite"]


def test_llama_driver_matches_a_plain_closure_and_resumes(tmp_path):
    from threegate.lm.config import LlamaConfig
    from threegate.lm.logprobs import completion_logits
    from threegate.lm.model import init_params
    from threegate.lm.tasks import CharTask
    from threegate.study.curvature import (
        CurvatureConfig,
        _batch,
        curvature_claims,
        curvature_figure,
        curvature_summary,
        measure_curvature,
    )

    task = CharTask("modadd", modulus=7)
    mcfg = LlamaConfig.tiny(task.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
    params = init_params(mcfg, jax.random.key(0))
    cfg = CurvatureConfig(layers=(1,), k=4, directions=3, prompts=4, temperature=1.0)
    recs = measure_curvature(params, mcfg, task, tmp_path, cfg)
    assert len(recs) == 7 and {r["layer"] for r in recs} == {1}
    # the stacked-layer jvp equals a jvp through the HF-name params for one tensor
    name = "model.layers.1.self_attn.o_proj.weight"
    rec = next(r for r in recs if r["name"] == name)
    prompts, pmask, comp, cmask = _batch(params, mcfg, task, cfg)
    i = [r["name"] for r in recs].index(name)
    dirs = unit_directions(params[name], 4, 0.5, jax.random.fold_in(jax.random.key(1), i), 3)

    def fn(m):
        return completion_logits({**params, name: m}, mcfg, prompts, pmask, comp, cmask, 1.0)

    want = np.asarray(fisher_along(fn, params[name], dirs["principal"], cmask))
    np.testing.assert_allclose(rec["families"]["principal"]["values"], want, rtol=1e-4)
    # resume: the records already written are kept, not recomputed
    lines = (tmp_path / "curvature.jsonl").read_text().splitlines()
    (tmp_path / "curvature.jsonl").write_text("\n".join(lines[:3]) + "\n")
    again = measure_curvature(params, mcfg, task, tmp_path, cfg, resume=True)
    assert [json.dumps(r) for r in again] == [json.dumps(r) for r in recs]
    with pytest.raises(ValueError, match="other settings"):
        measure_curvature(params, mcfg, task, tmp_path, dataclasses.replace(cfg, k=3), resume=True)
    summary = curvature_summary(recs)
    claims = curvature_claims(summary)
    assert [c.id for c in claims] == [
        "curvature_principal_above_complement",
        "curvature_subspace_above_orthogonal",
    ]
    assert all(c.verdict in VERDICTS for c in claims)
    import matplotlib.image as mpimg

    assert mpimg.imread(curvature_figure(summary, tmp_path / "c.png")).shape[0] > 100

"""S6 (sparse RL) and S7 (LoRA vs PiSSA in RL): what the lab guarantees, asserted; what the paper observed is only
reported by the sims (their claims are checked for form, never for outcome).

A fresh (untrained) tiny model stands in for the pretrained base where only the mechanics matter: from random
init every group is all-wrong, so the policy-gradient term is zero and weight decay alone moves the weights — which
is exactly what must not leak into masked entries.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sims import lora_pissa, sparse_rl
from sims._contract import VERDICTS
from sims._tiny import TinyBase
from threegate import spectral
from threegate._numerics import eps, matmul
from threegate.lm.batched import fit_batched, stack, unstack
from threegate.lm.config import LlamaConfig
from threegate.lm.evaluation import mean_ci, paired_diff_ci
from threegate.lm.fit import fit
from threegate.lm.model import init_params
from threegate.lm.sparse import is_linear_name
from threegate.lm.tasks import CharTask
from threegate.lm.train import make_train

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
U16 = np.uint16
F32_EPS = eps(jnp.float32)


def bits(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16)).view(U16)


@pytest.fixture(scope="module")
def base():
    params = init_params(MCFG, jax.random.key(0))
    params = jax.tree.map(lambda x: np.asarray(x.astype(jnp.bfloat16).astype(jnp.float32)), params)
    return TinyBase(MCFG, TASK, params, float("nan"))


S6 = sparse_rl.SparseRLConfig(
    steps=2, lr=1e-2, prompts_per_step=4, group_size=4, minibatches=2, n_seeds=1, eval_k=1,
    mask_rank=4, weight_decay=0.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def s6_runs(base):
    return sparse_rl.train_runs(S6, base, [3])


# ------------------------------------------------------------------------------------------------- S6


def test_masked_entries_stay_bitwise_unchanged_for_every_mask(s6_runs, base):
    specs, res = s6_runs
    assert [k for k, _ in specs] == list(sparse_rl.MASKS)
    for r, (kind, _) in enumerate(specs):
        masks = {n: np.asarray(m[r]) for n, m in res.frozen.masks.items()}
        assert sorted(masks) == sorted(n for n in base.params if is_linear_name(n))
        master = unstack(res.state.master, r)
        free_changed = 0
        for name, m in masks.items():
            if kind == "dense":
                assert m.all()
            before, after = bits(base.params[name]), np.asarray(res.params[r][name]).view(U16)
            np.testing.assert_array_equal(after[~m], before[~m], err_msg=f"{kind} {name}")
            np.testing.assert_array_equal(np.asarray(master[name])[~m], base.params[name][~m])
            free_changed += int(np.sum(after[m] != before[m]))
        assert free_changed > 0, kind  # weight decay (lr·λ = 0.5%) does move the trainable entries


def test_mask_sizes_follow_their_definitions(s6_runs):
    specs, res = s6_runs
    kinds = [k for k, _ in specs]
    for m in res.frozen.masks.values():
        m = np.asarray(m)
        size = m[0].size
        count = {k: int(m[kinds.index(k)].sum()) for k in kinds}
        assert count["principal"] == count["nonprincipal"] == size // 2  # α = 0.5, exact counts
        assert count["low"] == size // 2
        assert count["random"] == count["safe"] >= size // 2  # same per-layer size as "safe"
        princ, safe = m[kinds.index("principal")], m[kinds.index("safe")]
        np.testing.assert_array_equal(m[kinds.index("nonprincipal")], ~princ)
        np.testing.assert_array_equal(safe, m[kinds.index("low")] | ~princ)


def test_dense_run_equals_all_true_mask_run(base):
    """An all-True mask run is the lab's dense run, bit for bit: same logs, stored bf16 weights and float32
    masters. (Before the lab built its dense runs as all-True masks, the two compiled to different graphs and the
    masters differed by ulps, enough to flip stored bf16 bits: this test failed.)"""
    cfg = S6.train_config("safe", 3)
    _, frozen_safe = sparse_rl.init_runs(S6, base, [3])[1][sparse_rl.MASKS.index("safe")]
    fns = make_train(cfg, MCFG, TASK)
    state, _ = fns.init(base.params, jax.random.split(jax.random.key(3))[0])
    frozen = frozen_safe._replace(masks={n: jnp.ones_like(m) for n, m in frozen_safe.masks.items()})
    _, k_run = jax.random.split(jax.random.key(3))
    step = jax.jit(fns.step)
    logs = []
    for t in range(cfg.steps):
        state, metrics = step(state, frozen, jax.random.fold_in(k_run, t))
        logs.append({k: float(v) for k, v in metrics.items()})
    dense = fit(S6.train_config(None, 3), MCFG, TASK, base.params)
    assert [
        {k: v for k, v in r.items() if k not in ("step", "seconds")} for r in dense.logs
    ] == logs
    for name, w in dense.state.stored.items():
        np.testing.assert_array_equal(
            np.asarray(state.stored[name]).view(U16), np.asarray(w).view(U16)
        )
        np.testing.assert_array_equal(
            np.asarray(state.master[name]), np.asarray(dense.state.master[name])
        )


def test_batched_runs_are_the_runs_fit_makes(base):
    """fit_batched keeps fit's key schedule: run r is fit's run for its seed (first step bit for bit; later steps
    to the rounding of batched matmuls)."""
    cfg = S6.train_config("safe", 5)
    specs, inits, step_cfg = sparse_rl.init_runs(S6, base, [5])
    r = specs.index(("safe", 5))
    res = fit_batched(step_cfg, MCFG, TASK, [inits[r]], [5])
    ref = fit(cfg, MCFG, TASK, base.params)
    first = {k: v for k, v in ref.logs[0].items() if k != "seconds"}
    assert res.logs[0][0] == first
    for name, w in ref.state.stored.items():
        same = np.mean(np.asarray(res.params[0][name]).view(U16) == np.asarray(w).view(U16))
        assert same > 0.99, name


def test_stack_unstack_round_trip():
    trees = [{"a": jnp.arange(3.0) + i, "b": (jnp.ones(2) * i,)} for i in range(4)]
    st = stack(trees)
    assert st["a"].shape == (4, 3) and st["b"][0].shape == (4, 2)
    for i, t in enumerate(trees):
        np.testing.assert_array_equal(unstack(st, i)["a"], t["a"])
    with pytest.raises(ValueError):
        stack([])


# ---------------------------------------------------------------------------------------------- stats


def test_mean_ci_matches_scipy_t_interval():
    from scipy import stats

    x = np.random.default_rng(0).normal(size=25)
    c = mean_ci(x)
    lo, hi = stats.t.interval(0.95, 24, loc=x.mean(), scale=stats.sem(x))
    np.testing.assert_allclose([c.lo, c.hi], [lo, hi], rtol=1e-12)
    assert mean_ci([0.3, 0.3, 0.3])[1:3] == (0.3, 0.3)  # no spread, no width
    assert np.isinf(mean_ci([1.0]).hi)
    d = paired_diff_ci(x + 1.0, x)  # a planted constant shift comes back exactly, with zero width
    np.testing.assert_allclose([d.mean, d.lo, d.hi], [1.0, 1.0, 1.0], rtol=1e-12)
    with pytest.raises(ValueError):
        mean_ci([np.nan, 1.0])


# ------------------------------------------------------------------------------------------------- S7

S7 = lora_pissa.LoraPissaConfig(
    ranks=(2,), lrs=(1e-2,), steps=2, prompts_per_step=4, group_size=4, minibatches=2,
    n_seeds=1, eval_k=1, mask_rank=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def s7_inits(base):
    return lora_pissa.cell_inits(S7, base, 2, 1e-2, [0])


def _effective(cfg, state, frozen):
    return make_train(cfg, MCFG, TASK).effective(state, frozen)


def test_lora_initial_update_is_exactly_zero(s7_inits, base):
    specs, inits, step_cfg = s7_inits
    r = [s["kind"] for s in specs].index("lora")
    eff = _effective(step_cfg, *inits[r])
    for name, w in base.params.items():
        np.testing.assert_array_equal(np.asarray(eff[name]), w, err_msg=name)


def test_pissa_initial_merge_is_w0_to_rounding(s7_inits, base):
    specs, inits, step_cfg = s7_inits
    r = [s["kind"] for s in specs].index("pissa")
    state, frozen = inits[r]
    eff = _effective(step_cfg, state, frozen)
    s = step_cfg.adapter.scale
    for name, w in base.params.items():
        if name not in state.master:
            np.testing.assert_array_equal(np.asarray(eff[name]), w, err_msg=name)
            continue
        a, b = state.master[name]
        part = s * np.asarray(matmul(b, a))
        # (W0 − P) + P in float32: two roundings, each at most half an ulp of its result
        bound = 2 * F32_EPS * (np.abs(w) + np.abs(part))
        assert np.all(np.abs(np.asarray(eff[name]) - w) <= bound), name
        # planted answer: the adapter is W0's top-r part (bf16-rounded factors), all its energy in the top-r span
        energy = float(spectral.subspace_energy_fraction(w, part, 2))
        assert energy >= 1 - 4 * eps(jnp.bfloat16), (name, energy)


def test_update_geometry_controls(base):
    name = "model.layers.0.mlp.up_proj.weight"
    w0 = jnp.asarray(base.params[name])
    zero = lora_pissa.update_geometry(w0, w0, 2, 4, 0.5)
    assert zero["nss"] == 0.0 and zero["changed_frac"] == 0.0 and np.isnan(zero["energy"])
    u, sv, v = spectral.top_k(w0, 2)
    planted = lora_pissa.update_geometry(w0, w0 + 0.3 * matmul(u * sv[None, :], v.T), 2, 4, 0.5)
    assert planted["energy"] >= 1 - 100 * F32_EPS  # all of the update in the top-2 span
    np.testing.assert_allclose(planted["overlap_null"], 0.5)
    dw = 0.01 * jax.random.normal(jax.random.key(1), w0.shape)
    rand = lora_pissa.update_geometry(w0, w0 + dw, 2, 4, 0.5)
    # isotropic null k²/(mn): Beta(k²/2, (mn−k²)/2), std ≈ null·√(2/k²); 10 null is > 10 std away
    assert rand["energy"] < 10 * rand["energy_null"]
    assert planted["energy"] > 100 * rand["energy"]


def test_lora_and_pissa_share_one_step(s7_inits, base):
    """Both kinds of a cell run through LoRA's compiled step: the step depends on the arrays only, so PiSSA's
    run through it equals PiSSA's own `fit`."""
    specs, inits, step_cfg = s7_inits
    r = [s["kind"] for s in specs].index("pissa")
    res = fit_batched(step_cfg, MCFG, TASK, [inits[r]], [0])
    params = {k: jnp.asarray(v) for k, v in base.params.items()}
    own = fit(S7.train_config("pissa", 2, 1e-2, 0), MCFG, TASK, params)
    first = {k: v for k, v in own.logs[0].items() if k != "seconds"}
    assert res.logs[0][0] == first


# ----------------------------------------------------------------------------------- quick sims (slow)


@pytest.mark.parametrize("module", [sparse_rl, lora_pissa], ids=["sparse-rl", "lora-pissa"])
def test_quick_sim_writes_its_contract(module, tmp_path):
    result = module.run(tmp_path, "quick", 0)
    d = tmp_path / module.NAME
    on_disk = json.loads((d / "result.json").read_text())
    assert on_disk["sim"] == module.NAME and on_disk["size"] == "quick"
    assert len(on_disk["claims"]) >= 4
    for c in on_disk["claims"]:
        assert c["verdict"] in VERDICTS and c["observed"] and c["paper"]
    for rel in (*result["figures"], *result["data"]):
        assert (d / rel).stat().st_size > 0
    runs = [json.loads(s) for s in (d / "runs.jsonl").read_text().splitlines()]
    if module is sparse_rl:
        assert len(runs) == len(sparse_rl.MASKS) * sparse_rl.SIZES["quick"].n_seeds
        assert all(r["masked_entries_changed"] == 0 for r in runs)
    else:
        q = lora_pissa.SIZES["quick"]
        assert len(runs) == 2 * len(q.ranks) * len(q.lrs) * q.n_seeds


def test_same_seed_same_numbers(s6_runs, base):
    _, res = s6_runs
    _, again = sparse_rl.train_runs(S6, base, [3])
    assert again.logs == res.logs

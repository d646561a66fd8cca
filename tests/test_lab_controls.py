"""Controls and gate checks of the RL lab on the tiny model: the bf16 base, zero updates, resume, DAPO refill,
and the Gate I / Gate III records (`threegate.lm.gates`)."""

import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from _interrupt import Stop, stop_at

from threegate.kl import fisher_form_categorical
from threegate.lm.config import LlamaConfig
from threegate.lm.fit import GATES_FILE, LOG_FILE, fit
from threegate.lm.model import init_params
from threegate.lm.tasks import CharTask
from threegate.lm.train import TrainConfig, make_train, select_groups

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=32, n_layers=2, max_seq_len=16)


def bits(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16)).view(np.uint16)


@pytest.fixture(scope="module")
def params0():
    return init_params(MCFG, jax.random.key(0))


# --------------------------------------------------------------------------------- zero update, bf16 base


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_zero_gradient_changes_no_stored_bit(params0, weight_decay):
    # Constant reward: every GRPO advantage is 0, so the gradient is exactly 0 and only weight decay acts
    # (a relative move lr·wd = 1e-7, far below half an ULP, 2^-9).
    task = CharTask("modadd", modulus=7, reward_correct=1.0, reward_wrong=1.0)
    cfg = TrainConfig(
        algo="grpo", steps=3, lr=1e-5, weight_decay=weight_decay, prompts_per_step=4, group_size=4
    )
    res = fit(cfg, MCFG, task, params0)
    assert all(r["grad_norm"] == 0.0 for r in res.logs)
    assert all(r["sparsity"] == 1.0 for r in res.logs)
    for name, w in params0.items():
        np.testing.assert_array_equal(bits(res.state.stored[name]), bits(w), err_msg=name)
        if weight_decay == 0.0:  # nothing at all moves, not even the master
            base = np.asarray(jnp.asarray(w).astype(jnp.bfloat16).astype(jnp.float32))
            np.testing.assert_array_equal(np.asarray(res.state.master[name]), base)


def _decay_only(master):
    """One AdamW step with a zero gradient (lr·wd = 1e-7): only weight decay moves the master."""
    opt = optax.adamw(1e-5, weight_decay=0.01)
    with jax.numpy_dtype_promotion("standard"):
        upd, _ = opt.update(jnp.zeros_like(master), opt.init(master), master)
    return master + upd


def test_off_grid_master_flips_ties_under_weight_decay_alone():
    # The control for the test above: a float32 master that is NOT on the bf16 grid (a dequantized GGUF) has
    # entries next to rounding ties, and weight decay alone (zero gradient) tips those over.
    rng = np.random.default_rng(0)
    bf = rng.normal(0, 0.02, 100_000).astype(ml_dtypes.bfloat16)
    bf = bf[np.abs(bf.astype(np.float32)) > 1e-3]
    lower = np.nextafter(bf, np.zeros_like(bf))  # the bf16 neighbour toward zero
    tie = (bf.astype(np.float32) + lower.astype(np.float32)) / 2  # exact in float32
    above = np.nextafter(tie, bf.astype(np.float32))  # one float32 ulp on bf's side of the tie
    assert (above.astype(ml_dtypes.bfloat16) == bf).all()
    moved = bits(_decay_only(jnp.asarray(above))) != bits(above)
    # decay pulls |w| down by 1e-7·|w|, 1 to 2 float32 ulps: onto or across the tie, and the stored weight changes
    # for more than half of them (a landing exactly on the tie rounds to even)
    assert moved.mean() > 0.5
    on_grid = jnp.asarray(bf.astype(np.float32))  # the fix: start the master on the grid
    assert (bits(_decay_only(on_grid)) != bits(on_grid)).sum() == 0


def test_master_starts_on_the_bf16_grid(params0):
    cfg = TrainConfig(algo="grpo", steps=1, prompts_per_step=4, group_size=4)
    state, frozen = make_train(cfg, MCFG, TASK).init(params0, jax.random.key(0))
    for name, w in params0.items():
        m = np.asarray(state.master[name])
        np.testing.assert_array_equal(m, m.astype(jnp.bfloat16).astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(bits(frozen.ref[name]), bits(w))


# ----------------------------------------------------------------------------------------------- resume


def _strip(recs):
    return [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in recs]


def test_resume_gives_the_same_run(params0, tmp_path):
    cfg = TrainConfig(
        algo="grpo", steps=4, lr=3e-3, prompts_per_step=4, group_size=4, minibatches=2, seed=3
    )
    full = fit(cfg, MCFG, TASK, params0, out=tmp_path / "a", checkpoint_steps=[2])

    with pytest.raises(Stop):
        fit(cfg, MCFG, TASK, params0, out=tmp_path / "b", checkpoint_steps=[2], callback=stop_at(3))
    logged = [json.loads(x) for x in (tmp_path / "b" / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3]
    resumed = fit(cfg, MCFG, TASK, params0, out=tmp_path / "b", checkpoint_steps=[2], resume=True)
    assert _strip(resumed.logs) == _strip(full.logs)
    for name in params0:
        np.testing.assert_array_equal(
            np.asarray(resumed.state.master[name]), np.asarray(full.state.master[name])
        )
    on_disk = [json.loads(x) for x in (tmp_path / "b" / LOG_FILE).read_text().splitlines()]
    assert _strip(on_disk) == _strip(full.logs)
    other = TrainConfig(algo="grpo", steps=4, lr=1e-3, prompts_per_step=4, group_size=4, seed=3)
    with pytest.raises(ValueError, match="different configuration"):
        fit(other, MCFG, TASK, params0, out=tmp_path / "b", resume=True)


# ------------------------------------------------------------------------------------------------- DAPO


def test_select_groups_puts_mixed_groups_first():
    r = jnp.asarray([[1, 1], [0, 1], [0, 0], [1, 0], [1, 1]], jnp.float32)
    assert select_groups(r, 2).tolist() == [1, 3]
    assert select_groups(r, 3).tolist() == [1, 3, 0]  # then all-equal ones, in sampling order


class _ParityTask(CharTask):
    """The char task with a reward set by the parity of the completion's first token (jnp, fused path)."""

    def score(self, p, completion, mask=None):
        good = jnp.asarray(completion)[:, 0] % 2 == 0
        return jnp.where(good, 1.0, -1.0).astype(jnp.float32), good


def test_dapo_refill_keeps_mixed_groups_on_the_fused_path(params0):
    task = _ParityTask("modadd", modulus=7)
    base = dict(algo="dapo", steps=1, lr=1e-3, prompts_per_step=4, group_size=2, minibatches=1)
    fns = make_train(TrainConfig(**base, dapo_max_rounds=4), MCFG, task)
    state, frozen = fns.init(params0, jax.random.key(0))
    b, _ = jax.jit(fns.sample_batch)(state, frozen, jax.random.key(5))
    r = np.asarray(b.rewards).reshape(4, 2)
    assert (r[:, 0] != r[:, 1]).all()  # 16 groups drawn, the first 4 mixed ones kept
    fns1 = make_train(TrainConfig(**base, dapo_max_rounds=1), MCFG, task)
    b1, _ = jax.jit(fns1.sample_batch)(state, frozen, jax.random.key(5))
    r1 = np.asarray(b1.rewards).reshape(4, 2)
    assert not (r1[:, 0] != r1[:, 1]).all()  # without the refill some group of 2 is all-equal


class _HostTask(CharTask):
    """The char task verified on the host (the SmolLM2 path of `fit`), with a reward set by the completion's
    first token: its parity (`parity=True`, so groups are mixed) or a constant (all groups all-equal)."""

    jax_native = False

    def __init__(self, parity: bool):
        super().__init__("modadd", modulus=7)
        object.__setattr__(self, "parity", parity)

    def score(self, p, completion, mask=None):
        first = np.asarray(completion)[:, 0]
        good = first % 2 == 0 if self.parity else np.zeros(first.shape, bool)
        return np.where(good, 1.0, -1.0).astype(np.float32), good


@pytest.mark.parametrize("parity", [True, False])
def test_dapo_refills_on_the_host_path(params0, parity):
    cfg = TrainConfig(
        algo="dapo", steps=2, lr=1e-3, prompts_per_step=4, group_size=4, minibatches=1,
        dapo_max_rounds=3, temperature=2.0,
    )  # fmt: skip
    res = fit(cfg, MCFG, _HostTask(parity), params0)
    for rec in res.logs:
        if parity:  # mixed groups are plentiful: the batch is refilled with them only
            assert rec["kept_frac"] == 1.0 and 4 <= rec["sampled_groups"] <= 12
        else:  # no group is ever mixed: every round is drawn, and nothing carries weight
            assert rec["sampled_groups"] == 12 and rec["kept_frac"] == 0.0


# ------------------------------------------------------------------------------------------------ gates


def test_fisher_form_matches_the_explicit_fisher(rng):
    z = rng.normal(size=(3, 7))
    dz = rng.normal(size=(3, 7))
    with jax.enable_x64(True):
        got = np.asarray(fisher_form_categorical(jnp.asarray(z), jnp.asarray(dz)))
    for i in range(3):
        p = np.exp(z[i] - z[i].max())
        p /= p.sum()
        # F over the logits themselves: diag(p) - p pᵀ
        want = dz[i] @ (np.diag(p) - np.outer(p, p)) @ dz[i]
        np.testing.assert_allclose(got[i], want, rtol=1e-12)


@pytest.fixture(scope="module")
def gated_run(params0, tmp_path_factory):
    out = tmp_path_factory.mktemp("gates")
    # SFT: from scratch every RL group would be all-wrong (zero advantage); cross-entropy always moves
    cfg = TrainConfig(algo="sft", steps=3, lr=1e-4, prompts_per_step=8, minibatches=1, seed=1)
    fit(cfg, MCFG, TASK, params0, out=out, gates_steps=[1, 3])
    return [json.loads(x) for x in (out / GATES_FILE).read_text().splitlines()]


def test_gate3_predicts_every_stored_change_exactly(gated_run):
    assert [r["step"] for r in gated_run] == [1, 3]
    for rec in gated_run:
        g3 = rec["gate3"]
        assert g3["mismatches"] == 0
        assert g3["actual"] == g3["predicted"] > 0
        assert sum(t["actual"] for t in g3["tensors"].values()) == g3["actual"]
        assert 0 <= g3["below_half_ulp_fraction"] <= 1


def test_gate1_kl_matches_its_quadratic_form_for_a_small_step(gated_run):
    for rec in gated_run:
        g1 = rec["gate1"]
        assert g1["tokens"] > 0 and g1["kl_per_token"] >= 0
        # KL(pi+ || pi) = ½ΔᵀFΔ + O(|Δ|³) (Lemma F.5): at lr 1e-4 the cubic term is small
        assert 0.8 < g1["kl_over_quad"] < 1.25, g1
        assert "f9_bound_per_token" not in g1  # SFT has no clipping


def test_gate1_record_of_a_null_update_and_the_clip_bound(params0):
    from threegate.lm.gates import gate1_record

    cfg = TrainConfig(algo="grpo", steps=1, prompts_per_step=4, group_size=4, minibatches=1)
    fns = make_train(cfg, MCFG, TASK)
    state, frozen = fns.init(params0, jax.random.key(0))
    batch, _ = jax.jit(fns.sample_batch)(state, frozen, jax.random.key(1))
    rec = gate1_record(
        state.stored, state.stored, MCFG, batch, temperature=1.0, eps_low=0.2, eps_high=0.28
    )
    # Δ = 0 exactly, so the tangent and the quadratic form are 0; the KL of two forwards of the same weights is
    # 0 up to float32 rounding of the two (differently fused) computations
    assert rec["quad_per_token"] == 0.0 and rec["kl_per_token"] < 1e-12
    assert rec["f9_premise_fraction"] == 1.0 and rec["max_abs_log_ratio"] < 1e-5
    assert rec["f9_bound_per_token"] == pytest.approx(max(-np.log(0.8), np.log(1.28)))

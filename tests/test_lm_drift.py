"""Drift efficiency (`threegate.lm.drift`) and the trainer's path-length accumulator (`TrainConfig.track_drift`):
exact on hand-computed trajectories, bitwise equal to the realised master moves, zero for a zero update, and kept
across a resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _interrupt import Stop, stop_at

from threegate.lm.config import LlamaConfig
from threegate.lm.drift import drift_efficiency, drift_efficiency_map
from threegate.lm.fit import fit
from threegate.lm.model import init_params
from threegate.lm.tasks import CharTask
from threegate.lm.train import TrainConfig, make_train

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
RL = dict(algo="grpo", lr=3e-3, prompts_per_step=4, group_size=4, minibatches=1, seed=3)


@pytest.fixture(scope="module")
def params0():
    return init_params(MCFG, jax.random.key(0))


def test_hand_computed_trajectories():
    # three coordinates: moves +1 +1 −1 (net 1, path 3), +2 −2 (net 0, path 4), never moved
    w0 = jnp.zeros(3)
    w = jnp.asarray([1.0, 0.0, 0.0])
    travel = jnp.asarray([3.0, 4.0, 0.0])
    e = np.asarray(drift_efficiency_map(w, w0, travel))
    np.testing.assert_array_equal(e[:2], np.float32([1 / 3, 0.0]))
    assert np.isnan(e[2])
    assert float(drift_efficiency({"a": w}, {"a": w0}, {"a": travel})) == pytest.approx(1 / 7)
    # a monotone walk is fully efficient; nothing moved counts as 1
    assert float(drift_efficiency([w], [w0], [jnp.abs(w - w0)])) == 1.0
    assert float(drift_efficiency([w0], [w0], [jnp.zeros(3)])) == 1.0


def test_travel_is_the_sum_of_the_realised_master_moves(params0):
    # SFT (from scratch every GRPO group is all-wrong: no gradient) without momentum (b1 = 0): each move
    # follows its batch's gradient sign, so some moves cancel
    cfg = TrainConfig(**{**RL, "algo": "sft"}, steps=6, track_drift=True, b1=0.0)
    fns = make_train(cfg, MCFG, TASK)
    state, frozen = fns.init(params0, jax.random.key(1))
    step = jax.jit(fns.step)
    master0 = {k: np.asarray(v) for k, v in state.master.items()}
    prev, want = master0, {k: np.zeros_like(v) for k, v in master0.items()}
    for t in range(6):
        state, metrics = step(state, frozen, jax.random.key(10 + t))
        now = {k: np.asarray(v) for k, v in state.master.items()}
        for k in want:  # float32, in the trainer's order: t += |new − old|
            want[k] = want[k] + np.abs(now[k] - prev[k])
        prev = now
    moved = 0
    for k in want:
        np.testing.assert_array_equal(np.asarray(state.travel[k]), want[k], err_msg=k)
        moved += int(np.count_nonzero(want[k]))
    assert moved > 0
    net = sum(np.abs(np.float64(prev[k]) - master0[k]).sum() for k in want)
    path = sum(np.float64(want[k]).sum() for k in want)
    assert 0 < net / path < 1  # the moves partly cancel
    assert float(metrics["drift_efficiency"]) == pytest.approx(net / path, rel=1e-4)


def test_zero_update_travels_nowhere(params0):
    task = CharTask("modadd", modulus=7, reward_correct=1.0, reward_wrong=1.0)  # every advantage 0
    cfg = TrainConfig(steps=2, track_drift=True, weight_decay=0.0, **RL)
    res = fit(cfg, MCFG, task, params0)
    assert all(float(jnp.max(t)) == 0.0 for t in jax.tree.leaves(res.state.travel))
    assert [r["drift_efficiency"] for r in res.logs] == [1.0, 1.0]


def test_off_by_default_and_refused_with_adapters(params0):
    from threegate.lm.adapters import AdapterConfig

    res = fit(TrainConfig(steps=1, **RL), MCFG, TASK, params0)
    assert res.state.travel is None and "drift_efficiency" not in res.logs[0]
    with pytest.raises(ValueError, match="full fine-tuning"):
        TrainConfig(track_drift=True, adapter=AdapterConfig(rank=2))


def test_resume_keeps_the_path_length(params0, tmp_path):
    cfg = TrainConfig(steps=3, track_drift=True, **RL)
    full = fit(cfg, MCFG, TASK, params0, out=tmp_path / "a", checkpoint_steps=[2])

    with pytest.raises(Stop):
        fit(cfg, MCFG, TASK, params0, out=tmp_path / "b", checkpoint_steps=[2], callback=stop_at(3))
    resumed = fit(cfg, MCFG, TASK, params0, out=tmp_path / "b", checkpoint_steps=[2], resume=True)
    assert [r["drift_efficiency"] for r in resumed.logs] == [
        r["drift_efficiency"] for r in full.logs
    ]
    for k in params0:
        np.testing.assert_array_equal(
            np.asarray(resumed.state.travel[k]), np.asarray(full.state.travel[k])
        )

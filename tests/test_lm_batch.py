"""The step's batch (`threegate.lm.batch`): DAPO's one refill rule against a plain-Python reference of App. C.1,
and the fused (jit, all rounds) and host (lazy rounds) samplers giving the same batch for the same keys."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate.lm.batch import host_sample_batch, refill_done, refill_keep, select_groups
from threegate.lm.config import LlamaConfig
from threegate.lm.model import init_params
from threegate.lm.tasks import CharTask
from threegate.lm.train import TrainConfig, make_train


def _reference_refill(rewards: np.ndarray, p: int) -> list[int]:
    """App. C.1 as a loop: draw rounds until p mixed groups are held (or none is left), then take the mixed groups
    of the drawn rounds in order and pad with all-equal ones in order."""
    k, n, _ = rewards.shape
    held: list[tuple[int, bool]] = []
    for r in range(k):
        held += [(r * n + i, bool(np.any(g != g[0]))) for i, g in enumerate(rewards[r])]
        if sum(m for _, m in held) >= p:
            break
    return ([i for i, m in held if m] + [i for i, m in held if not m])[:p]


@pytest.mark.parametrize("seed", range(40))
def test_refill_keep_is_the_papers_rule(seed):
    rng = np.random.default_rng(seed)
    k, p, g = (int(rng.integers(lo, hi)) for lo, hi in ((1, 5), (1, 6), (2, 4)))
    # a per-round chance of mixed groups from none to all, so every stopping round occurs
    rewards = (rng.random((k, p, g)) < rng.random((k, 1, 1))).astype(np.float32)
    want = _reference_refill(rewards, p)
    assert np.asarray(refill_keep(jnp.asarray(rewards), p)).tolist() == want
    if refill_done(rewards[:1].reshape(-1, g), p):
        assert want == list(range(p))  # the first round suffices: the batch is that round, in order


def test_refill_keep_on_drawn_rounds_is_select_groups():
    r = jnp.asarray([[[1, 1], [0, 1]], [[0, 0], [1, 0]]], jnp.float32)  # 1 mixed group, then 1 more
    assert refill_keep(r, 2).tolist() == select_groups(r.reshape(-1, 2), 2).tolist() == [1, 3]


class _ParityTask(CharTask):
    """The char task with a reward set by the parity of the completion's first token (mixed groups are common,
    but not every round has P of them)."""

    def score(self, p, completion, mask=None):
        good = jnp.asarray(completion)[:, 0] % 2 == 0
        return jnp.where(good, 1.0, -1.0).astype(jnp.float32), good


@pytest.mark.parametrize("step_seed", range(4))
def test_fused_and_host_samplers_give_the_same_batch(step_seed):
    task = _ParityTask("modadd", modulus=7)
    mcfg = LlamaConfig.tiny(task.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
    cfg = TrainConfig(
        algo="dapo", steps=1, prompts_per_step=4, group_size=2, dapo_max_rounds=3, temperature=2.0
    )
    fns = make_train(cfg, mcfg, task)
    state, frozen = fns.init(init_params(mcfg, jax.random.key(0)), jax.random.key(1))
    key = jax.random.key(100 + step_seed)
    fused, k_fused = jax.jit(fns.sample_batch)(state, frozen, key)
    roll = functools.partial(jax.jit(fns.rollout), state, frozen)
    host, k_host, timing = host_sample_batch(task, roll, key, prompts=4, group=2, refill_rounds=3)
    assert 4 <= timing["sampled_groups"] <= 12
    np.testing.assert_array_equal(jax.random.key_data(k_fused), jax.random.key_data(k_host))
    for name, a, b in zip(fused._fields, fused, host, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)

"""The algorithm registry (threegate.lm.algorithms), on-policy SFT (rft), the Task protocol, and the split step.

Tiny sizes: the 2-layer d=64 Llama of test_lm_train on modular addition mod 7 (character vocabulary).
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from threegate.lm.algorithms import (
    ALGORITHMS,
    LossSettings,
    LossTerms,
    weighted_cross_entropy,
)
from threegate.lm.config import LlamaConfig
from threegate.lm.evaluation import eval_report
from threegate.lm.losses import sft_loss
from threegate.lm.model import init_params
from threegate.lm.tasks import CharTask, Task, TextTask
from threegate.lm.train import ALGOS, TrainConfig, make_train

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=64, n_layers=2, max_seq_len=16)
SETTINGS = LossSettings(0.2, 0.2, "token", 0.0, "k3")


@pytest.fixture(scope="module")
def params0():
    return init_params(MCFG, jax.random.key(0))


def test_registry_defines_the_config():
    assert ALGOS == tuple(ALGORITHMS) and "rft" in ALGOS
    for name, algo in ALGORITHMS.items():
        cfg = TrainConfig(algo=name)
        assert cfg.algorithm is algo
        assert cfg.group == (cfg.group_size if algo.samples_groups else 1)
        assert cfg.normalization == algo.normalization
        assert cfg.clip_high == (cfg.eps_low if algo.eps_high is None else algo.eps_high)
        assert cfg.loss_settings.eps_high == cfg.clip_high
        assert cfg.dynamic_refill == algo.refills
    assert TrainConfig(algo="dapo", eps_high=0.5).clip_high == 0.5
    assert not TrainConfig(algo="rft", epochs=2).needs_old_pass  # no ratio, no old-policy pass
    assert TrainConfig(algo="grpo", epochs=2).needs_old_pass
    TrainConfig(algo="rft", group_size=1)  # rejection sampling needs no group baseline
    with pytest.raises(ValueError, match="group_size"):
        TrainConfig(algo="grpo", group_size=1)


def test_advantages_keep_rows_prompt_major():
    rewards = jnp.asarray([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
    correct = rewards > 0
    for name, algo in ALGORITHMS.items():
        adv, keep = algo.advantages(rewards, correct, 2, True)
        assert adv.shape == keep.shape == rewards.shape and keep.dtype == jnp.float32, name
    adv, keep = ALGORITHMS["dapo"].advantages(rewards, correct, 2, True)
    assert keep.tolist() == [1, 1, 0, 0, 0, 0, 1, 1]  # groups (1, 1) and (-1, -1) are all-equal
    adv, keep = ALGORITHMS["rft"].advantages(rewards, correct, 2, True)
    assert keep.tolist() == correct.astype(jnp.float32).tolist() and adv.tolist() == [1.0] * 8


def test_weighted_cross_entropy_is_sft_on_the_kept_rows(rng):
    logp = -jnp.asarray(rng.uniform(0.1, 3.0, size=(4, 5)), jnp.float32)
    mask = jnp.asarray(rng.uniform(size=(4, 5)) < 0.8).at[:, 0].set(True)
    keep = jnp.asarray([1.0, 0.0, 1.0, 0.0])
    ones = jnp.ones(4)
    terms = LossTerms(logp, mask, None, None, ones, keep)
    got, clip = weighted_cross_entropy(terms, SETTINGS)
    want = sft_loss(logp[::2], mask[::2])
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    assert float(clip) == 0.0
    none = weighted_cross_entropy(terms._replace(keep=jnp.zeros(4)), SETTINGS)[0]
    assert float(none) == 0.0


def _rft_step(params0, correct_rows, scramble_wrong=False):
    cfg = TrainConfig(
        algo="rft", steps=1, lr=1e-2, prompts_per_step=2, group_size=4, minibatches=1,
        weight_decay=0.0, kl_metrics=False,
    )  # fmt: skip
    fns = make_train(cfg, MCFG, TASK)
    state, frozen = fns.init(params0, jax.random.key(0))
    b, k = jax.jit(fns.sample_batch)(state, frozen, jax.random.key(1))
    correct = jnp.asarray(correct_rows)
    b = b._replace(correct=correct, rewards=jnp.where(correct, 1.0, -1.0))
    if scramble_wrong:  # other tokens on the rejected rows
        other = (b.completion + 5) % TASK.vocab_size
        b = b._replace(completion=jnp.where(correct[:, None], b.completion, other))
    master0 = jax.tree.map(np.asarray, state.master)
    new, metrics = jax.jit(fns.update)(state, frozen, b, k)
    return master0, new, metrics


def test_rft_has_zero_gradient_when_no_sample_is_correct(params0):
    master0, new, metrics = _rft_step(params0, [False] * 8)
    assert float(metrics["grad_norm"]) == 0.0 and float(metrics["loss"]) == 0.0
    assert float(metrics["kept_frac"]) == 0.0
    for name, w in new.master.items():
        np.testing.assert_array_equal(np.asarray(w), master0[name], err_msg=name)


def test_rft_trains_only_on_correct_samples(params0):
    rows = [True, False, False, True, False, False, False, True]
    _, new, metrics = _rft_step(params0, rows)
    _, other, metrics_other = _rft_step(params0, rows, scramble_wrong=True)
    assert float(metrics["grad_norm"]) > 0 and float(metrics["kept_frac"]) == 3 / 8
    # what the rejected samples say does not enter the update
    np.testing.assert_allclose(float(metrics["loss"]), float(metrics_other["loss"]), rtol=1e-6)
    for name, w in new.master.items():
        np.testing.assert_allclose(np.asarray(w), np.asarray(other.master[name]), rtol=0, atol=1e-7)


def test_rft_runs_in_the_scanned_train(params0):
    cfg = TrainConfig(algo="rft", steps=2, lr=1e-3, prompts_per_step=2, group_size=2, minibatches=1)
    state, metrics = jax.jit(make_train(cfg, MCFG, TASK).train)(params0, jax.random.key(3))
    assert int(state.step) == 2 and metrics["loss"].shape == (2,)
    assert bool(jnp.all(jnp.isfinite(metrics["kl_exact"])))


class _Tok:
    eos_id = 0
    alphabet = "\0 0123456789+=?:().\nabcdefghijklmnopqrstuvwxyzACRSTW"

    def encode(self, text):
        return [self.alphabet.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.alphabet[i] for i in ids)


def test_tasks_implement_the_protocol():
    text = TextTask(_Tok(), prompt_len=60, max_new_tokens=4, chat=False, ranges=((1, 1), (2, 1)))
    for task in (TASK, CharTask("addition", n_digits=2), text):
        assert isinstance(task, Task)
        ev = task.eval_problems(10, seed=1)
        assert (
            len(set(zip(np.asarray(ev.a).tolist(), np.asarray(ev.b).tolist(), strict=True))) == 10
        )
        assert not task.heldout(task.sample(jax.random.key(0), 50)).any()  # never trained on
    assert TASK.jax_native and not text.jax_native
    assert TASK.strata(TASK.all_problems()) is None
    ev = text.eval_problems(10)
    assert text.heldout(ev).all() and sorted(set(text.strata(ev))) == ["1+1", "2+1"]
    assert text.replies(np.asarray([_Tok().encode("12\0 3")])) == ["12"]


def test_eval_report_uses_strata_and_replies(params0):
    rep = eval_report(
        params0, MCFG, TASK, TASK.eval_problems(8), jax.random.key(0), k=1, batch_size=8
    )
    assert rep["n"] == 8 and "per_range" not in rep and "examples" not in rep
    tok = _Tok()
    text = TextTask(tok, prompt_len=44, max_new_tokens=3, chat=False, ranges=((1, 1), (2, 1)))
    mcfg = LlamaConfig.tiny(len(tok.alphabet), d_model=32, n_layers=1, max_seq_len=48)
    params = init_params(mcfg, jax.random.key(1))
    ev = text.eval_problems(6)
    rep = eval_report(params, mcfg, text, ev, jax.random.key(0), k=1, batch_size=8)
    assert sorted(rep["per_range"]) == ["1+1", "2+1"] and len(rep["examples"]) == 6
    assert sum(r["n"] for r in rep["per_range"].values()) == 6


# ------------------------------------------------------------------------- behaviour kept (two code paths)


@pytest.mark.parametrize("algo", ["sft", "grpo", "dapo", "reinforce"])
def test_minibatch_loss_is_the_losses_module_formula(params0, algo):
    """The registry-driven loss equals `threegate.lm.losses` applied as the trainer did before the registry."""
    from threegate.lm.logprobs import completion_hidden, token_logprobs
    from threegate.lm.losses import clipped_pg_loss
    from threegate.lm.model import unembedding
    from threegate.lm.train import minibatch_loss

    cfg = TrainConfig(algo=algo, prompts_per_step=2, group_size=4, minibatches=1, temperature=1.5)
    fns = make_train(cfg, MCFG, TASK)
    state, frozen = fns.init(params0, jax.random.key(0))
    b, _ = jax.jit(fns.sample_batch)(state, frozen, jax.random.key(2))
    mixed = jnp.arange(b.rewards.shape[0]) % 3 == 0
    b = b._replace(rewards=jnp.where(mixed, 1.0, -1.0), correct=mixed)
    adv, keep = cfg.algorithm.advantages(b.rewards, b.correct, cfg.group, cfg.dynamic_sampling)
    params = jax.tree.map(lambda x: x.astype(jnp.float32), state.stored)
    loss, _ = jax.jit(minibatch_loss, static_argnames=("cfg", "mcfg"))(
        params, frozen, b, None, None, adv, keep, cfg=cfg, mcfg=MCFG
    )
    if algo == "sft":
        h = completion_hidden(params, MCFG, b.prompts, b.prompt_mask, b.targets, b.target_mask)
        logp = token_logprobs(h, unembedding(params, MCFG), b.targets, temperature=1.0)
        want = sft_loss(logp, b.target_mask)
    else:
        h = completion_hidden(
            params, MCFG, b.prompts, b.prompt_mask, b.completion, b.completion_mask
        )
        logp = token_logprobs(h, unembedding(params, MCFG), b.completion, temperature=1.5)
        want = clipped_pg_loss(
            logp, logp, jnp.broadcast_to(adv[:, None], logp.shape), b.completion_mask,
            eps_low=0.2, eps_high=0.28 if algo == "dapo" else 0.2,
            normalization="sequence" if algo == "grpo" else "token", seq_weight=keep,
        ).loss  # fmt: skip
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-6, atol=1e-7)


def test_the_cli_offers_every_algorithm_and_mask():
    from threegate.cli import train as cli_train
    from threegate.lm.train import MASK_KINDS

    assert cli_train.ALGO_NAMES == ALGOS
    assert cli_train.MASK_NAMES == MASK_KINDS


_GOLDEN = Path(__file__).parent / "data" / "golden_train_logs.json"


def _machine() -> dict[str, str]:
    """What exact float32 results depend on: backend, JAX and jaxlib versions, and the CPU (XLA's CPU code
    generation follows the instruction set, so two x86 machines can round a reduction differently)."""
    import hashlib
    import platform

    import jaxlib

    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        info = []
    model = next(
        (x.split(":", 1)[1].strip() for x in info if x.startswith("model name")),
        platform.processor(),
    )
    flags = next((x.split(":", 1)[1].split() for x in info if x.startswith("flags")), [])
    return {
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "cpu": model,
        "cpu_flags": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16],
    }


def _golden_runs() -> dict[str, list[dict]]:
    """3 steps of four configurations after a 40-step SFT warm-up, as `fit` logs them (times aside)."""
    from threegate.lm.adapters import AdapterConfig
    from threegate.lm.fit import fit

    warm = TrainConfig(
        algo="sft", steps=40, lr=1e-2, prompts_per_step=32, minibatches=1, weight_decay=0.0,
        kl_metrics=False,
    )  # fmt: skip
    start = fit(warm, MCFG, TASK, init_params(MCFG, jax.random.key(0))).params
    base = dict(steps=3, lr=1e-3, prompts_per_step=4, group_size=8, minibatches=2, seed=1)
    runs = {
        "grpo_beta_mask": TrainConfig(
            algo="grpo", beta=0.1, mask="safe", mask_rank=4, epochs=2, **base
        ),
        "dapo": TrainConfig(algo="dapo", **base),
        "sft": TrainConfig(algo="sft", **base),
        "reinforce_lora": TrainConfig(
            algo="reinforce", adapter=AdapterConfig(rank=2), **{**base, "minibatches": 1}
        ),
    }
    return {
        name: [
            {k: v for k, v in r.items() if k != "seconds"} for r in fit(cfg, MCFG, TASK, start).logs
        ]
        for name, cfg in runs.items()
    }


@pytest.mark.slow
def test_fit_reproduces_the_recorded_logs():
    """`fit`'s records, exactly, against those recorded (`python tests/test_lm_algorithms.py --record`) before a
    restructuring of the lab (the registry of algorithms; the one DAPO refill rule, which re-recorded `dapo`).
    Exact float32 equality only holds on the machine that recorded them (`_machine`); elsewhere it skips."""
    golden = json.loads(_GOLDEN.read_text())
    here = _machine()
    if golden.get("machine") != here:
        pytest.skip(f"logs recorded on {golden.get('machine')}, this is {here}")
    got = _golden_runs()
    for name, logs in golden["runs"].items():
        assert got[name] == logs, name


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_lm_algorithms.py --record")
    _GOLDEN.write_text(json.dumps({"machine": _machine(), "runs": _golden_runs()}, indent=1) + "\n")
    print(f"wrote {_GOLDEN}")

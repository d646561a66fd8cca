"""The controlled study's probes (`threegate.lm.probes`) against float64 NumPy references on a tiny model, and
the float32-storage ablation of the trainer (`TrainConfig.storage`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _interrupt import Stop, stop_at

from threegate.lm import probes
from threegate.lm.config import LlamaConfig
from threegate.lm.model import forward, init_params

MCFG = LlamaConfig.tiny(40, d_model=32, n_layers=2, max_seq_len=64)


@pytest.fixture(scope="module")
def two_models():
    p = init_params(MCFG, jax.random.key(0))
    q = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.key(1), x.shape), p)
    return p, q


def _log_softmax64(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _samples(rng, b=5, t=6, n=4):
    prompts = rng.integers(0, 40, (b, t)).astype(np.int32)
    pmask = np.ones((b, t), bool)
    pmask[0, :2] = False  # left padding
    comp = rng.integers(0, 40, (b, n)).astype(np.int32)
    cmask = np.ones((b, n), bool)
    cmask[1, 2:] = False  # a completion that ended early
    return probes.Samples(
        prompts=prompts, prompt_mask=pmask, completion=comp, completion_mask=cmask
    )


def _ref_kl(p, q, s, temperature):
    """Float64: KL(p‖q) of the next-token distributions at every completion position, summed per row."""
    full = np.concatenate([s["prompts"], s["completion"]], 1)
    mask = np.concatenate([s["prompt_mask"], s["completion_mask"]], 1)
    t = s["prompts"].shape[1]
    lp = _log_softmax64(np.asarray(forward(p, MCFG, full, mask=mask), np.float64) / temperature)
    lq = _log_softmax64(np.asarray(forward(q, MCFG, full, mask=mask), np.float64) / temperature)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)[:, t - 1 : -1]
    return (kl * s["completion_mask"]).sum(1), s["completion_mask"].sum(1)


def test_sequence_kl_matches_float64_and_is_zero_against_itself(two_models):
    p, q = two_models
    s = _samples(np.random.default_rng(0))
    sums, counts = probes.sequence_kl(
        p, q, MCFG, s, temperature=0.7, batch=2
    )  # a padded last batch
    want, wc = _ref_kl(p, q, s, 0.7)
    np.testing.assert_array_equal(counts, wc)
    np.testing.assert_allclose(sums, want, rtol=2e-4, atol=1e-6)
    assert (sums > 0).all()
    back, _ = probes.sequence_kl(q, p, MCFG, s, temperature=0.7)
    np.testing.assert_allclose(back, _ref_kl(q, p, s, 0.7)[0], rtol=2e-4, atol=1e-6)
    same, _ = probes.sequence_kl(p, p, MCFG, s, temperature=0.7)
    np.testing.assert_allclose(same, 0.0, atol=1e-6)
    rec = probes.kl_record(sums, counts)
    assert rec["per_token"] == pytest.approx(sums.sum() / counts.sum())
    assert rec["ci"][0] < rec["per_token"] < rec["ci"][1] and rec["tokens"] == counts.sum()


def test_text_nll_matches_float64(two_models):
    p, _ = two_models
    ids = np.random.default_rng(1).integers(0, 40, 3 * 16 + 5).astype(np.int32)
    rec = probes.text_nll(p, MCFG, ids, window=16, batch=2)
    w = ids[: 3 * 16].reshape(3, 16)
    lp = _log_softmax64(np.asarray(forward(p, MCFG, w), np.float64))
    nll = -np.take_along_axis(lp[:, :-1], w[:, 1:, None], -1)[..., 0]
    assert rec["windows"] == 3 and rec["tokens"] == 45
    assert rec["nats_per_token"] == pytest.approx(nll.mean(), rel=1e-5)
    with pytest.raises(ValueError, match="two windows"):
        probes.text_nll(p, MCFG, ids[:20], window=16)


def test_float32_storage_changes_every_weight_and_says_what_bf16_would_keep(tmp_path):
    from safetensors.numpy import load_file

    from threegate.lm.run import EvalSpec, ModelSpec, RunSpec, TaskSpec, run_experiment
    from threegate.lm.sparse import unchanged_fraction
    from threegate.lm.train import TrainConfig

    def spec(storage):
        train = TrainConfig(
            algo="sft", steps=3, lr=1e-4, prompts_per_step=8, minibatches=2, storage=storage,
            track_drift=True,
        )  # fmt: skip
        return RunSpec(train, ModelSpec("tiny"), TaskSpec(), EvalSpec(enabled=False, size=16), 1)

    f32 = run_experiment(spec("float32"), tmp_path / "f32")
    bf16 = run_experiment(spec("bfloat16"), tmp_path / "bf16")
    last = f32.fit.logs[-1]
    assert (
        last["sparsity"] < 0.01 < last["sparsity_bf16"]
    )  # every weight moves; rounding would keep some
    assert bf16.fit.logs[-1]["sparsity"] > 0.0 and "sparsity_bf16" not in bf16.fit.logs[-1]
    stored = load_file(sorted((tmp_path / "f32" / "step_000003").glob("*.safetensors"))[0])
    assert {str(v.dtype) for v in stored.values()} == {"float32"}
    # the logged counterfactual is Def 2.1 on bf16(master) against the base, recomputed here
    base = load_file(sorted((tmp_path / "f32" / "step_000000").glob("*.safetensors"))[0])
    rounded = {k: jnp.asarray(v).astype(jnp.bfloat16) for k, v in stored.items()}
    ref = {k: jnp.asarray(v).astype(jnp.bfloat16) for k, v in base.items()}
    want = unchanged_fraction(rounded, ref)
    assert last["sparsity_bf16"] == pytest.approx(float(want["sparsity"]), abs=1e-6)


def test_float32_storage_resumes_to_the_same_records(tmp_path):
    from threegate.lm.fit import fit
    from threegate.lm.tasks import CharTask
    from threegate.lm.train import TrainConfig

    task = CharTask("modadd", modulus=7)
    mcfg = LlamaConfig.tiny(task.vocab_size, d_model=32, n_layers=2, max_seq_len=16)
    params0 = init_params(mcfg, jax.random.key(0))
    cfg = TrainConfig(
        algo="grpo", steps=4, lr=3e-3, prompts_per_step=4, group_size=4, minibatches=1,
        storage="float32", track_drift=True,
    )  # fmt: skip
    whole = fit(cfg, mcfg, task, params0, out=tmp_path / "a", checkpoint_every=2)

    with pytest.raises(Stop):
        fit(cfg, mcfg, task, params0, out=tmp_path / "b", checkpoint_every=2, callback=stop_at(3))
    again = fit(cfg, mcfg, task, params0, out=tmp_path / "b", checkpoint_every=2, resume=True)
    drop = ("seconds", "rollout_seconds", "update_seconds")
    strip = lambda logs: [{k: v for k, v in r.items() if k not in drop} for r in logs]  # noqa: E731
    assert strip(again.logs) == strip(whole.logs)
    for k in params0:  # the resumed master is float32 and the stored copy is the master itself
        np.testing.assert_array_equal(
            np.asarray(again.state.master[k]), np.asarray(whole.state.master[k])
        )
        assert again.state.stored[k].dtype == jnp.float32


def test_storage_must_be_known():
    from threegate.lm.train import TrainConfig

    with pytest.raises(
        (ValueError, TypeError), match="storage"
    ):  # the annotation is checked first under pytest
        TrainConfig(storage="float16")

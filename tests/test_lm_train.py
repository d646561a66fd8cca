"""The RL lab's trainer (threegate.lm.train / fit / checkpoint / tasks, and `threegate train`).

Tiny sizes throughout: a 2-layer d=64 Llama on modular addition mod 7 (character vocabulary). Compiles dominate
the cost, so runs that share a configuration share one fixture (and `fit`'s compile cache).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from threegate.lm.adapters import AdapterConfig
from threegate.lm.checkpoint import load_checkpoint, save_checkpoint, step_dir
from threegate.lm.config import LlamaConfig
from threegate.lm.fit import LOG_FILE, evaluate, fit
from threegate.lm.model import forward, init_params
from threegate.lm.tasks import EOS, CharTask, TextTask, decode_chars
from threegate.lm.train import Batch, TrainConfig, is_linear_name, make_train, train_seeds

TASK = CharTask("modadd", modulus=7)
MCFG = LlamaConfig.tiny(TASK.vocab_size, d_model=64, n_layers=2, max_seq_len=16)
EVAL = TASK.all_problems()
U16 = np.uint16


def bits(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x).astype(jnp.bfloat16)).view(U16)


@pytest.fixture(scope="module")
def params0():
    return init_params(MCFG, jax.random.key(0))


# ---------------------------------------------------------------------------------------------- tasks


def test_char_task_prompts_references_and_verifier():
    p = TASK.all_problems()
    assert p.a.shape == (49,)
    prompts, pmask = TASK.prompts(p)
    refs, _ = TASK.references(p)
    assert prompts.shape == (49, TASK.prompt_len) and bool(jnp.all(pmask))
    i = 3 * 7 + 5  # a = 3, b = 5
    assert decode_chars(prompts[i]) == "^3+5%7="
    assert decode_chars(refs[i]) == "1$"
    reward, correct = TASK.score(p, refs)
    assert bool(jnp.all(correct)) and float(jnp.min(reward)) == 1.0
    wrong = refs.at[:, 0].set(refs[:, 0] % 10 + 4)  # another digit
    reward, correct = TASK.score(p, wrong)
    assert not bool(jnp.any(correct)) and float(jnp.max(reward)) == -1.0
    add = CharTask("addition", n_digits=2, reward_wrong=0.0)
    q = add.sample(jax.random.key(1), 5)
    r, _ = add.references(q)
    for k in range(5):
        s = decode_chars(r[k])
        assert s.endswith("$") and int(s[:-1]) == int(q.a[k]) + int(q.b[k]) and len(s) == 4
    assert float(jnp.min(add.score(q, r[:, :1].repeat(4, axis=1))[0])) == 0.0
    with pytest.raises((ValueError, TypeError)):
        CharTask("multiply")


class _CharTokenizer:
    """A stand-in tokenizer for TextTask: one id per character, id 0 = EOS."""

    eos_id = 0
    alphabet = "\0 0123456789+=?:().\nabcdefghijklmnopqrstuvwxyzACRSTW"

    def encode(self, text):
        return [self.alphabet.index(c) for c in text]

    def decode(self, ids):
        return "".join(self.alphabet[i] for i in ids)


def test_text_task_formats_and_parses():
    tok = _CharTokenizer()
    task = TextTask(tok, "addition", prompt_len=30, max_new_tokens=6, chat=False, style="qa")
    from threegate.lm.tasks import Problems

    p = Problems(jnp.asarray([23, 7]), jnp.asarray([45, 9]))
    prompts, mask = task.prompts(p)
    assert prompts.shape == (2, 30) and mask[:, -1].all() and not mask[:, 0].any()
    assert tok.decode(prompts[0][mask[0]].tolist()) == "What is 23+45? Answer:"
    refs, rmask = task.references(p)
    assert tok.decode(refs[0][rmask[0]].tolist()) == " 68\0"
    comp = np.asarray([tok.encode(" 68\0 1"), tok.encode("9=16\0 ")])
    reward, correct = task.score(p, comp)
    assert correct.tolist() == [True, True] and reward.tolist() == [1.0, 1.0]
    assert task.parse(np.asarray([tok.encode(" ? :  ")]))[0] is None
    assert (
        task.parse(np.asarray([tok.encode("7+9=16")]))[0] == 9
    )  # cut off after a digit: "16" may be "160"
    with pytest.raises(ValueError, match="prompt_len"):
        TextTask(tok, prompt_len=5, chat=False, style="qa").prompts(p)


def test_compute_style_prompt_reference_and_robust_verifier():
    tok = _CharTokenizer()
    task = TextTask(tok, prompt_len=60, max_new_tokens=8, chat=False)
    from threegate.lm.tasks import Problems

    p = Problems(jnp.asarray([17, 3, 40]), jnp.asarray([8, 4, 2]))
    prompts, mask = task.prompts(p)
    assert tok.decode(prompts[0][mask[0]].tolist()) == "Compute 17 + 8. Reply with only the number."
    refs, rmask = task.references(p)
    assert tok.decode(refs[0][rmask[0]].tolist()) == "25\0"
    replies = ["25", "3 + 4 = 7.", "40 + 2 = 42\n\nSo 42"]
    comp = np.full((3, 20), 0, np.int32)
    for i, r in enumerate(replies):
        comp[i, : len(r)] = tok.encode(r)
    assert task.score(p, comp)[1].tolist() == [True, True, True]
    # the answer line decides: a later line cannot rescue a wrong first line, an operand is not an answer
    from threegate.lm.tasks import parse_reply

    assert parse_reply("17 + 8\n25") is None  # the answer line echoes the question
    assert parse_reply("The sum is 25.") == 25
    assert (
        parse_reply("Compute 0 + 7.") is None and parse_reply("0 + 7") is None
    )  # an echo is no answer
    assert parse_reply("17 + 8 = 25.") == 25
    assert parse_reply("") is None and parse_reply("= .") is None


def test_heldout_split_is_disjoint_and_stratified():
    from threegate.lm.tasks import is_heldout, parse_ranges

    task = TextTask(_CharTokenizer(), ranges=parse_ranges("2+1,2+2"), chat=False)
    ev = task.eval_problems(200)
    a, b = np.asarray(ev.a), np.asarray(ev.b)
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) == 200  # distinct
    assert is_heldout(a, b).all()
    assert (
        sorted(set(task.range_of(ev))) == ["2+1", "2+2"] and task.range_of(ev).count("2+1") == 100
    )
    train = task.sample(jax.random.key(3), 4000)
    assert not is_heldout(np.asarray(train.a), np.asarray(train.b)).any()
    # a + b and b + a are held out together: no commuted twin of an eval problem is ever trained on
    assert not is_heldout(np.asarray(train.b), np.asarray(train.a)).any()
    np.testing.assert_array_equal(is_heldout(a, b), is_heldout(b, a))
    assert not np.array_equal(is_heldout(a, b, commuted=False), is_heldout(b, a, commuted=False))
    share = is_heldout(np.arange(10, 100).repeat(90), np.tile(np.arange(10, 100), 90)).mean()
    assert abs(share - 0.2) < 0.02
    with pytest.raises(ValueError, match="operand range"):
        parse_ranges("2+x")


# ------------------------------------------------------------------------------------------- config


def test_train_config_validation():
    assert TrainConfig(algo="dapo").clip_high == 0.28
    assert TrainConfig(algo="grpo").clip_high == 0.2
    assert TrainConfig(algo="dapo").normalization == "token"
    assert TrainConfig(algo="grpo").normalization == "sequence"
    for bad in (
        dict(algo="ppo"),
        dict(group_size=1),
        dict(prompts_per_step=6, minibatches=4),
        dict(mask="top"),
        dict(mask="safe", adapter=AdapterConfig()),
        dict(kl_estimator="k2"),
    ):
        with pytest.raises((ValueError, TypeError)):
            TrainConfig(**bad)


# ------------------------------------------------------- masks, mixed precision, checkpoints, logs

MASKED = TrainConfig(
    algo="grpo",
    steps=3,
    lr=1e-2,
    weight_decay=0.5,
    prompts_per_step=4,
    group_size=4,
    minibatches=2,
    mask="safe",
    mask_alpha=0.5,
    mask_rank=4,
    beta=0.1,
    seed=1,
)


@pytest.fixture(scope="module")
def masked_run(params0, tmp_path_factory):
    out = tmp_path_factory.mktemp("masked")
    return out, fit(MASKED, MCFG, TASK, params0, out=out)


def test_masked_entries_stay_bitwise_unchanged(masked_run, params0):
    _, res = masked_run
    masks = res.frozen.masks
    assert sorted(masks) == sorted(n for n in params0 if is_linear_name(n))
    n_changed_free = 0
    for name, m in masks.items():
        m = np.asarray(m)
        assert 0.5 <= m.mean() < 1.0  # "safe" = low-magnitude ∪ non-principal
        before, after = bits(params0[name]), bits(res.state.stored[name])
        np.testing.assert_array_equal(after[~m], before[~m])
        master = np.asarray(res.state.master[name])
        # the master starts from the bf16 base, f32(bf16(W0)), and masked entries never leave it
        base = np.asarray(jnp.asarray(params0[name]).astype(jnp.bfloat16).astype(jnp.float32))
        np.testing.assert_array_equal(master[~m], base[~m])
        n_changed_free += int(np.sum(after[m] != before[m]))
    assert n_changed_free > 0  # the unmasked entries did train
    for name in params0:
        if not is_linear_name(name) and name.endswith("embed_tokens.weight"):
            assert np.any(bits(res.state.stored[name]) != bits(params0[name]))


def test_stored_params_are_bf16_of_master(masked_run):
    _, res = masked_run
    for name, w in res.state.stored.items():
        assert w.dtype == jnp.bfloat16 and res.state.master[name].dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(w).view(U16), bits(res.state.master[name]))


def test_logs_and_checkpoints(masked_run, params0):
    out, res = masked_run
    lines = [json.loads(s) for s in (out / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    for key in ("reward", "accuracy", "kl_k1", "kl_k3", "kl_exact", "entropy", "loss", "grad_norm",
                "clip_frac", "sparsity", "sparsity_linear", "seconds"):  # fmt: skip
        assert all(np.isfinite(r[key]) for r in lines), key
    assert (
        lines[0]["kl_exact"] == 0.0 or lines[0]["kl_exact"] < 1e-6
    )  # step 1 samples from the base itself
    cfg0, step0 = load_checkpoint(step_dir(out, 0))
    assert cfg0 == MCFG
    for name, w in params0.items():
        assert step0[name].dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(step0[name]).view(U16), bits(w))
    _, last = load_checkpoint(step_dir(out, 3))
    same = total = 0
    for name, w in res.state.stored.items():
        a, b = np.asarray(last[name]).view(U16), np.asarray(w).view(U16)
        np.testing.assert_array_equal(a, b)
        same += int(np.sum(a == bits(params0[name])))
        total += a.size
    np.testing.assert_allclose(lines[-1]["sparsity"], same / total, rtol=1e-6)


def test_checkpoint_round_trip_is_bitwise(tmp_path, rng):
    params = {
        "model.norm.weight": rng.normal(size=(7,)).astype(ml_dtypes.bfloat16),
        "model.embed_tokens.weight": rng.normal(size=(16, 64)).astype(np.float32),
    }
    save_checkpoint(tmp_path / "c", params, MCFG, max_shard_bytes=200)
    cfg, back = load_checkpoint(tmp_path / "c")
    assert cfg == MCFG and sorted(back) == sorted(params)
    np.testing.assert_array_equal(
        np.asarray(back["model.norm.weight"]).view(U16), params["model.norm.weight"].view(U16)
    )
    want = (
        params["model.embed_tokens.weight"].astype(ml_dtypes.bfloat16).view(U16)
    )  # f32 → bf16 by RNE
    np.testing.assert_array_equal(np.asarray(back["model.embed_tokens.weight"]).view(U16), want)


def test_same_seed_same_logs(masked_run, params0):
    _, res = masked_run
    again = fit(MASKED, MCFG, TASK, params0)  # compile cache: same config
    strip = lambda logs: [{k: v for k, v in r.items() if k != "seconds"} for r in logs]  # noqa: E731
    assert strip(again.logs) == strip(res.logs)
    other = fit(TrainConfig(**{**MASKED.__dict__, "seed": 2}), MCFG, TASK, params0)
    assert strip(other.logs) != strip(res.logs)


@pytest.mark.slow
def test_kl_estimators_agree_with_exact_kl(params0):
    """Through the trainer's update: logged k1/k3 means are unbiased estimates of the exact token-wise KL."""
    cfg = TrainConfig(
        algo="grpo", steps=1, lr=1e-6, prompts_per_step=64, group_size=8, minibatches=1
    )
    fns = make_train(cfg, MCFG, TASK)
    state, frozen = fns.init(params0, jax.random.key(0))
    ref = init_params(MCFG, jax.random.key(7))  # a different reference: KL of order 1e-2
    frozen = frozen._replace(ref=jax.tree.map(lambda x: x.astype(jnp.bfloat16), ref))
    problems = jax.tree.map(lambda x: jnp.repeat(x, 8, axis=0), TASK.sample(jax.random.key(3), 64))
    prompts, pmask = TASK.prompts(problems)
    out = jax.jit(fns.rollout)(state, frozen, prompts, pmask, jax.random.key(4))
    rewards, correct = TASK.score(problems, out.tokens)
    targets, tmask = TASK.references(problems)
    batch = Batch(prompts, pmask, out.tokens, out.mask, rewards, correct, targets, tmask)
    _, metrics = jax.jit(fns.update)(state, frozen, batch, jax.random.key(5))
    # float64 references from the two models' logits on the sampled sequences
    full = jnp.concatenate([prompts, out.tokens], axis=1)
    t = prompts.shape[1]

    def logp64(p):
        z = np.asarray(forward(p, MCFG, full), np.float64)[:, t - 1 : -1]
        return (
            z
            - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
            - z.max(-1, keepdims=True)
        )

    lp, lq = logp64(state.stored), logp64(frozen.ref)
    m = np.asarray(out.mask)
    tok = np.asarray(out.tokens)
    exact = (np.exp(lp) * (lp - lq)).sum(-1)[m]
    d = np.take_along_axis(lq - lp, tok[:, :, None], -1)[:, :, 0][m]
    k1, k3 = -d, np.expm1(d) - d
    np.testing.assert_allclose(float(metrics["kl_exact"]), exact.mean(), rtol=1e-4)
    np.testing.assert_allclose(float(metrics["kl_k1"]), k1.mean(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(float(metrics["kl_k3"]), k3.mean(), rtol=1e-4)
    assert exact.mean() > 1e-3
    for k in (k1, k3):  # unbiased: within 4 standard errors of the exact KL
        assert abs(k.mean() - exact.mean()) <= 4 * k.std() / np.sqrt(k.size)


# ------------------------------------------------------------------------------ learning (slow)

SFT = TrainConfig(
    algo="sft", steps=100, lr=1e-2, prompts_per_step=64, minibatches=4, weight_decay=0.0
)


@pytest.fixture(scope="module")
def sft_run(params0, tmp_path_factory):
    out = tmp_path_factory.mktemp("sft")
    return out, fit(SFT, MCFG, TASK, params0, out=out, checkpoint_every=5)


@pytest.mark.slow
def test_sft_learns_from_scratch(sft_run, params0):
    _, res = sft_run
    before = evaluate(params0, MCFG, TASK, EVAL, jax.random.key(0))
    after = evaluate(res.params, MCFG, TASK, EVAL, jax.random.key(0))
    assert before["accuracy"] < 0.2
    assert after["accuracy"] > 0.5, after


@pytest.mark.slow
def test_grpo_raises_reward_of_partial_sft(sft_run):
    out, _ = sft_run
    # the first SFT checkpoint that half-solves the task (greedy accuracy in [0.25, 0.75])
    start = None
    for s in range(5, SFT.steps + 1, 5):
        _, p = load_checkpoint(step_dir(out, s))
        acc = evaluate(p, MCFG, TASK, EVAL, jax.random.key(0))["accuracy"]
        print(f"SFT step {s}: greedy accuracy {acc:.3f}")
        if 0.25 <= acc <= 0.75:
            start = p
            break
    assert start is not None, "no half-trained SFT checkpoint"
    cfg = TrainConfig(
        algo="grpo", steps=40, lr=1e-3, prompts_per_step=32, group_size=8, minibatches=2, seed=0
    )
    res = fit(cfg, MCFG, TASK, start)
    # expected reward of the sampling policy (T = 1): every problem 8 times, same key before and after
    ev8 = jax.tree.map(lambda x: jnp.tile(x, 8), EVAL)
    before = evaluate(start, MCFG, TASK, ev8, jax.random.key(0), greedy=False, batch_size=392)
    after = evaluate(res.params, MCFG, TASK, ev8, jax.random.key(0), greedy=False, batch_size=392)
    print("GRPO from partial SFT: sampled reward before", before, "after", after)
    assert after["reward"] > before["reward"] + 0.1, (before, after)
    assert all(np.isfinite(r["kl_k3"]) and r["kl_k3"] >= 0 for r in res.logs)


@pytest.mark.slow
def test_lora_training_keeps_base_frozen(params0):
    # SFT: from scratch every RL group is all-wrong (zero advantage), cross-entropy always has a gradient
    cfg = TrainConfig(
        algo="sft", steps=2, lr=1e-2, prompts_per_step=4, minibatches=2,
        adapter=AdapterConfig("lora", rank=2, alpha=4.0, targets=("q_proj", "v_proj")),
    )  # fmt: skip
    fns = make_train(cfg, MCFG, TASK)
    state, frozen = fns.init(params0, jax.random.key(0))
    eff0 = fns.effective(state, frozen)
    for name, w in params0.items():  # B = 0: the merged model is the (bf16) base, exactly
        base = jnp.asarray(w).astype(jnp.bfloat16).astype(jnp.float32)
        np.testing.assert_array_equal(np.asarray(eff0[name]), np.asarray(base))
    res = fit(cfg, MCFG, TASK, params0)
    for name, w in params0.items():
        changed = np.any(bits(res.params[name]) != bits(w))
        assert changed == (name.endswith(("q_proj.weight", "v_proj.weight"))), name


@pytest.mark.slow
def test_vmap_over_seeds(params0):
    cfg = TrainConfig(
        algo="dapo", steps=2, lr=1e-3, prompts_per_step=4, group_size=4, minibatches=2
    )
    states, metrics = train_seeds(cfg, MCFG, TASK, params0, [0, 1])
    assert metrics["reward"].shape == (2, 2)
    assert states.stored["model.norm.weight"].shape == (2, MCFG.d_model)
    assert not np.array_equal(np.asarray(metrics["entropy"][0]), np.asarray(metrics["entropy"][1]))
    # seed s of the vmapped scan is fit's run with seed s: the same key schedule (`run_keys`), so the same
    # first batch from the same base; later steps agree to the rounding of batched matmuls
    for i, seed in enumerate([0, 1]):
        logs = fit(dataclasses.replace(cfg, seed=seed), MCFG, TASK, params0).logs
        for k in ("reward", "accuracy", "gen_tokens"):
            assert float(metrics[k][i, 0]) == logs[0][k], k
        np.testing.assert_allclose(
            np.asarray(metrics["entropy"][i]), [r["entropy"] for r in logs], rtol=1e-4
        )


# ------------------------------------------------------------------------------------------------ CLI


@pytest.mark.slow
def test_cli_train_writes_logs_and_checkpoints(tmp_path):
    from threegate.checkpoints import open_checkpoint
    from threegate.cli import main

    out = tmp_path / "run"
    argv = ["train", "sft", "--model", "tiny", "--task", "modadd", "--steps", "2", "--prompts", "8",
            "--minibatches", "2", "--eval-size", "16", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(s) for s in (out / LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2] and {"reward", "accuracy", "kl_k3"} <= set(lines[0])
    for s in (0, 2):
        with open_checkpoint(step_dir(out, s)) as ck:
            assert "model.norm.weight" in ck.names()
            assert ck.load("model.norm.weight").dtype == ml_dtypes.bfloat16
    summary = json.loads((out / "eval.json").read_text())
    assert 0 <= summary["eval_after"]["accuracy"] <= 1
    assert (
        main(
            ["train", "grpo", "--model", str(tmp_path / "nope"), "--steps", "1", "--out", str(out)]
        )
        == 2
    )
    assert EOS == TASK.eos_id

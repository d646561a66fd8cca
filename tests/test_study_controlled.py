"""The controlled study's analysis on planted runs with known answers (`threegate.study.matching`), its grid
and specs, the top-|ΔW| checkpoint of the storage ablation, the new intervals against SciPy, and the on-policy
SFT loss against a float64 reference. The end-to-end quick preset is in `test_study_controlled_smollm2.py`."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from threegate.claims import VERDICTS
from threegate.lm.algorithms import ALGORITHMS, LossTerms
from threegate.lm.train import TrainConfig
from threegate.stats import corr_ci, ratio_ci, welch_diff_ci
from threegate.study.controlled import PRESETS, grid, run_spec, top_update_checkpoint
from threegate.study.matching import (
    analyse_rows,
    at_level,
    matched_at_levels,
    matched_lr,
    predict_sparsity,
    with_deltas,
)

# ----------------------------------------------------------------------------------------------- at_level


@given(
    a=st.floats(-10, 10),
    b=st.floats(-10, 10),
    slope=st.floats(0.01, 5),
    n=st.integers(2, 8),
    frac=st.floats(0, 1),
)
def test_at_level_is_exact_on_linear_trajectories(a, b, slope, n, frac):
    xs = [slope * t for t in range(n)]
    ys = [a + b * x for x in xs]
    level = frac * xs[-1]
    got = at_level(xs, ys, level)
    want = a + b * level
    assert got is not None
    assert abs(got - want) <= 1e-12 * (1 + abs(a) + abs(b) * xs[-1]) * 8


def test_at_level_first_crossing_none_when_never_reached_and_decreasing_paths():
    assert at_level([0, 1, 2], [0, 10, 20], 3) is None
    assert (
        at_level([0, 2, 1, 3], [0, 2, 100, 3], 1.5) == 1.5
    )  # the first crossing, not the later one
    assert at_level([3, 1], [30, 10], 2) == 20
    assert at_level([0, 1], [None, 1], 0.5) is None
    assert at_level([0, 1, 2], [5, 6, 7], 2) == 7


# ---------------------------------------------------------------------------------------- planted rows


def _rows(planted_forgetting: float = 0.0, kl_slope: dict | None = None, noise: float = 0.01):
    """Runs whose every metric is a function of the forward KL alone, the same for all methods, plus
    `planted_forgetting` for rft; each method reaches a different KL per update (`kl_slope`)."""
    kl_slope = kl_slope or {"grpo": 1.0, "sft": 3.0, "rft": 1.5}
    rng = np.random.default_rng(0)
    base = {
        "run": "base", "step": 0, "accuracy": 0.2, "forward_kl": {"per_token": 0.0},
        "reverse_kl": {"per_token": 0.0}, "text": {"nats_per_token": 2.5},
        "cloze": {"accuracy": 0.98, "margin": 6.0},
    }  # fmt: skip
    rows = []
    for lr in (1e-6, 1e-5):
        for m in ("grpo", "sft", "rft"):
            for seed in (0, 1, 2):
                name = f"{m}-{lr}-{seed}"
                for step in (0, 1, 2, 3, 4):
                    kl = kl_slope[m] * lr * 1e5 * step * (1 + noise * rng.standard_normal())
                    r = dict(base) | {
                        "run": name, "method": m, "lr": lr, "seed": seed, "storage": "bfloat16",
                        "step": step, "updates": 4 * step, "cell": f"{m}-{lr}",
                    }  # fmt: skip
                    if step:
                        e = noise * rng.standard_normal()
                        r |= {
                            "forward_kl": {"per_token": kl},
                            "reverse_kl": {"per_token": kl},
                            "accuracy": 0.2 + 0.5 * kl + e,
                            "text": {"nats_per_token": 2.5 + 0.3 * kl + (planted_forgetting if m == "rft" else 0) + e},
                            "cloze": {"accuracy": 0.98, "margin": 6.0 - kl},
                            "sparsity_all": 1 - 0.2 * kl + e,
                            "sparsity_linear": 1 - 0.2 * kl + e,
                            "overlap_principal_lift@64": 1 + 0.1 * kl + e,
                            "max_angle_deg@64": 2 * kl + e,
                            "nss@64": 0.01 * kl + e * 0.01,
                            "log_drift_efficiency": 0.5,
                            "log_drift_travel": lr * 4 * step,
                            "log_sparsity": 1 - 0.2 * kl + e,
                        }  # fmt: skip
                    rows.append(r)
    return rows


HIST = {"all": {"-10": 1000, "-8": 1000, "-6": 1000, "zero": 10}}


def test_no_difference_at_matched_kl_when_there_is_none_but_one_at_matched_lr():
    rows = _rows()
    rows = with_deltas(rows)
    kl = matched_at_levels(
        rows, "forward_kl", ["sparsity_all", "max_angle_deg@64"], [("grpo", "sft")]
    )
    assert kl["levels"]
    for r in kl["rows"]:
        c = r["sparsity_all"]
        assert c["lo"] <= 0 <= c["hi"]  # the same function of KL: no difference once KL is matched
        assert abs(c["mean"]) < 0.01
    lr = matched_lr(rows, ["sparsity_all"], [("grpo", "sft")])
    end = [r for r in lr if r["step"] == 4]
    # SFT moves three times as far per update: at the same lr and step GRPO is sparser, clearly
    assert all(r["sparsity_all"]["lo"] > 0 for r in end)


def test_a_planted_on_policy_difference_is_found():
    rows = _rows(planted_forgetting=0.2)
    study = analyse_rows(
        rows, preset_name="planted", lrs=(1e-6, 1e-5), base_sparsity=HIST, ks=(64,)
    )
    found = [
        r["forgetting_nats"]
        for r in study["matched_kl"]["rows"]
        if (r["a"], r["b"]) == ("rft", "sft") and r.get("forgetting_nats")
    ]
    assert found and all(c["lo"] > 0.1 and c["hi"] < 0.3 for c in found)
    none = [
        r["forgetting_nats"]
        for r in study["matched_kl"]["rows"]
        if (r["a"], r["b"]) == ("grpo", "sft") and r.get("forgetting_nats")
    ]
    assert none and all(c["lo"] <= 0 <= c["hi"] for c in none)
    ids = [c["id"] for c in study["claims"]]
    assert len(ids) == len(set(ids)) and all(c["verdict"] in VERDICTS for c in study["claims"])
    assert "competing.forgetting_tracks_forward_kl" in ids
    by = {c["id"]: c for c in study["claims"]}
    assert by["competing.forgetting_tracks_forward_kl"]["verdict"] == "agrees"
    # the paper's sparsity claim at matched KL: no planted difference, so not "agrees"
    assert by["matched_kl.sparser"]["verdict"] == "inconclusive"
    assert by["matched_lr.sparser"]["verdict"] == "agrees"


def test_predict_sparsity_by_hand():
    h = {"-8": 3, "-7": 1, "zero": 1}  # half-ULPs 2^-16 (×3) and 2^-15 (×1); one zero
    assert predict_sparsity(h, 0.0) == 1.0
    assert (
        predict_sparsity(h, 2.0**-17, "step") == 4 / 5
    )  # below both thresholds: only the zero changes
    assert predict_sparsity(h, 2.0**-15.5, "step") == 1 / 5  # between them
    assert predict_sparsity(h, 1.0, "step") == 0.0
    d = 2.0**-16
    want = (3 * (1 - math.exp(-1)) + (1 - math.exp(-2))) / 5
    assert predict_sparsity(h, d) == pytest.approx(want, rel=1e-15)


# ------------------------------------------------------------------------------------------- the grid


def test_the_full_grid_is_the_issue_s_design():
    p = PRESETS["full"]
    runs = grid(p)
    bf16 = [r for r in runs if r.storage == "bfloat16"]
    assert len(p.lrs) >= 3 and max(p.lrs) / min(p.lrs) >= 10 and len(p.seeds) == 2
    assert len(bf16) >= 18 and {r.method for r in bf16} == {"grpo", "sft", "rft"}
    ablation = [r for r in runs if r.storage == "float32"]
    assert {(r.method, r.lr) for r in ablation} == {("grpo", 3e-6), ("sft", 3e-6)}
    assert len({r.name for r in runs}) == len(runs)
    assert p.checkpoints >= 4 and p.kl_prompts >= 64 and p.text_tokens >= 20000
    specs = [run_spec(p, r) for r in runs]
    # matched: the same prompts and optimizer updates per step, AdamW and task; only method/lr/seed/storage vary
    keys = {
        (s.train.prompts_per_step, s.train.minibatches, s.train.epochs, s.train.b1, s.train.b2,
         s.train.weight_decay, s.train.max_grad_norm, s.train.steps, s.task)
        for s in specs
    }  # fmt: skip
    assert len(keys) == 1
    assert all(s.train.track_drift and not s.eval.enabled for s in specs)


def test_top_update_checkpoint_keeps_the_largest_moves(tmp_path):
    from threegate.checkpoints import open_checkpoint, save_safetensors

    rng = np.random.default_rng(1)
    w0 = rng.standard_normal((6, 5)).astype(np.float32)
    dw = rng.standard_normal((6, 5)).astype(np.float32)
    b, t = tmp_path / "b", tmp_path / "t"
    save_safetensors({"w": w0, "v": w0[0]}, b)
    save_safetensors({"w": w0 + dw, "v": w0[0] + 1}, t)
    (t / "config.json").write_text("{}")
    out = top_update_checkpoint(b, t, {"w": 0.2}, tmp_path / "m")
    with open_checkpoint(out) as ck:
        w, v = ck.load("w"), ck.load("v")
    moved = (w != w0).ravel()
    assert moved.sum() == math.ceil(0.2 * 30)
    delta = (w0 + dw).astype(np.float64) - w0
    top = np.argsort(-np.abs(delta).ravel(), kind="stable")[: moved.sum()]
    assert set(np.flatnonzero(moved)) == set(top)
    np.testing.assert_array_equal(v, w0[0])  # no density: the base's values


# -------------------------------------------------------------------------------------------- intervals


def test_welch_and_corr_match_scipy():
    from scipy import stats

    rng = np.random.default_rng(2)
    a, b = rng.normal(1, 1, 7), rng.normal(0, 2, 5)
    c = welch_diff_ci(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert (c.lo, c.hi) == pytest.approx((ref.low, ref.high), rel=1e-10)
    x = rng.normal(size=20)
    y = x + rng.normal(size=20)
    r = corr_ci(x, y)
    ref = stats.pearsonr(x, y)
    ci = ref.confidence_interval()
    assert r.mean == pytest.approx(ref.statistic, rel=1e-12)
    assert (r.lo, r.hi) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_ratio_ci_is_the_pooled_mean_and_one_unit_has_no_interval():
    s, c = np.array([1.0, 4.0, 2.0]), np.array([1, 2, 2])
    r = ratio_ci(s, c)
    assert r.mean == 7 / 5 and r.lo < r.mean < r.hi
    assert math.isinf(ratio_ci([2.0], [4]).lo)
    # equal-length units: the delta-method interval is the t interval of the per-unit means
    from threegate.stats import mean_ci

    s = np.array([1.0, 2.0, 4.0, 3.0])
    m = mean_ci(s / 2)
    r = ratio_ci(s, np.full(4, 2.0))
    assert (r.lo, r.hi) == pytest.approx((m.lo, m.hi), rel=1e-12)
    with pytest.raises(ValueError):
        ratio_ci([1.0], [0])


# ------------------------------------------------------------------------------------ on-policy SFT loss


def test_rft_loss_matches_a_float64_reference():
    rng = np.random.default_rng(3)
    logp = -rng.uniform(0.05, 4.0, size=(6, 7))
    mask = rng.uniform(size=(6, 7)) < 0.7
    mask[:, 0] = True
    correct = np.array([1, 0, 1, 1, 0, 0], bool)
    rewards = np.where(correct, 1.0, -1.0)
    algo = ALGORITHMS["rft"]
    adv, keep = algo.advantages(jnp.asarray(rewards), jnp.asarray(correct), 3, True)
    terms = LossTerms(jnp.asarray(logp, jnp.float32), jnp.asarray(mask), None, None, adv, keep)
    got = float(algo.loss(terms, TrainConfig(algo="rft").loss_settings)[0])
    # float64: minus the mean log-probability over the tokens of the correct samples only
    want = -(logp * mask)[correct].sum() / mask[correct].sum()
    assert got == pytest.approx(want, rel=2e-6)

"""The numeric simulations S2 (gate1-leash), S3 (gate2-geometry), S8 (clip-leash) and the `threegate sim` command.

What the theory guarantees is asserted (Lemma F.9's per-step bound, the Gate I convergence rates, KL >= 0, the
rigorous Wedin bound, Weyl/Mirsky); what the paper only observed is checked to be *reported* with a verdict.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sims import REGISTRY, clip_leash
from sims._contract import VERDICTS
from threegate._numerics import bound_holds, tol
from threegate.autoregressive import (
    ar_advantages,
    ar_expected_return,
    clip_kl_bound,
    clipped_ratio_check,
    ratio_band_perturbation,
)
from threegate.cli import main

# ------------------------------------------------------------------------------------------- S8 (clip-leash)

S8_SIZE = clip_leash.ClipSize(t_len=5, n_tok=4, steps=40, seeds=3, n_mc=256)


@pytest.fixture(scope="module")
def s8_traces():
    return clip_leash.traces(S8_SIZE, seed=11)


def test_s8_per_step_kl_within_lemma_f9_everywhere(s8_traces):
    # Lemma F.9 is a theorem: every step of every run at every eps, exact and Monte-Carlo, within the bound.
    tr = s8_traces
    assert tr.kl_exact.shape == (len(clip_leash.EPSILONS), S8_SIZE.seeds, S8_SIZE.steps)
    assert tr.premise_exact.all() and tr.premise_mc.all()
    size = S8_SIZE.t_len * S8_SIZE.n_tok
    with jax.enable_x64(True):
        assert bool(jnp.all(bound_holds(tr.kl_exact, tr.bound, np.float64, size)))
        assert bool(jnp.all(bound_holds(tr.kl_mc, tr.bound, np.float64, size)))
    assert np.all(tr.kl_exact >= 0)  # KL >= 0
    eps = np.asarray(clip_leash.EPSILONS)[:, None, None]
    np.testing.assert_allclose(
        tr.bound, S8_SIZE.t_len * np.maximum(-np.log1p(-eps), np.log1p(eps)) + 0 * tr.bound
    )


def test_s8_learning_happens_and_cumulative_kl_grows(s8_traces):
    # Not a bound: a control that the runs do move (a zero step would make every check above vacuous).
    ret = s8_traces.expected_return
    assert np.all(ret[:, :, -1] > ret[:, :, 0])
    cum = s8_traces.cum_kl
    assert np.all(cum[:, :, 0] > 0) and np.all(cum[:, :, -1] > cum[:, :, 0])


def test_s8_kl_is_second_order_in_eps():
    # Taylor: KL(pi(1 + eps c) || pi) = eps^2/2 E[Var c] + O(eps^3) per conditional: log-log slope 2 at small eps.
    size = S8_SIZE._replace(steps=1, n_mc=8)
    epss = tuple(2.0 ** -np.arange(3, 9))
    tr = clip_leash.traces(size, seed=2, epsilons=epss)
    kl = tr.kl_exact[:, :, 0].mean(axis=1)
    assert stats.linregress(np.log(epss), np.log(kl)).slope == pytest.approx(2.0, abs=0.05)
    assert np.all(kl / (size.t_len * np.asarray(epss) ** 2) <= 0.5)  # E[Var c] <= 1 since |c| <= 1


def test_s8_zero_eps_changes_nothing_and_premise_removed_is_caught():
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        base = jnp.asarray(rng.normal(size=(4, 3, 3)))
        adv = jnp.asarray(rng.normal(size=(4, 3, 3)))
        same = ratio_band_perturbation(base, adv, 0.0)
        np.testing.assert_allclose(
            same, jax.nn.log_softmax(base, -1), rtol=0, atol=tol(np.float64, 3)
        )
        chk = clipped_ratio_check(same, base, 0.0)
        assert 0 <= float(chk.lhs) <= tol(np.float64, 3) ** 2 and bool(chk.premise)
        # a step twice as large as the clip allows: the premise check rejects it
        wide = ratio_band_perturbation(base, adv, 0.2)
        assert not bool(clipped_ratio_check(wide, base, 0.1).premise)


def _brute_force_q(logits: np.ndarray, reward: np.ndarray) -> tuple[np.ndarray, float]:
    """Q_t(s, y) by enumerating every continuation (float64 reference), and the expected return."""
    import itertools

    t_len, n, _ = logits.shape
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))

    def future(t, prev):
        if t == t_len:
            return 0.0
        total = 0.0
        for ys in itertools.product(range(n), repeat=t_len - t):
            p, ret, s = 1.0, 0.0, prev
            for j, y in enumerate(ys):
                p *= np.exp(logp[t + j, s, y])
                ret += reward[t + j, y]
                s = y
            total += p * ret
        return total

    q = np.array(
        [
            [[reward[t, y] + future(t + 1, y) for y in range(n)] for _ in range(n)]
            for t in range(t_len)
        ]
    )
    return q, future(0, 0)


def test_exact_advantages_match_enumeration():
    rng = np.random.default_rng(5)
    logits, reward = rng.normal(size=(3, 3, 3)), rng.normal(size=(3, 3))
    q, ret = _brute_force_q(logits, reward)
    pi = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    adv_ref = q - (pi * q).sum(-1, keepdims=True)
    with jax.enable_x64(True):
        adv = np.asarray(jax.jit(ar_advantages)(jnp.asarray(logits), jnp.asarray(reward)))
        got = float(jax.jit(ar_expected_return)(jnp.asarray(logits), jnp.asarray(reward)))
    np.testing.assert_allclose(adv, adv_ref, rtol=0, atol=tol(np.float64, 27))
    assert got == pytest.approx(ret, rel=1e-12)
    np.testing.assert_allclose((pi * adv).sum(-1), 0.0, atol=tol(np.float64, 3))
    assert float(clip_kl_bound(3, jnp.asarray(0.5))) == pytest.approx(3 * np.log(2))


# ---------------------------------------------------------------------------------- contract and the CLI


def _check_result(res: dict, out, name: str) -> None:
    on_disk = json.loads((out / name / "result.json").read_text())
    assert on_disk["sim"] == name and on_disk["claims"] == res["claims"]
    assert res["claims"] and all(c["verdict"] in VERDICTS for c in res["claims"])
    for c in res["claims"]:
        assert any(ch.isdigit() for ch in c["observed"]), c  # the number is in the observed string
    assert 1 <= len(res["figures"]) <= 2
    for rel in res["figures"] + res["data"]:
        assert (out / name / rel).stat().st_size > 0


def test_s8_run_contract_and_determinism(tmp_path):
    a = clip_leash.run(tmp_path / "a", "quick", 3)
    b = clip_leash.run(tmp_path / "b", "quick", 3)
    _check_result(a, tmp_path / "a", "clip-leash")
    assert a["claims"] == b["claims"] and a["summary"] == b["summary"]
    by_id = {c["id"]: c for c in a["claims"]}
    assert by_id["S8.per_step_kl_within_F9"]["verdict"] == "agrees"  # a theorem: must agree


def test_cli_list_names_all_eight(capsys):
    assert main(["sim", "--list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(REGISTRY) == 8
    for line, name in zip(lines, REGISTRY, strict=True):
        assert name in line and len(line.split(name, 1)[1].strip()) > 0


def test_cli_runs_one_sim_and_prints_claims(tmp_path, capsys):
    assert main(["sim", "clip-leash", "--out", str(tmp_path), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "S8.per_step_kl_within_F9" in out and "agrees" in out
    assert (tmp_path / "clip-leash" / "result.json").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sim"], "give a simulation name"),
        (["sim", "nope"], "unknown simulation"),
        (["sim", "clip-leash", "--seed", "-1"], "--seed"),
    ],
)
def test_cli_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err

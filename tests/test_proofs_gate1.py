"""Gate I checkers (Props 3.1, 3.2, D.1; Lemmas F.1–F.9) at tiny size: ids, verdicts, and broken variants that flip."""

import functools
import json

import jax.numpy as jnp
import numpy as np
import pytest

from proofs_numeric import load
from proofs_numeric.harness import Record, VerifyConfig, summarize

TINY = VerifyConfig(size="tiny", seed=0)

EXPECTED = {
    "3.1": "holds-asymptotically",
    "3.2": "holds-asymptotically",
    "D.1": "holds",
    "F.1": "violated-as-stated",
    "F.2": "holds",
    "F.3": "holds",
    "F.4": "holds-asymptotically",
    "F.5": "holds-asymptotically",
    "F.6": "holds",
    "F.7": "holds-asymptotically",
    "F.8": "holds-asymptotically",
    "F.9": "holds",
}


#: results with an extremal instance whose (limit) ratio is >= 0.9 in the paper form
TIGHT = ("3.1", "3.2", "F.2", "F.6", "F.7", "F.8", "F.9")
#: asymptotic results (and F.9's eps^2 regime), checked by fitted log-log slopes
RATES = ("3.1", "3.2", "F.4", "F.5", "F.7", "F.8", "F.9")


@functools.cache
def tiny(rid: str) -> tuple[Record, ...]:
    """The checker's records at tiny size, computed once per test session."""
    return tuple(load(rid).run(TINY))


@functools.cache
def verdict(rid: str) -> dict:
    return summarize(rid, tiny(rid))


@pytest.mark.parametrize("rid", sorted(EXPECTED))
def test_checker_verdict_at_tiny_size(rid):
    module = load(rid)
    assert module.ID == rid and module.KIND in ("exact", "asymptotic") and module.STATEMENT
    records = tiny(rid)
    assert records and {r.id for r in records} == {rid}
    assert all(r.dtype in ("float32", "float64") for r in records)
    summary = verdict(rid)
    json.dumps(summary)  # JSON-able
    assert summary["status"] == EXPECTED[rid], summary.get("counter_example")
    # every checker removes a premise somewhere, and that instance visibly fails
    assert summary["premise_false"] >= 1 and summary["premise_false_failures"] >= 1


@pytest.mark.parametrize("rid", TIGHT)
def test_nearly_tight(rid):
    """An extremal instance reaches lhs/rhs >= 0.9 (a bug inflating the right-hand side cannot pass)."""
    assert verdict(rid)["max_ratio"] >= 0.9


@pytest.mark.parametrize("rid", RATES)
def test_rates_fit(rid):
    """Every fitted log-log slope is within its tolerance of the rate the result predicts."""
    rates = [r for r in tiny(rid) if r.relation == "rate"]
    assert rates and all(r.holds for r in rates)
    for r in rates:
        tol = r.extra["slope_tol"]
        assert r.lhs >= r.rhs - tol if r.extra["at_least"] else abs(r.lhs - r.rhs) <= tol


def test_lemma_f_1_counter_example_to_half_l_and_corrected_form_tight():
    summary = verdict("F.1")
    # |f-g| / ((L/2)|D|^2) -> 2 on the extremal instance
    assert summary["counter_example"]["ratio"] > 1.5
    assert summary["corrected"]["violations"] == 0
    assert 0.9 <= summary["corrected"]["max_ratio"] <= 1.0


def test_prop_3_1_loglinear_identity_is_exact():
    records = [r for r in tiny("3.1") if r.kind == "identity"]
    assert records and all(
        r.holds and abs(r.lhs - r.rhs) <= 1e-13 * max(1.0, r.lhs) for r in records
    )


def test_broken_rotation_flips_prop_d_1(monkeypatch):
    """o_proj rotated by R_q^T instead of R_q: the block changes, so D.1 must be reported violated."""
    module = load("D.1")

    def wrong(p, r):
        r_kv, r_q = module._blockdiag(r, p.n_kv), module._blockdiag(r, p.n_q)
        return p._replace(
            v_proj=r_kv.T @ p.v_proj, v_bias=r_kv.T @ p.v_bias, o_proj=p.o_proj @ r_q.T
        )

    monkeypatch.setattr(module, "rotate_vo", wrong)
    assert summarize("D.1", module.run(TINY))["status"] == "violated"


def test_broken_tilt_flips_lemma_f_2(monkeypatch):
    """A tilt with the wrong sign of R is not the maximiser: F.2 must be reported violated."""
    module = load("F.2")
    right = module.gibbs_tilt
    monkeypatch.setattr(module, "gibbs_tilt", lambda q, r, beta: right(q, -r, beta))
    assert summarize("F.2", module.run(TINY))["status"] == "violated"


def test_broken_bound_flips_lemma_f_9(monkeypatch):
    """A clipping bound ten times too small must be caught on the extremal (batch-tight) instances."""
    module = load("F.9")
    right = module._mc_jit

    def shrunk(*args):
        chk = right(*args)
        return chk._replace(rhs=chk.rhs / 10)

    monkeypatch.setattr(module, "_mc_jit", shrunk)
    assert summarize("F.9", module.run(TINY))["status"] == "violated"


def test_attention_helpers_are_orthogonal_and_causal():
    from proofs_numeric._attention import attention, haar_orthogonal, hadamard, random_params

    rng = np.random.default_rng(0)
    for r in (haar_orthogonal(rng, 16), hadamard(16)):
        np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-13)
    p = random_params(rng, 32, 8, 2, 16, np.float64)
    x = rng.normal(size=(6, 32))
    y = attention(p, x)
    x2 = x.copy()
    x2[-1] += 1.0  # the last token cannot influence earlier outputs
    np.testing.assert_allclose(attention(p, x2)[:-1], y[:-1], atol=1e-13)
    assert float(jnp.max(jnp.abs(jnp.asarray(y)))) > 0

"""The Gate II/III checkers (Thm 3.3, Cor 3.4–3.6, Lemmas E.1–E.2, Prop E.3, Cor E.4, Lemmas F.10–F.12, Cor F.13)
and the Table 4/5 errata, at "tiny" size."""

import functools

import jax
import numpy as np
import pytest
import scipy.linalg

import proofs_numeric
from proofs_numeric.errata import table_errata
from proofs_numeric.harness import Record, VerifyConfig, summarize
from threegate._types import BoundCheck

EXPECTED = {
    "3.3": "violated-as-stated",
    "3.4": "holds",
    "3.5": "holds",
    "3.6": "holds",
    "E.1": "violated-as-stated",
    "E.2": "holds",
    "E.3": "holds",
    "E.4": "holds",
    "F.10": "holds",
    "F.11": "violated-as-stated",
    "F.12": "holds",
    "F.13": "violated-as-stated",
}
#: results with a premise-removed instance on which the conclusion visibly fails
PREMISE_REMOVED = ("3.3", "3.4", "3.5", "E.2", "E.3", "E.4", "F.10", "F.11", "F.12", "F.13")
#: results with an extremal instance (ratio >= 0.9) in the paper form, or in the corrected form (Wedin)
TIGHT = ("3.4", "3.5", "3.6", "E.1", "E.2", "F.10", "F.12")
TIGHT_CORRECTED = ("3.3", "F.11")

TINY = VerifyConfig("tiny", 0)


@functools.cache
def tiny(id: str) -> tuple[Record, ...]:
    return tuple(proofs_numeric.load(id).run(TINY))


@functools.cache
def verdict(id: str) -> dict:
    return summarize(id, tiny(id))


@pytest.mark.parametrize("id", list(EXPECTED))
def test_checker_contract(id):
    module = proofs_numeric.load(id)
    assert module.ID == id and module.KIND in ("exact", "asymptotic")
    assert module.STATEMENT and "\n" not in module.STATEMENT
    records = tiny(id)
    assert len(records) >= 10
    assert all(isinstance(r, Record) and r.id == id for r in records)
    assert {r.dtype for r in records} <= {"float64", "bfloat16"}
    kinds = {r.kind for r in records}
    assert kinds & {"random", "exhaustive"} and kinds & {"adversarial", "extremal", "edge"}


@pytest.mark.parametrize("id", list(EXPECTED))
def test_status(id):
    s = verdict(id)
    assert s["status"] == EXPECTED[id], s.get("counter_example")
    if s["status"] == "violated-as-stated":
        assert s["corrected"]["violations"] == 0 and s["corrected"]["instances"] > 0
        assert s["counter_example"]["ratio"] >= 1


@pytest.mark.parametrize("id", PREMISE_REMOVED)
def test_premise_removed_breaks_the_conclusion(id):
    assert verdict(id)["premise_false_failures"] >= 1


@pytest.mark.parametrize("id", TIGHT)
def test_nearly_tight(id):
    assert verdict(id)["max_ratio"] >= 0.9


@pytest.mark.parametrize("id", TIGHT_CORRECTED)
def test_corrected_wedin_nearly_tight(id):
    assert verdict(id)["corrected"]["max_ratio"] >= 0.9


def _sin_top1_scipy(w0: np.ndarray, w1: np.ndarray) -> float:
    """float64 reference: sine of the angle between the top left singular vectors (scipy.linalg.subspace_angles)."""
    u0 = np.linalg.svd(w0)[0][:, :1]
    u1 = np.linalg.svd(w1)[0][:, :1]
    return float(np.sin(scipy.linalg.subspace_angles(u0, u1)).max())


def test_two_by_two_counter_example_matches_the_digest_and_scales_as_eps_cubed():
    fam = {
        r.instance["eps"]: r
        for r in tiny("3.3")
        if r.kind == "extremal" and r.form == "paper" and "chain" not in r.instance
    }
    expected = {0.3: 1.054, 0.1: 1.0051, 0.03: 1.00045}
    assert set(expected) <= set(fam)
    for eps, ratio in expected.items():
        r = fam[eps]
        assert r.ratio > 1 and not r.holds
        assert r.ratio == pytest.approx(ratio, abs=5e-4 * ratio / 1.054)
        w0, dw = np.asarray(r.instance["W0"]), np.asarray(r.instance["dW"])
        assert np.linalg.norm(dw, 2) == pytest.approx(eps, rel=1e-12)
        assert r.lhs == pytest.approx(_sin_top1_scipy(w0, w0 + dw), rel=1e-10)
        if eps <= 0.1:  # excess ~ eps^3 / 2 (higher orders still show at 0.3)
            assert (r.lhs - r.rhs) / eps**3 == pytest.approx(0.5, rel=0.05)
    # the O(eps^3) family is reported beside the order-one swap, with its exact instance
    by_kind = {c["kind"]: c for c in verdict("3.3")["counter_examples_by_kind"]}
    assert by_kind["adversarial"]["ratio"] == pytest.approx(1 / 0.55)
    assert by_kind["extremal"]["instance"]["family"] == "2x2 rotation"
    assert by_kind["extremal"]["ratio"] == pytest.approx(1.054, abs=5e-4)
    rates = {r.rhs: r for r in tiny("3.3") if r.kind == "rate"}
    assert rates[3.0].lhs == pytest.approx(3.0, abs=0.2) and rates[3.0].holds
    assert rates[1.0].lhs == pytest.approx(1.0, abs=0.05) and rates[1.0].holds


def test_swap_counter_example_is_order_one():
    swap = [r for r in tiny("F.11") if r.instance.get("family") == "2x2 swap" and r.form == "paper"]
    assert swap and all(r.lhs == pytest.approx(1.0) and not r.holds for r in swap)
    assert max(r.ratio for r in swap) == pytest.approx(1 / 0.55)
    corrected = [
        r for r in tiny("F.11") if r.instance.get("family") == "2x2 swap" and r.form == "corrected"
    ]
    assert all(r.holds for r in corrected)


def test_projector_identity_to_rounding():
    ident = [r for r in tiny("F.13") if r.relation == "=="]
    assert ident and all(r.holds for r in ident)
    assert max(abs(r.lhs - r.rhs) for r in ident) < 1e-10


def test_binade_edge_equality_is_the_lemma_e1_counter_example():
    ce = verdict("E.1")["counter_example"]
    assert ce["instance"]["x"] == 2 - 2.0**-7 and ce["instance"]["y"] == 2.0
    assert ce["lhs"] == ce["rhs"] == 2.0**-8 and ce["relation"] == "<"


def test_eta_rule_breaks_at_2_pow_minus_8():
    out = [r for r in tiny("E.4") if not r.premise and r.instance.get("check") == "iff"]
    by_eta = {r.instance["eta"]: r for r in out}
    assert by_eta[2.0**-8].instance["disagreements"] == 2 * 253 and not by_eta[2.0**-8].holds
    # the true threshold is 2^-8, not the paper's 2^-9
    assert by_eta[2.0**-8 * (1 - 2.0**-10)].holds


def test_realization_ties_and_binade_edges_are_where_iff_needs_approx():
    rec = next(
        r for r in tiny("3.6") if r.instance["e"] == 0 and r.instance["check"] == "iff-elsewhere"
    )
    assert rec.lhs == 0 and rec.holds
    assert rec.extra["tie_realized"] == 2 * 2 * 64  # odd mantissas, both signs, both directions
    # |w| = 1, j = 17..32 of 64
    assert rec.extra["edge_toward_zero_realized_below_half_ulp"] == 2 * 16
    assert rec.extra["realized_below_half_ulp_min_ratio"] == pytest.approx(0.5, abs=1e-4)


def _scaled(fn, factor):
    def wrapper(*args, **kwargs):
        chk = fn(*args, **kwargs)
        return BoundCheck(chk.lhs, chk.rhs * factor, chk.premise)

    return wrapper


def test_broken_weyl_bound_flips_the_status(monkeypatch):
    module = proofs_numeric.load("3.4")
    monkeypatch.setattr(module, "weyl_check", _scaled(module.weyl_check, 0.5))
    s = summarize("3.4", module.run(TINY))
    assert s["status"] == "violated" and s["violations"] > 0


def test_broken_corrected_wedin_flips_the_status(monkeypatch):
    module = proofs_numeric.load("3.3")
    real = module.wedin_check

    def half_rigorous(w0, w1, k, form="rigorous"):
        chk = real(w0, w1, k, form=form)
        return chk if form == "paper" else BoundCheck(chk.lhs, chk.rhs * 0.5, chk.premise)

    monkeypatch.setattr(module, "wedin_check", half_rigorous)
    s = summarize("3.3", module.run(TINY))
    assert s["status"] == "violated" and s["corrected"]["violations"] > 0


def test_broken_ulp_flips_the_status(monkeypatch):
    module = proofs_numeric.load("E.2")
    real = module.ulp
    monkeypatch.setattr(module, "ulp", lambda x: real(x) * jax.numpy.float32(2))
    assert summarize("E.2", module.run(TINY))["status"] == "violated"


def test_table5_has_exactly_three_average_errata():
    entries = table_errata()
    errata = [e for e in entries if e["verdict"] == "erratum"]
    assert [(e["source"], e["row"], e["reported_avg"]) for e in errata] == [
        ("Table 5", "M_princ", 55.44),
        ("Table 5", "M_princ^c", 56.90),
        ("Table 5", "Random-M_princ^c u M_low", 56.89),
    ]
    assert [e["mean_of_4"] for e in errata] == pytest.approx([55.53, 57.105, 56.9625])
    assert all(e["verdict"] == "ok" for e in entries if e["source"] == "Table 4")
    (note,) = [e for e in entries if e["verdict"] == "truncated"]
    assert note["row"] == "M_princ^c u M_low" and note["mean_of_4"] == pytest.approx(58.3775)

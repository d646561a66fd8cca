"""The theorem-checker contract (`proofs_numeric.harness`, `proofs_numeric.REGISTRY`): configs, records, verdicts,
slope fits, JSON schema."""

import json
import math

import numpy as np
import pytest

import proofs_numeric
from proofs_numeric import REGISTRY, CheckerMissingError, load
from proofs_numeric.harness import (
    Record,
    VerifyConfig,
    fit_loglog_slope,
    holds_eq,
    holds_le,
    jsonable,
    rate_record,
    summarize,
)

PAPER_ORDER = [
    "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "D.1", "E.1", "E.2", "E.3", "E.4",
    *(f"F.{i}" for i in range(1, 14)),
]  # fmt: skip


def rec(
    lhs, rhs, *, form="paper", holds=None, premise=True, relation="<=", kind="random", id="9.9"
):
    ok = lhs <= rhs if holds is None else holds
    return Record(id, form, kind, {"n": 1}, lhs, rhs, relation, premise, ok)


def verdict(records, kind="exact", corrected=None):
    return summarize("9.9", records, statement="s", kind=kind, statement_corrected=corrected)


def test_registry_has_all_24_results_in_paper_order():
    assert list(REGISTRY) == PAPER_ORDER
    assert len(set(REGISTRY.values())) == 24


def test_load_unknown_and_missing(monkeypatch):
    with pytest.raises(KeyError, match="unknown result"):
        load("3.7")
    monkeypatch.setitem(REGISTRY, "3.3", "no_such_checker")
    with pytest.raises(CheckerMissingError, match="not implemented yet"):
        load("3.3")


def test_config_validates_and_derives_streams():
    with pytest.raises(ValueError, match="size"):
        VerifyConfig(size="huge")
    with pytest.raises(ValueError, match="seed"):
        VerifyConfig(seed=-1)
    c = VerifyConfig("tiny", 3)
    assert (c.n(2, 20), VerifyConfig().n(2, 20), VerifyConfig("large").n(2, 20)) == (2, 20, 80)
    assert c.rng("a").integers(1 << 30) == VerifyConfig("default", 3).rng("a").integers(1 << 30)
    assert c.rng("a").integers(1 << 30) != c.rng("b").integers(1 << 30)


def test_record_validates_and_serializes():
    with pytest.raises(ValueError, match="form"):
        rec(1.0, 2.0, form="wrong")
    with pytest.raises(ValueError, match="relation"):
        rec(1.0, 2.0, relation=">")
    assert rec(1.0, 0.0).ratio == math.inf and rec(0.0, 0.0).ratio == 0.0
    r = Record(
        "9.9",
        "paper",
        "edge",
        {"m": np.eye(2), "v": np.float64(np.inf)},
        1.0,
        0.0,
        "<=",
        True,
        False,
    )
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    assert data["instance"] == {"m": [[1.0, 0.0], [0.0, 1.0]], "v": "inf"}
    assert data["ratio"] == "inf" and data["holds"] is False
    assert jsonable({"a": (np.int64(2), np.bool_(True))}) == {"a": [2, True]}
    with pytest.raises(TypeError, match="JSON"):
        jsonable(object())


def test_holds_le_is_rounding_aware():
    eps64 = np.finfo(np.float64).eps
    assert holds_le(1.0 + 10 * eps64, 1.0, np.float64, 4)
    assert not holds_le(1.0 + 1e-6, 1.0, np.float64, 4)
    assert holds_eq(1.0, 1.0 + 10 * eps64, np.float64, 4)
    assert not holds_eq(1.0, 0.5, np.float64, 4)


def test_summarize_holds_and_asymptotic():
    records = [rec(0.5, 1.0), rec(0.9, 1.0), rec(2.0, 1.0, premise=False)]
    s = verdict(records)
    assert s["status"] == "holds" and s["max_ratio"] == pytest.approx(0.9)
    assert s["premise_false"] == 1 and s["premise_false_failures"] == 1 and s["violations"] == 0
    assert verdict(records, kind="asymptotic")["status"] == "holds-asymptotically"


def test_summarize_violated_as_stated_reports_worst_counter_example():
    records = [
        rec(0.5, 1.0),
        rec(1.2, 1.0, kind="adversarial"),
        rec(1.05, 1.0, kind="extremal"),
        rec(0.4, 1.0, form="corrected"),
        rec(0.8, 1.0, form="corrected"),
    ]
    s = verdict(records, corrected="c")
    assert s["status"] == "violated-as-stated"
    assert s["violations"] == 2 and s["max_ratio"] == pytest.approx(1.2)
    assert s["counter_example"]["kind"] == "adversarial" and s["counter_example"][
        "ratio"
    ] == pytest.approx(1.2)
    assert s["corrected"]["statement"] == "c" and s["corrected"]["violations"] == 0
    assert s["corrected"]["max_ratio"] == pytest.approx(0.8) and s["corrected"]["instances"] == 2
    assert s["max_ratio_by_kind"] == pytest.approx(
        {"random": 0.5, "adversarial": 1.2, "extremal": 1.05}
    )
    by_kind = s["counter_examples_by_kind"]
    assert [c["kind"] for c in by_kind] == ["adversarial", "extremal"]
    assert [c["ratio"] for c in by_kind] == pytest.approx([1.2, 1.05])


@pytest.mark.parametrize(
    "records, corrected",
    [
        ([rec(1.2, 1.0)], None),  # no corrected form
        ([rec(1.2, 1.0), rec(1.1, 1.0, form="corrected")], "c"),  # corrected form fails too
        ([rec(0.5, 1.0), rec(1.1, 1.0, form="corrected")], "c"),  # paper holds, corrected fails
        ([rec(1.2, 1.0)], "c"),  # a corrected statement without corrected instances proves nothing
    ],
)
def test_summarize_real_failures(records, corrected):
    assert verdict(records, corrected=corrected)["status"] == "violated"


def test_summarize_strict_and_identity_relations():
    strict = Record("9.9", "paper", "edge", {}, 0.25, 0.25, "<", True, False)
    assert verdict([strict])["status"] == "violated"
    ident = rec(1.0 + 1e-12, 1.0, relation="==", holds=True)
    s = verdict([ident, rec(0.3, 1.0)])
    assert s["max_ratio"] == pytest.approx(0.3) and s["identity_max_abs_dev"] == pytest.approx(
        1e-12
    )


def test_summarize_rejects_foreign_and_empty_records():
    with pytest.raises(ValueError, match="other results"):
        verdict([rec(0.5, 1.0), rec(0.5, 1.0, id="1.1")])
    with pytest.raises(ValueError, match="no records"):
        verdict([])


@pytest.mark.parametrize("slope", [1.0, 2.0, 3.0, 0.5])
def test_fit_loglog_slope_recovers_power_laws(slope):
    x = np.geomspace(1e-4, 1e-1, 7)
    fit = fit_loglog_slope(x, 3.0 * x**slope)
    assert fit.slope == pytest.approx(slope, abs=1e-12) and fit.n_used == 7


def test_fit_loglog_slope_drops_the_float_floor():
    x = np.geomspace(1e-9, 1e-1, 9)
    y = np.maximum(x**2, 1e-12)  # the four smallest points sit on a floor
    assert fit_loglog_slope(x, y, floor=1e-12).slope == pytest.approx(2.0, abs=1e-12)
    assert fit_loglog_slope(x, y, floor=0.0).slope < 1.9  # a floor left in biases the slope
    with pytest.raises(ValueError, match="at least 3"):
        fit_loglog_slope([1.0, 2.0], [1.0, 4.0])


def test_rate_record_holds_and_fails():
    x = np.geomspace(1e-3, 1e-1, 5)
    good = rate_record("9.9", x, x**3, expected=3.0, slope_tol=0.1)
    bad = rate_record("9.9", x, x**2, expected=3.0, slope_tol=0.1)
    assert good.holds and not bad.holds and good.relation == "rate" and good.kind == "rate"
    assert rate_record("9.9", x, x**4, expected=3.0, slope_tol=0.1, at_least=True).holds
    assert verdict([rec(0.5, 1.0), bad], kind="asymptotic")["status"] == "violated"
    s = verdict([rec(0.5, 1.0), good], kind="asymptotic")
    assert s["rate"][0]["slope"] == pytest.approx(3.0) and s["rate"][0]["expected"] == 3.0


def test_summary_json_schema_is_stable():
    s = verdict([rec(1.2, 1.0), rec(0.5, 1.0, form="corrected")], corrected="c")
    data = json.loads(json.dumps(s, allow_nan=False))
    for key in (
        "id",
        "statement",
        "kind",
        "status",
        "instances",
        "max_ratio",
        "violations",
        "rate",
        "dtype",
    ):
        assert key in data
    assert set(data["corrected"]) >= {"statement", "instances", "max_ratio", "violations", "worst"}
    assert data["counter_example"]["instance"] == {"n": 1}


def test_summarize_defaults_come_from_the_module():
    module = proofs_numeric.load("E.1")
    records = [Record("E.1", "paper", "edge", {}, 0.5, 1.0, "<=", True, True)]
    s = summarize("E.1", records)
    assert s["statement"] == module.STATEMENT and s["kind"] == module.KIND

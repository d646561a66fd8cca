"""The theorem-checker contract: configs, records, rate fits and the per-result verdict.

Contract for a result module `proofs_numeric/<name>.py` (one per numbered result of arXiv 2511.08567):

    ID: str                         # the paper's number alone: "3.3", "D.1", "E.1", "F.9"
    STATEMENT: str                  # one line, the result as the paper states it
    KIND: str                       # "exact" (must hold on every instance) or "asymptotic" (holds as a rate / ratio -> 1)
    STATEMENT_CORRECTED: str        # optional: the corrected form, when the paper's form is known to fail
    def run(config: VerifyConfig) -> list[Record]

`run` enters `with jax.enable_x64(True):` itself (measurements in float64), draws every random instance from
`config.rng(...)` / `config.key(...)`, picks sweep sizes with `config.n(tiny=..., default=..., large=...)`, and returns
one `Record` per instance of one inequality (or identity):

- every statement is written as `lhs REL rhs` with REL in `RELATIONS`, lower bounds swapped so that `lhs/rhs <= 1` is
  the good side ("2^-8 < gap" is `Record(lhs=2**-8, rhs=gap, relation="<")`);
- `holds` is decided by the checker (use `holds_le` / `holds_eq`, which go through `threegate._numerics`; strict
  relations on exactly representable values compare exactly);
- `premise` is False on instances that break the theorem's premise on purpose ("premise removed"): such records are
  never counted as violations, and are reported as `premise_false` / `premise_false_failures`;
- `form="paper"` for the statement as printed, `form="corrected"` for `STATEMENT_CORRECTED`;
- asymptotic results are checked by their rate: `rate_record(...)` fits a log-log slope (`fit_loglog_slope`) and
  stores `lhs=slope, rhs=expected, relation="rate"`.

`summarize(id, records)` turns the records of one result into its verdict: "holds", "holds-asymptotically",
"violated-as-stated" (the paper's form fails, the corrected form holds on every instance; the worst counter-example
is reported) or "violated" (a result, or corrected form, that must hold does not: a real failure).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import jax
import numpy as np
from jax.typing import ArrayLike, DTypeLike

from proofs_numeric._sizes import SIZES
from threegate._numerics import BOUND_SLACK_C, bound_holds, premise_lt
from threegate.records import to_jsonable
from threegate.toy.rates import SlopeFit, fit_loglog_slope

__all__ = [
    "FORMS",
    "KINDS",
    "RELATIONS",
    "SIZES",
    "STATUSES",
    "Record",
    "SlopeFit",
    "VerifyConfig",
    "fit_loglog_slope",
    "holds_eq",
    "holds_le",
    "jsonable",
    "premise_below",
    "rate_record",
    "summarize",
]

FORMS: Final = ("paper", "corrected")
KINDS: Final = ("exact", "asymptotic")
RELATIONS: Final = ("<=", "<", "==", "->1", "rate")
STATUSES: Final = ("holds", "holds-asymptotically", "violated-as-stated", "violated")


@dataclass(frozen=True)
class VerifyConfig:
    """How hard to look: sweep size and the master seed.

    Attributes:
      size: "tiny" (tests, seconds), "default" (`threegate verify`, at least 20 instances per result), "large".
      seed: master seed; every checker derives its own streams from it with a salt, so results are independent of
        the order in which they run.
    """

    size: str = "default"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {self.size!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")

    def n(self, tiny: int, default: int, large: int | None = None) -> int:
        """The sweep size for this config (`large` defaults to 4×`default`)."""
        return {"tiny": tiny, "default": default, "large": 4 * default if large is None else large}[
            self.size
        ]

    def rng(self, salt: str | int = 0) -> np.random.Generator:
        """A NumPy generator seeded by (seed, salt); the same salt always gives the same stream."""
        words = [ord(c) for c in salt] if isinstance(salt, str) else [int(salt)]
        return np.random.default_rng([self.seed, *words])

    def key(self, salt: str | int = 0) -> jax.Array:
        """A JAX PRNG key derived from (seed, salt)."""
        return jax.random.key(int(self.rng(salt).integers(0, 2**31 - 1)))


def jsonable(x: Any) -> Any:
    """`x` as plain JSON data: arrays → lists, numpy scalars → Python, non-finite floats → "inf"/"-inf"/"nan"
    (`threegate.records.to_jsonable` with `nonfinite="str"`: the checker tells an infinite ratio from an
    undefined one)."""
    return to_jsonable(x, nonfinite="str")


def _ratio(lhs: float, rhs: float) -> float:
    if rhs == 0:
        return 0.0 if lhs == 0 else math.inf
    return lhs / rhs


@dataclass(frozen=True)
class Record:
    """One instance of one result, as data.

    Attributes:
      id: the paper's number ("3.3").
      form: "paper" or "corrected".
      kind: how the instance was made: "random", "adversarial", "extremal", "edge", "exhaustive", "rate", "identity".
      instance: JSON-able description (shapes, eps, seed, small matrices of counter-examples).
      lhs, rhs, relation: the statement `lhs relation rhs` (lower bounds swapped; "rate": fitted vs expected slope).
      premise: whether the instance satisfies the result's premise.
      holds: whether the statement holds on it, within the numerical tolerance of `threegate._numerics`.
      dtype: the dtype the quantities were measured in.
      extra: anything else worth keeping (JSON-able).
    """

    id: str
    form: str
    kind: str
    instance: Mapping[str, Any]
    lhs: float
    rhs: float
    relation: str
    premise: bool
    holds: bool
    dtype: str = "float64"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        if self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
        for name in ("lhs", "rhs"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("premise", "holds"):
            object.__setattr__(self, name, bool(getattr(self, name)))

    @property
    def ratio(self) -> float:
        """lhs / rhs (0 where both are 0, inf where only rhs is)."""
        return _ratio(self.lhs, self.rhs)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-able dict (with its ratio)."""
        return jsonable({**asdict(self), "ratio": self.ratio})


def holds_le(
    lhs: float,
    rhs: float,
    dtype: DTypeLike,
    size: int,
    scale: float = 1.0,
    c: float = BOUND_SLACK_C,
) -> bool:
    """`lhs <= rhs` up to rounding (`threegate._numerics.bound_holds`), as a Python bool."""
    with jax.enable_x64(True):
        return bool(bound_holds(np.float64(lhs), np.float64(rhs), dtype, size, scale, c))


def holds_eq(
    lhs: float,
    rhs: float,
    dtype: DTypeLike,
    size: int,
    scale: float = 1.0,
    c: float = BOUND_SLACK_C,
) -> bool:
    """`lhs == rhs` up to rounding: both `lhs <= rhs` and `rhs <= lhs` in the sense of `holds_le`."""
    return holds_le(lhs, rhs, dtype, size, scale, c) and holds_le(rhs, lhs, dtype, size, scale, c)


def premise_below(
    lhs: float,
    rhs: float,
    dtype: DTypeLike,
    size: int,
    scale: float = 1.0,
    c: float = BOUND_SLACK_C,
) -> bool:
    """A strict premise `lhs < rhs` with a margin above rounding (`threegate._numerics.premise_lt`), as a bool.

    For premises that guard a division by `rhs - lhs` (a positive curvature $\\mu>0$, a gap $\\gamma_k>0$).
    """
    with jax.enable_x64(True):
        return bool(premise_lt(np.float64(lhs), np.float64(rhs), dtype, size, scale, c))


def rate_record(
    id: str,
    x: ArrayLike,
    y: ArrayLike,
    expected: float,
    slope_tol: float,
    *,
    form: str = "paper",
    at_least: bool = False,
    floor: float | None = None,
    instance: Mapping[str, Any] | None = None,
    dtype: str = "float64",
) -> Record:
    """A "rate" record: the fitted log-log slope of y(x) against the slope the theory predicts.

    `holds` is `|slope - expected| <= slope_tol` (or `slope >= expected - slope_tol` with `at_least`, for "at least
    this order" statements such as an o(·) remainder).
    """
    fit = fit_loglog_slope(x, y, floor)
    ok = fit.slope >= expected - slope_tol if at_least else abs(fit.slope - expected) <= slope_tol
    return Record(
        id=id,
        form=form,
        kind="rate",
        instance=dict(instance or {}),
        lhs=fit.slope,
        rhs=expected,
        relation="rate",
        premise=True,
        holds=ok,
        dtype=dtype,
        extra={
            "x": jsonable(np.asarray(x)),
            "y": jsonable(np.asarray(y)),
            "slope_tol": slope_tol,
            "at_least": at_least,
            "rvalue": fit.rvalue,
            "n_used": fit.n_used,
        },
    )


def _worst_by_kind(records: Sequence[Record]) -> list[Record]:
    """The worst (largest lhs/rhs) record of each instance kind, worst first."""
    worst: dict[str, Record] = {}
    for r in records:
        if r.kind not in worst or r.ratio > worst[r.kind].ratio:
            worst[r.kind] = r
    return sorted(worst.values(), key=lambda r: r.ratio, reverse=True)


def _form_summary(records: Sequence[Record]) -> dict[str, Any]:
    bounds = [r for r in records if r.relation != "rate"]
    claimed = [r for r in bounds if r.premise]
    bad = [r for r in claimed if not r.holds]
    # the ratio of an identity is ~1 by design: the worst ratio is taken over inequalities
    inequalities = [r for r in claimed if r.relation != "=="]
    worst = max(inequalities or claimed, key=lambda r: r.ratio, default=None)
    identities = [r for r in claimed if r.relation == "=="]
    worst_bad = max(bad, key=lambda r: r.ratio, default=None)
    premise_false = [r for r in bounds if not r.premise]
    rates = [r for r in records if r.relation == "rate"]
    return {
        "instances": len(records),
        "max_ratio": worst.ratio if worst is not None else None,
        "worst": worst,
        "violations": len(bad) + sum(not r.holds for r in rates if r.premise),
        "worst_violation": worst_bad,
        "worst_violation_by_kind": _worst_by_kind(bad),
        "identity_max_abs_dev": max((abs(r.lhs - r.rhs) for r in identities), default=None),
        "premise_false": len(premise_false),
        "premise_false_failures": sum(not r.holds for r in premise_false),
        "rates": rates,
    }


def _by_kind(records: Sequence[Record]) -> dict[str, float]:
    """Worst lhs/rhs per instance kind over premise-true inequality records."""
    out: dict[str, float] = {}
    for r in records:
        if r.premise and r.relation not in ("==", "rate"):
            out[r.kind] = max(out.get(r.kind, -math.inf), r.ratio)
    return out


def _instance_of(r: Record | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return jsonable(
        {"kind": r.kind, "instance": r.instance, "lhs": r.lhs, "rhs": r.rhs, "relation": r.relation}
        | {"ratio": r.ratio}
    )


def _module_meta(id: str) -> tuple[str, str, str | None]:
    from proofs_numeric import load

    module = load(id)
    return module.STATEMENT, module.KIND, getattr(module, "STATEMENT_CORRECTED", None)


def summarize(
    id: str,
    records: Sequence[Record],
    *,
    statement: str | None = None,
    kind: str | None = None,
    statement_corrected: str | None = None,
) -> dict[str, Any]:
    """The verdict on one result from its records (JSON-able).

    `max_ratio` is the worst lhs/rhs over the premise-true inequality records of the paper form (identities "=="
    report `identity_max_abs_dev` instead; rates report `rate`); `max_ratio_by_kind` splits it by instance kind.

    Status: the paper form holds on every premise-true instance (and its rates fit) → "holds" ("exact") or
    "holds-asymptotically" ("asymptotic"); it fails somewhere but a corrected form exists, has instances and holds
    on all of them → "violated-as-stated", with the worst counter-example (`counter_example`; the worst of each
    instance kind in `counter_examples_by_kind`, worst first) and a `corrected` entry; anything else that fails →
    "violated". `statement`, `kind`, `statement_corrected` default to the registered module's.
    """
    if not records:
        raise ValueError(f"result {id}: no records to summarize")
    if statement is None or kind is None:
        m_statement, m_kind, m_corrected = _module_meta(id)
        statement = m_statement if statement is None else statement
        kind = m_kind if kind is None else kind
        statement_corrected = m_corrected if statement_corrected is None else statement_corrected
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    wrong = sorted({r.id for r in records} - {id})
    if wrong:
        raise ValueError(f"result {id}: records of other results mixed in: {wrong}")
    paper = _form_summary([r for r in records if r.form == "paper"])
    corrected_records = [r for r in records if r.form == "corrected"]
    corrected = _form_summary(corrected_records) if corrected_records else None
    if paper["violations"] == 0:
        status = "holds" if kind == "exact" else "holds-asymptotically"
    elif statement_corrected and corrected is not None and corrected["violations"] == 0:
        status = "violated-as-stated"
    else:
        status = "violated"
    if corrected is not None and corrected["violations"] and status != "violated":
        status = "violated"  # a corrected form is claimed to hold; failing it is a real failure
    rate = [
        {"slope": r.lhs, "expected": r.rhs, "holds": r.holds, "instance": r.instance}
        for r in paper["rates"]
    ]
    out: dict[str, Any] = {
        "id": id,
        "statement": statement,
        "kind": kind,
        "status": status,
        "instances": len(records),
        "max_ratio": paper["max_ratio"],
        "worst": _instance_of(paper["worst"]),
        "violations": paper["violations"],
        "identity_max_abs_dev": paper["identity_max_abs_dev"],
        "max_ratio_by_kind": _by_kind([r for r in records if r.form == "paper"]),
        "premise_false": paper["premise_false"],
        "premise_false_failures": paper["premise_false_failures"],
        "rate": rate or None,
        "dtype": sorted({r.dtype for r in records}),
    }
    if corrected is not None:
        out["corrected"] = {
            "statement": statement_corrected,
            "instances": corrected["instances"],
            "max_ratio": corrected["max_ratio"],
            "violations": corrected["violations"],
            "identity_max_abs_dev": corrected["identity_max_abs_dev"],
            "worst": _instance_of(corrected["worst"]),
            "rate": [
                {"slope": r.lhs, "expected": r.rhs, "holds": r.holds} for r in corrected["rates"]
            ]
            or None,
        }
    if status in ("violated-as-stated", "violated"):
        out["counter_example"] = _instance_of(paper["worst_violation"])
        out["counter_examples_by_kind"] = [
            _instance_of(r) for r in paper["worst_violation_by_kind"]
        ]
    return jsonable(out)

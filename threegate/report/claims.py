"""Claims of the paper, normalized from every source into one row type with a verdict.

A claim is (source, id, paper, observed, verdict) with verdict in `VERDICTS`. Simulations and the study state
their claims directly (`claims` lists); the theorem checker's rows become claims by their status:

    holds, holds-asymptotically  -> agrees
    violated-as-stated           -> disagrees (observed names the corrected form and how it fared)
    violated                     -> disagrees
    anything else                -> inconclusive

and the errata check of Tables 4/5 becomes one claim per table ("each Avg is the mean of its four benchmarks").
"""

import math
from typing import Any, NamedTuple

from threegate.claims import VERDICTS

__all__ = [
    "STATUS_VERDICT",
    "VERDICTS",
    "ClaimRow",
    "fmt_num",
    "rate_text",
    "source_claims",
    "table_errata_claims",
    "verify_claim",
]


STATUS_VERDICT = {
    "holds": "agrees",
    "holds-asymptotically": "agrees",
    "violated-as-stated": "disagrees",
    "violated": "disagrees",
}


class ClaimRow(NamedTuple):
    """One claim from one source; `anchor` is the id of the page section that shows the source."""

    source: str
    anchor: str
    id: str
    paper: str
    observed: str
    verdict: str


def fmt_num(x: Any, digits: int = 4) -> str:
    """A number in `digits` significant digits ("-" for None, "nan"/"inf" spelled out); other values as str."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if not math.isfinite(x):
            return str(x)
        return format(x, f".{digits}g")
    return str(x)


def rate_text(summary: dict) -> str:
    """Fitted log-log slopes with the expected one in parentheses: "3.03 (3)", or a range when several."""
    by_expected: dict[Any, list[float]] = {}
    rates = summary.get("rate")
    for r in rates if isinstance(rates, list) else []:
        if isinstance(r, dict) and isinstance(r.get("slope"), int | float):
            expected = r.get("expected") if isinstance(r.get("expected"), int | float) else None
            by_expected.setdefault(expected, []).append(float(r["slope"]))
    parts = []
    for expected, slopes in by_expected.items():
        exp = f" ({fmt_num(expected, 3)})" if expected is not None else ""
        if len(slopes) == 1:
            parts.append(f"{slopes[0]:.2f}{exp}")
        else:
            parts.append(f"{min(slopes):.2f}..{max(slopes):.2f}{exp} x{len(slopes)}")
    return ", ".join(parts)


def verify_claim(summary: dict, source: str, anchor: str) -> ClaimRow:
    """The claim row of one `verify.jsonl` summary."""
    status = str(summary.get("status", "unknown"))
    verdict = STATUS_VERDICT.get(status, "inconclusive")
    parts = [
        f"{status}: worst lhs/rhs {fmt_num(summary.get('max_ratio'))} over "
        f"{fmt_num(summary.get('instances'))} instances, {fmt_num(summary.get('violations'))} beyond rounding"
    ]
    rate = rate_text(summary)
    if rate:
        parts.append(f"fitted rate {rate}" + (" (expected in parentheses)" if "(" in rate else ""))
    corrected = summary.get("corrected")
    if status == "violated-as-stated" and isinstance(corrected, dict):
        parts.append(
            f"corrected form ({corrected.get('statement', '?')}): worst "
            f"{fmt_num(corrected.get('max_ratio'))}, {fmt_num(corrected.get('violations'))} violations"
        )
    return ClaimRow(
        source,
        anchor,
        str(summary.get("id", "?")),
        str(summary.get("statement", "")),
        "; ".join(parts),
        verdict,
    )


def table_errata_claims(errata: dict, source: str, anchor: str) -> list[ClaimRow]:
    """One claim per table of `errata.json`'s `tables`: every reported Avg is the mean of its row."""
    by_table: dict[str, list[dict]] = {}
    tables = errata.get("tables")
    for e in tables if isinstance(tables, list) else []:
        if isinstance(e, dict):
            by_table.setdefault(str(e.get("source", "?")), []).append(e)
    rows = []
    for table, entries in by_table.items():
        wrong = [e for e in entries if e.get("verdict") == "erratum"]
        trunc = [e for e in entries if e.get("verdict") == "truncated"]
        if wrong:
            observed = "; ".join(
                f"{e.get('row')}: reported {fmt_num(e.get('reported_avg'))} vs mean "
                f"{fmt_num(e.get('mean_of_4'), 6)}"
                for e in wrong
            )
        else:
            observed = f"all {len(entries)} averages match their rows to the printed digits"
        if trunc:
            observed += "; truncated, not rounded: " + ", ".join(str(e.get("row")) for e in trunc)
        rows.append(
            ClaimRow(
                source,
                anchor,
                f"{table} Avg",
                f"{table}: each reported Avg is the mean of its four benchmark scores",
                observed,
                "disagrees" if wrong else "agrees",
            )
        )
    return rows


def source_claims(
    claims: Any, source: str, anchor: str, problems: list[str], where: str
) -> list[ClaimRow]:
    """Claim rows from a `claims` list of {id, paper, observed, verdict}; bad entries noted in `problems`.

    An entry that is not an object is skipped; an unknown verdict is shown as "inconclusive" and noted.
    """
    if claims is None:
        return []
    if not isinstance(claims, list):
        problems.append(f"{where}: 'claims' is not a list")
        return []
    rows = []
    for n, c in enumerate(claims):
        if not isinstance(c, dict):
            problems.append(f"{where}: claim {n} is not an object")
            continue
        verdict = c.get("verdict")
        if verdict not in VERDICTS:
            problems.append(f"{where}: claim {c.get('id', n)!s} has verdict {verdict!r}")
            verdict = "inconclusive"
        rows.append(
            ClaimRow(
                source,
                anchor,
                str(c.get("id", n)),
                str(c.get("paper", "")),
                str(c.get("observed", "")),
                verdict,
            )
        )
    return rows

"""The paper's Tables 4 and 5 as data, and the check of their "Avg" column (digest §7.5, §8 item 1).

Each row is (mask, MATH500, AMC23, AIME24, AIME25, reported Avg, #params). A reported average is checked against the
mean of its four benchmarks: within half a unit of the last reported decimal ($\\pm0.005$) it is a correctly rounded
mean; within one unit ($\\pm0.01$) it is a truncated one (Table 5's union row: 58.3775 printed as 58.37), which is a
note, not an erratum; beyond that it is an erratum. Exactly three rows are errata, all in Table 5: $M_{princ}$ (55.44
vs 55.53), $M_{princ}^c$ (56.90 vs 57.105) and Random (56.89 vs 56.9625).
"""

from decimal import Decimal
from typing import Any, Final

__all__ = ["BENCHMARKS", "ROUNDED", "TABLE4", "TABLE5", "TRUNCATED", "table_errata"]

BENCHMARKS: Final = ("MATH500", "AMC23", "AIME24", "AIME25")

Row = tuple[str, float, float, float, float, float, str]

#: Table 4 (320 steps; #params = share of linear-layer parameters trainable).
TABLE4: Final[tuple[Row, ...]] = (
    ("Dense", 84.20, 81.56, 36.98, 27.03, 57.44, "100%"),
    ("M_princ", 83.60, 77.19, 30.16, 24.32, 53.82, "50%"),
    ("M_princ^c", 82.70, 78.90, 34.28, 25.73, 55.40, "50%"),
    ("M_low", 84.50, 80.08, 35.62, 26.56, 56.69, "58.59%"),
    ("M_princ^c u M_low", 85.20, 78.83, 34.74, 26.20, 56.24, "74.02%"),
    ("Random-M_princ^c u M_low", 84.50, 77.35, 34.48, 25.01, 55.34, "74.02%"),
)

#: Table 5 (500 steps).
TABLE5: Final[tuple[Row, ...]] = (
    ("Dense", 84.5, 83.52, 38.28, 28.075, 58.59, "100%"),
    ("M_princ", 83.60, 78.83, 34.06, 25.63, 55.44, "50%"),
    ("M_princ^c", 84.0, 77.97, 38.64, 27.81, 56.90, "50%"),
    ("M_low", 83.8, 82.42, 37.03, 27.82, 57.77, "58.59%"),
    ("M_princ^c u M_low", 84.10, 81.41, 40.30, 27.70, 58.37, "74.02%"),
    ("Random-M_princ^c u M_low", 84.10, 81.72, 34.69, 27.34, 56.89, "74.02%"),
)

#: half a unit of the last printed decimal (a correctly rounded mean) and one unit (a truncated mean); the check
#: runs in exact decimal arithmetic on the printed values, so no float rounding enters.
ROUNDED: Final = Decimal("0.005")
TRUNCATED: Final = Decimal("0.01")


def table_errata() -> list[dict[str, Any]]:
    """Every row of Tables 4 and 5 with its verdict: "ok" (rounded mean), "truncated" (note) or "erratum"."""
    out = []
    for name, table in (("Table 4", TABLE4), ("Table 5", TABLE5)):
        for mask, *scores, avg, params in table:
            exact = [Decimal(str(x)) for x in scores]
            mean = sum(exact) / len(exact)
            diff = Decimal(str(avg)) - mean
            verdict = (
                "ok"
                if abs(diff) <= ROUNDED
                else "truncated"
                if abs(diff) <= TRUNCATED
                else "erratum"
            )
            out.append(
                {
                    "source": name,
                    "row": mask,
                    "benchmarks": dict(zip(BENCHMARKS, scores, strict=True)),
                    "reported_avg": avg,
                    "mean_of_4": float(mean),
                    "diff": float(diff),
                    "params": params,
                    "verdict": verdict,
                }
            )
    return out

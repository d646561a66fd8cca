"""Claims of the paper and what a measurement observed, with a verdict (agrees / disagrees / inconclusive).

Shared by the simulations (`sims._contract`) and the checkpoint-set analysis (`threegate.study`): a claim
*reports* what the paper only observed; what the theory guarantees is asserted in tests instead. Every
`observed` string carries the number beside its baseline or its interval.
"""

import math
from collections.abc import Iterable
from typing import Literal, NamedTuple

__all__ = ["VERDICTS", "Claim", "Verdict", "mean_interval", "verdict_from_interval"]

VERDICTS = ("agrees", "disagrees", "inconclusive")

Verdict = Literal["agrees", "disagrees", "inconclusive"]


class Claim(NamedTuple):
    """One claim of the paper and what a run observed.

    Attributes:
      id: short stable identifier, e.g. "S3.rl_rotates_less".
      paper: what the paper says (or predicts), in one sentence.
      observed: what this run measured, with the number beside its baseline or confidence interval.
      verdict: "agrees", "disagrees" or "inconclusive".
    """

    id: str
    paper: str
    observed: str
    verdict: Verdict


def verdict_from_interval(
    lo: float, hi: float, *, expect: Literal["positive", "negative"]
) -> Verdict:
    """Verdict for a claim "the effect is positive" (or negative) from a confidence interval [lo, hi] of it.

    Agrees when the whole interval has the expected sign, disagrees when it has the opposite sign, inconclusive
    when it straddles 0 (or is not finite).

    Example:
      >>> verdict_from_interval(0.1, 0.3, expect="positive"), verdict_from_interval(-0.1, 0.2, expect="positive")
      ('agrees', 'inconclusive')
      >>> verdict_from_interval(0.1, 0.3, expect="negative")
      'disagrees'
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return "inconclusive"
    if expect == "negative":
        lo, hi = -hi, -lo
    if lo > 0:
        return "agrees"
    if hi < 0:
        return "disagrees"
    return "inconclusive"


def mean_interval(xs: Iterable[float | None], z: float = 2.0) -> tuple[float, float, float, int]:
    """Mean of the finite values of `xs` and the normal-approximation interval mean ± z·s/√n.

    Returns `(mean, lo, hi, n)`; NaNs when there is no value, an infinite interval when there is one (a single
    value says nothing about its spread).

    Example:
      >>> [round(x, 3) for x in mean_interval([1.0, 2.0, 3.0, None, float("nan")])]  # s = 1, n = 3
      [2.0, 0.845, 3.155, 3]
      >>> mean_interval([0.5])
      (0.5, -inf, inf, 1)
    """
    v = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(v) / n
    if n == 1:
        return mean, -math.inf, math.inf, 1
    var = sum((x - mean) ** 2 for x in v) / (n - 1)
    half = z * math.sqrt(var / n)
    return mean, mean - half, mean + half, n

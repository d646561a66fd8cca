"""Claims of the paper and what a measurement observed, with a verdict (agrees / disagrees / inconclusive).

Shared by the simulations (`sims._contract`) and the checkpoint-set analysis (`threegate.study`): a claim
*reports* what the paper only observed; what the theory guarantees is asserted in tests instead. Every
`observed` string carries the number beside its baseline or its interval (intervals: `threegate.stats`;
`mean_interval` is re-exported here from there). `VERDICTS` is defined here once; the report and the
simulations import it.
"""

import math
from typing import Literal, NamedTuple

from threegate.stats import mean_interval as mean_interval

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

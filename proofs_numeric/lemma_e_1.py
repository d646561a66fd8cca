"""Lemma E.1 (gap between distinct bf16 representables), arXiv 2511.08567 App. E.

Statement: distinct normal bf16 $x\\ne y$ in one binade $[2^e,2^{e+1})$ satisfy $|x-y|\\ge2^{e-7}$ and
$|x-y|/\\max(|x|,|y|)>2^{-8}$; the paper says the strict inequality also holds across the binade boundary.

Verdict: violated as stated. Across the boundary the adjacent pair $x=2^{e+1}-2^{e-7}$, $y=2^{e+1}$ has relative gap
exactly $2^{-8}$ (an equality, for every $e$). Corrected: $|x-y|/\\max(|x|,|y|)\\ge2^{-8}$ for all distinct normal
$x,y$ of one sign (strict within a binade); opposite signs give a relative gap $\\ge1$.

Records per swept binade (exhaustive over its 128 codes, exact float64 arithmetic): "abs-gap" ($2^{e-7}\\le
\\min|x-y|$), "rel-within" ($2^{-8}<\\min$ relative gap), "rel-across-edge" (the adjacent pair across $2^{e+1}$; paper
"<" fails, corrected "<=" holds), "opposite-sign"; plus random distinct pairs over the whole normal range, and the
exhaustive successor scan of every normal code (count of equalities in `extra`).
"""

import jax
import numpy as np

from proofs_numeric import _bf16codes as bc
from proofs_numeric.harness import Record, VerifyConfig

ID = "E.1"
STATEMENT = (
    "distinct normal bf16 x != y: |x - y| >= 2^(e-7) and |x - y|/max(|x|,|y|) > 2^-8 within a binade "
    "and (as stated) across the binade boundary"
)
STATEMENT_CORRECTED = (
    "|x - y|/max(|x|,|y|) >= 2^-8 for distinct normal bf16 of one sign (strict within a binade)"
)
KIND = "exact"

REL = 2.0**-8


def _exact(lhs: float, rhs: float, strict: bool) -> bool:
    return lhs < rhs if strict else lhs <= rhs


def _pair(kind: str, info: dict, lhs: float, rhs: float, paper_strict: bool) -> list[Record]:
    """The same comparison in the paper's form (strict where the paper is) and the corrected ("<=") form."""
    return [
        Record(
            ID,
            "paper",
            kind,
            info,
            lhs,
            rhs,
            "<" if paper_strict else "<=",
            True,
            _exact(lhs, rhs, paper_strict),
            dtype="bfloat16",
        ),
        Record(
            ID,
            "corrected",
            kind,
            info,
            lhs,
            rhs,
            "<=",
            True,
            _exact(lhs, rhs, False),
            dtype="bfloat16",
        ),
    ]


def _binade(e_field: int) -> list[Record]:
    e = int(e_field) - 127
    x = bc.values(bc.binade_codes(e_field))
    d = np.abs(x[:, None] - x[None, :])
    mx = np.maximum(np.abs(x[:, None]), np.abs(x[None, :]))
    off = ~np.eye(128, dtype=bool)
    info = {"binade": [f"2^{e}", f"2^{e + 1}"], "e": e, "codes": 128, "pairs": int(off.sum()) // 2}
    out = _pair(
        "exhaustive", info | {"check": "abs-gap"}, 2.0 ** (e - 7), float(d[off].min()), False
    )
    out += _pair(
        "exhaustive", info | {"check": "rel-within"}, REL, float((d / mx)[off].min()), True
    )
    neg = -x
    opp = np.abs(x[:, None] - neg[None, :]) / np.maximum(np.abs(x[:, None]), np.abs(neg[None, :]))
    out += _pair("exhaustive", info | {"check": "opposite-sign"}, 1.0, float(opp.min()), False)
    if e_field < 254:  # the pair across the upper edge 2^(e+1) (its upper end must be finite)
        lo, hi = 2.0 ** (e + 1) - 2.0 ** (e - 7), 2.0 ** (e + 1)
        rel = (hi - lo) / hi
        edge = info | {
            "check": "rel-across-edge",
            "x": lo,
            "y": hi,
            "x_code": int(e_field) << 7 | 127,
        }
        out += _pair("edge", edge, REL, rel, True)
    return out


def _random(config: VerifyConfig) -> list[Record]:
    rng = config.rng(f"{ID}/random")
    out = []
    for i in range(config.n(2, 4)):
        a = rng.integers(0x0080, 0x7F80, 20000) | (rng.integers(0, 2, 20000) << 15)
        b = rng.integers(0x0080, 0x7F80, 20000) | ((a >> 15) << 15)  # same sign
        keep = a != b
        x, y = bc.values(a[keep].astype(np.uint16)), bc.values(b[keep].astype(np.uint16))
        rel = float((np.abs(x - y) / np.maximum(np.abs(x), np.abs(y))).min())
        out += _pair(
            "random", {"batch": i, "pairs": int(keep.sum()), "check": "rel-any"}, REL, rel, True
        )
    return out


def _successor_scan() -> list[Record]:
    # every positive normal code with a finite successor
    codes = np.arange(0x0080, 0x7F7F, dtype=np.uint16)
    x, y = bc.values(codes), bc.values(codes + 1)
    rel = (y - x) / y
    n_eq = int(np.sum(rel == REL))
    info = {"check": "successor scan", "codes": int(codes.size), "equalities_at_binade_edges": n_eq}
    return _pair("exhaustive", info, REL, float(rel.min()), True)


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        out: list[Record] = []
        # binade [1, 2) first: ties in the ratio then name the canonical counter-example x = 2 - 2^-7, y = 2
        for e_field in sorted(bc.exponent_fields(config), key=lambda f: f != 127):
            out += _binade(int(e_field))
        return out + _random(config) + _successor_scan()

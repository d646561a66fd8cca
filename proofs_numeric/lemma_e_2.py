"""Lemma E.2 (ULP lens), arXiv 2511.08567 App. E.

Statement: for normal bf16 $x$ with $|x|\\in[2^e,2^{e+1})$, $\\mathrm{ULP}_{bf16}(x)/|x|\\in(2^{-8},2^{-7}]$; hence the
minimal realized relative update $\\tfrac12\\mathrm{ULP}(x)/|x|$ lies in $(2^{-9},2^{-8}]$, and larger $|x|$ needs a
larger absolute step.

Verdict: exact. Records per swept binade (all 128 codes, both signs), from `threegate.bf16.ulp` / `half_ulp`:
"ulp-lower" ($2^{-8}<\\min\\mathrm{ULP}/|x|$), "ulp-upper" ($\\max\\le2^{-7}$, attained at $|x|=2^e$: extremal),
"half-lower", "half-upper", "monotone" (the ULP never decreases with $|x|$: lhs = number of decreases, rhs 0), and
an identity record per binade: `ulp` equals `np.spacing` of ml_dtypes (count of agreements "==" codes).
Premise removed: subnormals, whose ULP/|x| reaches 1.
"""

import jax
import numpy as np

from proofs_numeric import _bf16codes as bc
from proofs_numeric.harness import Record, VerifyConfig
from threegate.bf16 import half_ulp, ulp

ID = "E.2"
STATEMENT = "ULP_bf16(x)/|x| in (2^-8, 2^-7] for normal bf16 x; so (1/2) ULP(x)/|x| in (2^-9, 2^-8]"
KIND = "exact"


def _rec(kind: str, info: dict, lhs: float, rhs: float, rel: str, premise: bool = True) -> Record:
    ok = lhs < rhs if rel == "<" else (lhs == rhs if rel == "==" else lhs <= rhs)
    return Record(ID, "paper", kind, info, lhs, rhs, rel, premise, ok, dtype="bfloat16")


def _binade(e_field: int) -> list[Record]:
    e = int(e_field) - 127
    codes = np.concatenate([bc.binade_codes(e_field, 0), bc.binade_codes(e_field, 1)])
    w = bc.to_bf16(codes)
    x = np.abs(bc.values(codes))
    u = np.asarray(ulp(w), dtype=np.float64)
    h = np.asarray(half_ulp(w), dtype=np.float64)
    ratio, half = u / x, h / x
    info = {"binade": [f"2^{e}", f"2^{e + 1}"], "e": e, "codes": int(codes.size)}
    ref = np.abs(np.spacing(w).astype(np.float64))
    order = np.argsort(x, kind="stable")
    fin = np.isfinite(ref)
    return [
        _rec("exhaustive", info | {"check": "ulp-lower"}, 2.0**-8, float(ratio.min()), "<"),
        _rec(
            "extremal",
            info | {"check": "ulp-upper", "argmax": float(x[ratio.argmax()])},
            float(ratio.max()),
            2.0**-7,
            "<=",
        ),
        _rec("exhaustive", info | {"check": "half-lower"}, 2.0**-9, float(half.min()), "<"),
        _rec("extremal", info | {"check": "half-upper"}, float(half.max()), 2.0**-8, "<="),
        _rec(
            "exhaustive",
            info | {"check": "monotone"},
            float(np.sum(np.diff(u[order]) < 0)),
            0.0,
            "<=",
        ),
        # np.spacing(±max finite) is inf (the next value up is inf), so the reference covers the finite ones
        _rec(
            "identity",
            info | {"check": "ulp == np.spacing (ml_dtypes)", "compared": int(fin.sum())},
            float(np.sum(u[fin] == ref[fin])),
            float(fin.sum()),
            "==",
        ),
    ]


def _subnormal() -> Record:
    codes = np.arange(1, 0x80, dtype=np.uint16)  # positive subnormals
    w = bc.to_bf16(codes)
    ratio = np.asarray(ulp(w), dtype=np.float64) / bc.values(codes)
    info = {"premise_removed": "subnormal x (not normalized)", "codes": int(codes.size)}
    return _rec("edge", info, float(ratio.max()), 2.0**-7, "<=", premise=False)


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        out: list[Record] = []
        for e_field in bc.exponent_fields(config):
            out += _binade(int(e_field))
        out.append(_subnormal())
    return out

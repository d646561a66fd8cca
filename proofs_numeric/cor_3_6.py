"""Cor 3.6 (magnitude-dependent realization threshold), arXiv 2511.08567 Sec. 3.3.

Statement: a stored bf16 weight $w$ changes at a step iff $|\\Delta|\\gtrsim\\tfrac12\\mathrm{ULP}_{bf16}(w)$.

Verdict: holds, with "≳" read as: every update above $\\tfrac12\\mathrm{ULP}(w)(1+2^{-15})$ is realized, none below
$\\tfrac14\\mathrm{ULP}(w)$ is, and away from the places listed next none below $\\tfrac12\\mathrm{ULP}(w)(1-2^{-15})$ is.
The slack $2^{-15}$ is the float32 add's rounding ($2^{-24}|w|$, i.e. $2^{-16}$ of $\\tfrac12\\mathrm{ULP}\\ge2^{-9}|w|$),
plus one float32 ulp of Δ; in the lowest binade, $|w|\\in[2^{-126},2^{-125})$, $\\tfrac12\\mathrm{ULP}=2^{-134}$ is a float32
subnormal with spacing $2^{-149}$, and the bound is attained exactly. The places where "iff $|\\Delta|>\\tfrac12$ULP" needs "≳" (counted in `extra`):
ties ($|\\Delta|=\\tfrac12$ULP exactly realizes iff the mantissa is odd: round-to-nearest-even) and binade edges
$|w|=2^e$, $e>-126$, with Δ toward zero (the gap below is half as wide: threshold $\\tfrac14$ULP).

Records per swept binade (all 128 codes, both signs, both directions): "sufficiency", "necessity-2x",
"necessity-interior" from the exact threshold `threegate.bf16.min_realizing_update` against `half_ulp`; on the grid
$\\Delta=j\\,\\mathrm{ULP}/64$, $j=0..64$: "iff-elsewhere" (disagreements of `realized` with $|\\Delta|>\\tfrac12$ULP
outside ties and edges, rhs 0) and an identity of `realized` with the ml_dtypes reference
$\\mathrm{bf16}(\\mathrm{fl}_{32}(w+\\Delta))\\ne w$. Domain: normal $w$ (XLA:CPU flushes subnormals; see `threegate.bf16`).
"""

import jax
import numpy as np

from proofs_numeric import _bf16codes as bc
from proofs_numeric.harness import Record, VerifyConfig
from threegate.bf16 import half_ulp, min_realizing_update, realized, ulp

ID = "3.6"
STATEMENT = "a stored bf16 weight w changes at a step iff |dW| >~ (1/2) ULP_bf16(w)"
KIND = "exact"

#: rounding slack of the float32 add w + delta, relative to (1/2) ULP (see the module docstring)
F32_SLACK = 2.0**-15
GRID = 64

_realized = jax.jit(realized)


def _thresholds(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact thresholds (away from zero, toward zero) over `half_ulp`, per code."""
    h = np.asarray(half_ulp(w), dtype=np.float64)
    up = np.asarray(min_realizing_update(w, 1), dtype=np.float64)
    dn = np.asarray(min_realizing_update(w, -1), dtype=np.float64)
    neg = bc.values(w.view(np.uint16)) < 0
    away, toward = np.where(neg, dn, up), np.where(neg, up, dn)
    return away / h, toward / h


def _grid(w: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(realized by the library, by ml_dtypes, |delta| / ULP, delta toward zero) on the grid, flattened."""
    j = np.arange(GRID + 1, dtype=np.float64) / GRID
    sign = np.sign(bc.values(w.view(np.uint16)))
    ww = np.repeat(w, 2 * j.size)
    mag = np.tile(np.concatenate([j, j]), w.size)
    toward = np.tile(np.concatenate([np.zeros(j.size, bool), np.ones(j.size, bool)]), w.size)
    delta = (np.repeat(u * sign, 2 * j.size) * mag * np.where(toward, -1.0, 1.0)).astype(np.float32)
    lib = np.asarray(_realized(ww, delta))
    with np.errstate(
        over="ignore"
    ):  # w + delta past the largest finite value rounds to inf: realized
        ref = (ww.astype(np.float32) + delta).astype(bc.BF16).view(np.uint16) != ww.view(np.uint16)
    return lib, ref, mag, toward


def _binade(e_field: int) -> list[Record]:
    codes = np.concatenate([bc.binade_codes(e_field, 0), bc.binade_codes(e_field, 1)])
    w = bc.to_bf16(codes)
    away, toward = _thresholds(w)
    edge = ((codes & 0x7F) == 0) & (e_field > 1)
    e = int(e_field) - 127
    u = np.asarray(ulp(w), dtype=np.float64)
    lib, ref, mag, tow = _grid(w, u)
    odd = np.repeat((codes & 1) == 1, 2 * (GRID + 1))
    at_edge = np.repeat(edge, 2 * (GRID + 1))
    naive = mag > 0.5
    tie = (mag == 0.5) & odd & (~tow | ~at_edge)
    edge_case = at_edge & tow & (mag > 0.25) & (mag <= 0.5)
    other = int(np.sum((lib != naive) & ~tie & ~edge_case))
    info = {"binade": [f"2^{e}", f"2^{e + 1}"], "e": e, "codes": int(codes.size)}
    extra = {
        "tie_realized": int(np.sum(tie & lib)),
        "edge_toward_zero_realized_below_half_ulp": int(np.sum(edge_case & lib)),
        "realized_below_half_ulp_min_ratio": float(min(away.min(), toward.min())),
    }
    interior = np.concatenate([away, toward[~edge]])

    def rec(kind: str, check: str, lhs: float, rhs: float, rel: str = "<=") -> Record:
        ok = lhs <= rhs if rel == "<=" else lhs == rhs
        return Record(
            ID, "paper", kind, info | {"check": check}, lhs, rhs, rel, True, ok, "bfloat16", extra
        )

    return [
        rec("exhaustive", "sufficiency", float(max(away.max(), toward.max())), 1 + F32_SLACK),
        rec(
            "extremal" if edge.any() else "exhaustive",
            "necessity-2x",
            0.5,
            float(min(away.min(), toward.min())),
        ),
        rec("exhaustive", "necessity-interior", 1 - F32_SLACK, float(interior.min())),
        rec("exhaustive", "iff-elsewhere", float(other), 0.0),
        rec(
            "identity",
            "realized == ml_dtypes reference",
            float(np.sum(lib == ref)),
            float(lib.size),
            "==",
        ),
    ]


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        out: list[Record] = []
        for e_field in bc.exponent_fields(config):
            out += _binade(int(e_field))
    return out

"""Cor E.4 (η = 10⁻³ is safe), arXiv 2511.08567 App. E.

Statement: $10^{-3}<2^{-9}$, so rule (1) with $\\eta=10^{-3}$ passes iff the two bf16 entries are bitwise identical
(or both zero).

Verdict: exact. Records: "eta<2^-9" ($10^{-3}<2^{-9}$); per chunk of 16 binades of every normal code (all 254 binades
at "default", both signs, each code against itself, its neighbours $\\pm1$ and the codes 2, 3 above) the "iff" count
(`unchanged(·,·,1e-3)` == bitwise, or both zero) and the "margin"; zeros ($\\pm0$ against $\\pm0$, the smallest
subnormal and normal) and adjacent subnormals (relative gap $>2^{-7}$: still exact). Where the rule breaks: at
$\\eta=2^{-8}$ and $2^{-7}$ the binade-edge pairs of Lemma E.1 are called unchanged although their codes differ
(premise-removed records that fail); at $\\eta=2^{-8}(1-2^{-10})>2^{-9}$ it still agrees (the true threshold is
$2^{-8}$, the paper's $2^{-9}$ is sufficient).
"""

import jax
import numpy as np

from proofs_numeric import _bf16codes as bc
from proofs_numeric.harness import Record, VerifyConfig
from proofs_numeric.prop_e_3 import records_for, verdicts

ID = "E.4"
STATEMENT = "with eta = 1e-3 < 2^-9, rule (1) passes iff the two bf16 entries are bitwise identical (or both zero)"
KIND = "exact"

ETA = 1e-3
#: (eta, premise): just below the true threshold 2^-8 (premise 2^-9 false, still agrees), and where it breaks
ETAS_OUT: tuple[float, ...] = (2.0**-8 * (1 - 2.0**-10), 2.0**-8, 2.0**-7)


def _fields(config: VerifyConfig) -> np.ndarray:
    return bc.exponent_fields(config) if config.size == "tiny" else np.arange(1, 255)


def _chunked(a: np.ndarray, b: np.ndarray, eta: float, premise: bool, info: dict) -> list[Record]:
    rule, bits = verdicts(a, b, eta)
    chunk = ((a & 0x7FFF) >> 7) // 16
    out = []
    for c in np.unique(chunk):
        sel = np.flatnonzero(chunk == c)
        grp = info | {"binade_fields": [int(16 * c), int(16 * c + 15)]}
        out += records_for(ID, a[sel], b[sel], rule[sel], bits[sel], eta, premise, grp)
    return out


def _zeros() -> list[Record]:
    z = np.array([0x0000, 0x8000], dtype=np.uint16)
    others = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x0080, 0x8080], dtype=np.uint16)
    a, b = np.repeat(z, others.size), np.tile(others, z.size)
    rule, bits = verdicts(a, b, ETA)
    both_zero = ((a & 0x7FFF) == 0) & ((b & 0x7FFF) == 0)
    agree = int(np.sum(rule == (bits | both_zero)))
    info = {"check": "zeros: rule == (bitwise or both zero)", "pairs": int(a.size), "eta": ETA}
    info |= {"signed_zero_pairs_rule_unchanged_bits_differ": int(np.sum(rule & ~bits))}
    return [
        Record(
            ID, "paper", "edge", info, agree, a.size, "==", True, agree == a.size, dtype="bfloat16"
        )
    ]


def _subnormals() -> list[Record]:
    codes = np.arange(1, 0x7F, dtype=np.uint16)
    a = np.concatenate([codes, codes | 0x8000, codes])
    b = np.concatenate([codes + 1, (codes + 1) | 0x8000, codes])
    rule, bits = verdicts(a, b, ETA)
    return records_for(
        ID, a, b, rule, bits, ETA, True, {"pairs_from": "adjacent subnormals"}, "edge"
    )


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        a, b = bc.neighbour_pairs(_fields(config))
        out = [
            Record(
                ID,
                "paper",
                "identity",
                {"check": "eta < 2^-9"},
                ETA,
                2.0**-9,
                "<",
                True,
                ETA < 2.0**-9,
                dtype="float64",
            )
        ]
        out += _chunked(a, b, ETA, True, {"pairs_from": "neighbours"})
        out += _zeros() + _subnormals()
        edge = np.array([(f << 7) | 127 for f in range(1, 254)], dtype=np.uint16)
        ea, eb = (
            np.concatenate([edge, edge | 0x8000]),
            np.concatenate([edge + 1, (edge + 1) | 0x8000]),
        )
        for eta in ETAS_OUT:
            info = {
                "pairs_from": "binade-edge neighbours",
                "premise_removed": f"eta = {eta} > 2^-9",
            }
            rule, bits = verdicts(ea, eb, eta)
            out += records_for(ID, ea, eb, rule, bits, eta, False, info, "edge")
    return out

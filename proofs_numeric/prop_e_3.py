"""Prop E.3 (soundness and completeness of the bf16 probe), arXiv 2511.08567 App. E.

Statement: for normal bf16 $w,\\hat w$ and $\\eta<2^{-9}$, $|\\hat w-w|\\le\\eta\\max(|w|,|\\hat w|)$ iff
$\\mathrm{bf16}(w)=\\mathrm{bf16}(\\hat w)$ (bitwise).

Verdict: exact. For each $\\eta$ in `ETAS` and each swept binade (pairs of every code with itself, its neighbours
$\\pm1$ and the codes 2, 3 above, both signs, binade edges included) and random far pairs:
"iff" (relation "==": pairs where `threegate.bf16.unchanged` agrees with `bitwise_unchanged`, against the number of
pairs) and "margin" (relation "<": $\\max_{\\text{distinct codes}}\\eta\\max(|w|,|\\hat w|)/|\\hat w-w|<1$, the distance to a
wrong "unchanged"; 0.256 at $\\eta=10^{-3}$, attained at the binade edges). Premise removed: $\\eta=3\\cdot10^{-3}$
(still agrees: any $\\eta<2^{-8}$ suffices) and $\\eta=2^{-8}$ (fails at the edge pairs of Lemma E.1).
"""

import jax
import numpy as np

from proofs_numeric import _bf16codes as bc
from proofs_numeric.harness import Record, VerifyConfig
from threegate.bf16 import bitwise_unchanged, unchanged

ID = "E.3"
STATEMENT = "for normal bf16 w, w^ and eta < 2^-9: |w^ - w| <= eta max(|w|, |w^|) iff bf16(w) == bf16(w^) bitwise"
KIND = "exact"

#: tolerances inside the premise (the paper's 1e-3, and up to just below 2^-9)
ETAS: tuple[float, ...] = (1e-3, 1.9e-3, 2.0**-9 * (1 - 2.0**-10))
#: tolerances outside it: (any eta < 2^-8 still works, 2^-8 does not)
ETAS_OUT: tuple[float, ...] = (3e-3, 2.0**-8)


_unchanged = jax.jit(unchanged)
_bitwise = jax.jit(bitwise_unchanged)


def verdicts(a: np.ndarray, b: np.ndarray, eta: float) -> tuple[np.ndarray, np.ndarray]:
    """(rule (1) at `eta`, bitwise equality) on the uint16 code pairs `(a, b)`, one jitted call each."""
    wa, wb = bc.to_bf16(a), bc.to_bf16(b)
    return np.asarray(_unchanged(wa, wb, np.float32(eta))), np.asarray(_bitwise(wa, wb))


def records_for(
    id: str,
    a: np.ndarray,
    b: np.ndarray,
    rule: np.ndarray,
    bits: np.ndarray,
    eta: float,
    premise: bool,
    info: dict,
    kind: str = "exhaustive",
) -> list[Record]:
    """ "iff" and "margin" records of rule (1) at `eta` on the code pairs `(a, b)` with precomputed verdicts."""
    agree = int(np.sum(rule == bits))
    x, y = bc.values(a), bc.values(b)
    distinct = a != b
    margin = float(
        np.max(eta * np.maximum(np.abs(x), np.abs(y))[distinct] / np.abs(y - x)[distinct])
    )
    info = info | {"eta": eta, "pairs": int(a.size), "disagreements": int(a.size - agree)}
    return [
        Record(
            id,
            "paper",
            kind,
            info | {"check": "iff"},
            agree,
            a.size,
            "==",
            premise,
            agree == a.size,
            dtype="bfloat16",
        ),
        Record(
            id,
            "paper",
            kind,
            info | {"check": "margin"},
            margin,
            1.0,
            "<",
            premise,
            margin < 1.0,
            dtype="bfloat16",
        ),
    ]


def grouped_records(
    id: str, a: np.ndarray, b: np.ndarray, n_random: int, eta: float, premise: bool, info: dict
) -> list[Record]:
    """Records per binade of the first `a.size - n_random` (neighbour) pairs, and one for the random tail."""
    rule, bits = verdicts(a, b, eta)
    n_nb = a.size - n_random
    field = (a[:n_nb] & 0x7FFF) >> 7
    out = []
    for f in np.unique(field):
        sel = np.flatnonzero(field == f)
        grp = info | {"pairs_from": "neighbours", "binade_e": int(f) - 127}
        kind = "exhaustive" if premise else "edge"
        out += records_for(id, a[sel], b[sel], rule[sel], bits[sel], eta, premise, grp, kind)
    if n_random:
        sl = slice(n_nb, None)
        out += records_for(
            id,
            a[sl],
            b[sl],
            rule[sl],
            bits[sl],
            eta,
            premise,
            info | {"pairs_from": "random"},
            "random",
        )
    return out


def random_pairs(config: VerifyConfig, salt: str) -> tuple[np.ndarray, np.ndarray]:
    """Random normal code pairs of one sign over the whole range (mostly far apart)."""
    rng = config.rng(salt)
    n = config.n(2000, 20000)
    a = rng.integers(0x0080, 0x7F80, n) | (rng.integers(0, 2, n) << 15)
    b = rng.integers(0x0080, 0x7F80, n) | ((a >> 15) << 15)
    return a.astype(np.uint16), b.astype(np.uint16)


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        na, nb = bc.neighbour_pairs(bc.exponent_fields(config))
        ra, rb = random_pairs(config, f"{ID}/random")
        a, b = np.concatenate([na, ra]), np.concatenate([nb, rb])
        out: list[Record] = []
        for eta in ETAS:
            out += grouped_records(ID, a, b, ra.size, eta, True, {})
        for eta in ETAS_OUT:
            info = {"premise_removed": f"eta = {eta} >= 2^-9"}
            out += grouped_records(ID, a, b, ra.size, eta, False, info)
    return out

"""bf16 code sets shared by the Gate III checkers (Cor 3.6, Lemmas E.1–E.2, Prop E.3, Cor E.4).

A bf16 code is a uint16 `s eeeeeeee mmmmmmm`; a normal value with exponent field $E\\in[1,254]$ lies in the binade
$[2^e,2^{e+1})$, $e=E-127$, which holds the 128 codes `E << 7 | m`. Values are widened to float64 exactly
(ml_dtypes), so gaps and ratios below are exact dyadic rationals.
"""

import ml_dtypes
import numpy as np

from proofs_numeric.harness import VerifyConfig

__all__ = ["BF16", "binade_codes", "exponent_fields", "neighbour_pairs", "to_bf16", "values"]

BF16 = ml_dtypes.bfloat16


def exponent_fields(config: VerifyConfig) -> np.ndarray:
    """Exponent fields to sweep: both ends of the normal range, 1 ↔ 2⁰, and an even spread (all 254 at "large")."""
    n = config.n(tiny=6, default=32, large=254)
    spread = np.linspace(1, 254, n).round().astype(np.int64)
    return np.unique(np.concatenate([spread, [1, 126, 127, 128, 253, 254]]))


def binade_codes(e_field: int, sign: int = 0) -> np.ndarray:
    """The 128 uint16 codes of binade `e_field` (sign bit `sign`)."""
    return ((sign << 15) | (int(e_field) << 7) | np.arange(128)).astype(np.uint16)


def to_bf16(codes: np.ndarray) -> np.ndarray:
    """The bf16 values with uint16 `codes` (a view)."""
    return np.asarray(codes, dtype=np.uint16).view(BF16)


def values(codes: np.ndarray) -> np.ndarray:
    """The exact float64 values of uint16 bf16 `codes`."""
    return to_bf16(codes).astype(np.float64)


def neighbour_pairs(
    e_fields: np.ndarray, offsets: tuple[int, ...] = (0, 1, -1, 2, 3)
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (code, code + offset) for every code of `e_fields`, both signs, kept where both are finite normals."""
    base = np.concatenate([binade_codes(e, s) for e in e_fields for s in (0, 1)]).astype(np.int64)
    a, b = [], []
    for off in offsets:
        other = base + off
        mag = other & 0x7FFF
        keep = (mag >= 0x0080) & (mag < 0x7F80)  # finite normal (offsets may cross a binade edge)
        keep &= (other >> 15) == (base >> 15)  # same sign (offsets never wrap the sign bit)
        a.append(base[keep])
        b.append(other[keep])
    return np.concatenate(a).astype(np.uint16), np.concatenate(b).astype(np.uint16)

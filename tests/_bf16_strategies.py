"""Host references (NumPy + ml_dtypes, float64) and hypothesis strategies for tests/test_bf16.py.

Hypothesis cannot infer bf16 arrays, so codes are drawn as uint16 (or uint32 for float32) and viewed.
Batches have a fixed length `BATCH` so every jitted call compiles once.
"""

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

BF16 = ml_dtypes.bfloat16
BATCH = 64

#: every bf16 code, as codes, as values, and as float64
CODES = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
VALUES = CODES.view(BF16)
with np.errstate(invalid="ignore"):
    F64 = VALUES.astype(np.float64)
EXP = (CODES.astype(np.int64) >> 7) & 0xFF
MANT = CODES.astype(np.int64) & 0x7F
NEG = CODES >= 0x8000
FINITE = EXP != 0xFF
NORMAL = (EXP >= 1) & (EXP <= 254)
SUBNORMAL = (EXP == 0) & (MANT != 0)
ZERO = (EXP == 0) & (MANT == 0)


def ref_ulp(x64: np.ndarray) -> np.ndarray:
    """float64 spacing above |x|: 2^(e-7) for |x| in [2^e, 2^(e+1)), 2^-133 below 2^-126."""
    a = np.abs(x64)
    _, ex = np.frexp(np.where(a > 0, a, 1.0))  # a = f * 2^ex, f in [0.5, 1)  ⇒  e = ex - 1
    return np.where(a >= 2.0**-126, np.ldexp(1.0, ex - 8), 2.0**-133)


def ref_realized(w: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """optax semantics on the host (IEEE, gradual underflow): bf16(f32(w) + delta) has other bits than w."""
    with np.errstate(all="ignore"):
        s = w.astype(np.float32) + delta.astype(np.float32)
    return s.astype(BF16).view(np.uint16) != w.view(np.uint16)


def ref_rule(w: np.ndarray, w_hat: np.ndarray, eta: float) -> np.ndarray:
    """Rule (1) of Def 2.1 in float64 (exact for bf16 inputs)."""
    a, b = w.astype(np.float64), w_hat.astype(np.float64)
    with np.errstate(all="ignore"):
        return np.abs(b - a) <= eta * np.maximum(np.abs(a), np.abs(b))


def _finite_codes(c: np.ndarray) -> bool:
    return bool(np.all((c >> 7) & 0xFF != 0xFF))


def bf16_batches(finite: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Batches of BATCH bf16 values drawn as uint16 codes (one binary draw; optionally filtered to all-finite,
    which keeps about 78% of the draws)."""
    codes = st.binary(min_size=2 * BATCH, max_size=2 * BATCH).map(
        lambda b: np.frombuffer(b, np.uint16).copy()
    )
    if finite:
        codes = codes.filter(_finite_codes)
    return codes.map(lambda c: c.view(BF16))


def f32_batches() -> st.SearchStrategy[np.ndarray]:
    """Batches of BATCH float32 values drawn as uint32 codes (NaN, ±inf and subnormals included). Every 4th entry
    is made tiny (|x| < 2^-111, subnormals included), every 4th+2 gets a bf16 tie in its low 16 bits."""

    def build(b: bytes) -> np.ndarray:
        c = np.frombuffer(b, np.uint32).copy()
        i = np.arange(BATCH)
        c[i % 4 == 1] &= np.uint32(0x87FFFFFF)
        c[i % 4 == 2] = (c[i % 4 == 2] & np.uint32(0xFFFF0000)) | np.uint32(0x8000)
        return c.view(np.float32)

    return st.binary(min_size=4 * BATCH, max_size=4 * BATCH).map(build)

"""Gate III (precision): which float32 updates a stored bfloat16 weight can realize, exactly.

bf16 format: 1 sign bit, 8 exponent bits (bias 127), 7 stored mantissa bits; a bf16 value is the upper half of a
float32 bit pattern. For a normal value $|x|\\in[2^e,2^{e+1})$, $e\\in[-126,127]$, the spacing is
$\\mathrm{ULP}(x)=2^{e-7}$ (128 codes per binade). Subnormals ($0<|x|<2^{-126}$) and zero have the fixed spacing
$2^{-133}$; the largest finite value is $(2-2^{-7})\\,2^{127}$, with $\\mathrm{ULP}=2^{120}$. float32 → bf16 rounds
to nearest, ties to even (RNE); a value $\\ge(2-2^{-8})\\,2^{127}$ rounds to infinity (RNE overflow).

Update semantics: a stored weight $w$ and a float32 update $\\delta$ give the new stored value
$\\mathrm{bf16}(\\mathrm{fl}_{32}(w+\\delta))$, as `optax.apply_updates` computes it (two roundings: the float32 add,
then RNE to bf16).

Backends: XLA:CPU flushes float32 subnormals to zero in arithmetic *and* comparisons (FTZ/DAZ, measured:
`2**-149 < 2**-148` is False under `jit`), GPUs and NumPy do not; conversions bf16 ↔ f32 keep subnormals on
both. Every function here is computed with integer arithmetic on bit patterns, or on operands rescaled by
$2^{64}$ into the normal range, so its result does not depend on the backend:

| function | exact domain (every backend) | outside it |
| --- | --- | --- |
| `ulp`, `half_ulp` | every finite code, subnormals and ±0 included | NaN for ±inf, NaN |
| `round_to_bf16` | every float32 (RNE, overflow to ±inf) | NaN → canonical quiet NaN 0x7FC0/0xFFC0 |
| `realized` | every finite `w`, every float32 `delta` (NaN/inf too) | `w`=±inf: True iff the sum is NaN; `w`=NaN: False |
| `min_realizing_update` | every finite `w`, both directions | NaN for non-finite `w` |
| `unchanged` | finite pairs, any $\\eta$ with $\\mathrm{fl}_{32}(\\eta)<2^{-8}$ (then bitwise, up to ±0) | False if non-finite; larger $\\eta$: float32 arithmetic |
| `bitwise_unchanged` | every code (compares bits: NaN == NaN iff same bits) | — |

Caller beware: an `ulp` below $2^{-126}$ ($|w|<2^{-119}$) or a threshold below it ($|w|<2^{-118}$) is returned
exactly as a float32 subnormal, but XLA:CPU flushes it to zero in any later float arithmetic; likewise the naive
`(w.astype(f32) + delta).astype(bf16) != w` is wrong on XLA:CPU wherever `w` or `delta` is below $2^{-126}$.

Shapes: elementwise functions take arrays of one shape `*s` (a scalar `delta` broadcasts). Pytrees are dicts
(possibly nested) of bf16 arrays.

References: Zhu et al., "The Path Not Taken" (arXiv 2511.08567), Def 2.1–2.2, Cor 3.6, App. E (Lemmas E.1–E.2,
Prop E.3, Cor E.4).
"""

from typing import Final, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax
from jax.typing import ArrayLike

from threegate.errors import NonFiniteError

__all__ = [
    "DOMAIN",
    "ChangeCount",
    "bitwise_unchanged",
    "change_counts",
    "count_nonfinite",
    "from_bits",
    "half_ulp",
    "min_realizing_update",
    "realized",
    "round_to_bf16",
    "to_bits",
    "ulp",
    "unchanged",
    "update_sparsity",
]


class _Domain(NamedTuple):
    """bf16 constants. `min_subnormal` is also ULP(0) and the subnormals' ULP; float32 values at or above
    `overflow` round to inf (RNE tie → even); rule (1) is bitwise equality (up to ±0) iff
    eta < `eta_bitwise_sup` (the binade-edge equality of Lemma E.1), the paper's sufficient bound being
    `eta_paper_bound` (Prop E.3) and its choice `eta_paper` (Def 2.1)."""

    min_subnormal: float = 2.0**-133
    min_normal: float = 2.0**-126
    max_finite: float = (2 - 2.0**-7) * 2.0**127
    overflow: float = (2 - 2.0**-8) * 2.0**127
    ulp_max: float = 2.0**120
    eta_paper: float = 1e-3
    eta_paper_bound: float = 2.0**-9
    eta_bitwise_sup: float = 2.0**-8


#: bf16 format constants and the rule-(1) thresholds; see the module docstring for each function's domain.
DOMAIN: Final = _Domain()

_SMALL: Final = np.uint32(0x21800000)  # bits of 2^-60: below it both operands are rescaled by 2^64
_SCALE_EXP: Final = np.uint32(64 << 23)
_SIGN32: Final = np.uint32(0x80000000)
_ABS32: Final = np.uint32(0x7FFFFFFF)
_INF32: Final = np.uint32(0x7F800000)


def _dtype(x: ArrayLike) -> np.dtype:
    """The dtype `x` has before any conversion (a float64 NumPy array is not silently made float32)."""
    dt = getattr(x, "dtype", None)
    return np.dtype(dt) if dt is not None else jnp.asarray(x).dtype


def _bf16(x: ArrayLike, name: str) -> Array:
    if _dtype(x) != jnp.bfloat16:
        raise TypeError(f"{name}: expected bfloat16, got {_dtype(x)}")
    return jnp.asarray(x)


def _same_shape(a: Array, b: Array, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names}: shapes differ, {a.shape} vs {b.shape}")


def to_bits(x: ArrayLike) -> Array:
    """The uint16 codes of a bf16 array (a bit view, no rounding): sign, 8 exponent bits, 7 mantissa bits.

    Example:
      >>> import ml_dtypes, numpy as np
      >>> [hex(c) for c in to_bits(np.array([1.0, -2.0], ml_dtypes.bfloat16)).tolist()]
      ['0x3f80', '0xc000']
    """
    return lax.bitcast_convert_type(_bf16(x, "to_bits"), jnp.uint16)


def from_bits(u: ArrayLike) -> Array:
    """The bf16 array with uint16 codes `u` (inverse of `to_bits`).

    Example:
      >>> import numpy as np
      >>> from_bits(np.array([0x3F80, 0x3F81], np.uint16)).astype(np.float32).tolist()  # 1 and 1 + 2^-7
      [1.0, 1.0078125]
    """
    if _dtype(u) != jnp.uint16:
        raise TypeError(f"from_bits: expected uint16, got {_dtype(u)}")
    return lax.bitcast_convert_type(jnp.asarray(u), jnp.bfloat16)


def _wide(x: Array) -> Array:
    """float32 bit pattern (uint32) of a bf16 array: exact widening by a shift, subnormals kept."""
    return lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32) << 16


def _f32_bits(x: Array) -> Array:
    return lax.bitcast_convert_type(x, jnp.uint32)


def _f32(u: Array) -> Array:
    return lax.bitcast_convert_type(u, jnp.float32)


def _finite_bits(u32: Array) -> Array:
    return (u32 & _INF32) != _INF32


def count_nonfinite(x: ArrayLike) -> Array:
    """Number of NaN or ±inf entries of a floating array (int32 scalar; bf16 is decided on the bits).

    Example:
      >>> import numpy as np
      >>> int(count_nonfinite(np.array([1.0, np.inf, -np.inf, np.nan], np.float32)))
      3
    """
    if not jnp.issubdtype(_dtype(x), jnp.floating):
        raise TypeError(f"count_nonfinite: expected a floating dtype, got {_dtype(x)}")
    x = jnp.asarray(x)
    bad = ~_finite_bits(_wide(x)) if x.dtype == jnp.bfloat16 else ~jnp.isfinite(x)
    return jnp.sum(bad, dtype=jnp.int32)


def _pow2(exp_field: Array, shift: int) -> Array:
    """float32 $2^{E-127-\\mathrm{shift}}$ from a bf16 exponent field E (subnormal results built as bits)."""
    e = exp_field.astype(jnp.int32)
    e = jnp.where(e == 0, 1, e) - shift  # E == 0 (zero, subnormal) has the spacing of E == 1
    normal = lax.shift_left(e.astype(jnp.uint32), np.uint32(23))
    # a float32 subnormal 2^(e-127) = 2^(e+22) · 2^-149 (e in [-6, 0] here)
    sub = lax.shift_left(np.uint32(1), (jnp.clip(e, -22, 0) + 22).astype(jnp.uint32))
    return _f32(jnp.where(e >= 1, normal, sub))


def ulp(x: ArrayLike) -> Array:
    """bf16 spacing at each bf16 value, $\\mathrm{ULP}(x)=2^{e-7}$ for $|x|\\in[2^e,2^{e+1})$ (App. E).

    Subnormals and ±0 give $2^{-133}$ (the subnormal spacing), ±max-finite gives $2^{120}$; ±inf and NaN give NaN.
    This is the spacing *above* $|x|$; below a binade edge $|x|=2^e$ ($e>-126$) the spacing is half of it.

    Args:
      x: bf16 array, any shape.

    Returns:
      float32 array of the same shape (exact: every bf16 spacing is a power of two in float32's range).

    Example:
      >>> import ml_dtypes, numpy as np
      >>> ulp(np.array([1.0, 1.5, 2.0, 0.0], ml_dtypes.bfloat16)).tolist() == [2**-7, 2**-7, 2**-6, 2**-133]
      True
    """
    u = _wide(_bf16(x, "ulp"))
    return jnp.where(_finite_bits(u), _pow2((u >> 23) & 0xFF, 7), jnp.float32(jnp.nan))


def half_ulp(x: ArrayLike) -> Array:
    """The paper's realization threshold $\\tfrac12\\mathrm{ULP}(x)$ (Cor 3.6), float32, same domain as `ulp`.

    An approximation: the exact threshold is `min_realizing_update`, which differs at ties, at binade edges
    (toward zero), at ±0 and through the float32 add's own rounding.

    Example:
      >>> import ml_dtypes, numpy as np
      >>> half_ulp(np.array([1.0, 3.0], ml_dtypes.bfloat16)).tolist()  # 2^-8 and 2^-7
      [0.00390625, 0.0078125]
    """
    u = _wide(_bf16(x, "half_ulp"))
    return jnp.where(_finite_bits(u), _pow2((u >> 23) & 0xFF, 8), jnp.float32(jnp.nan))


def _rne_bits(u32: Array) -> Array:
    """uint16 code of RNE(float32 bits → bf16), integer-only (FTZ-free); NaN → canonical quiet NaN."""
    lsb = (u32 >> 16) & 1
    rounded = ((u32 + np.uint32(0x7FFF) + lsb) >> 16).astype(jnp.uint16)
    nan = jnp.where(u32 & _SIGN32 != 0, np.uint16(0xFFC0), np.uint16(0x7FC0))
    return jnp.where((u32 & _ABS32) > _INF32, nan, rounded)


def round_to_bf16(x: ArrayLike) -> Array:
    """$\\mathrm{bf16}(x)$ of a float32 array, round to nearest even, overflow to ±inf (what `astype` does).

    Exact on every float32, subnormals included, on every backend (integer arithmetic on the bit pattern).

    Example:
      >>> import numpy as np
      >>> x = np.array([1 + 2**-8, 1 + 3 * 2**-8], np.float32)  # two ties: to the even neighbour
      >>> round_to_bf16(x).astype(np.float32).tolist()
      [1.0, 1.015625]
    """
    if _dtype(x) != jnp.float32:
        raise TypeError(f"round_to_bf16: expected float32, got {_dtype(x)}")
    return lax.bitcast_convert_type(_rne_bits(_f32_bits(jnp.asarray(x))), jnp.bfloat16)


def _upscale(u32: Array) -> Array:
    """float32 $x\\cdot2^{64}$ (exact, normal) for bits `u32` with $|x|<2^{-60}$, without float arithmetic on
    subnormals (a subnormal is $m\\cdot2^{-149}$; $m\\cdot2^{-85}$ is a product of normals)."""
    sign = u32 & _SIGN32
    mant = (u32 & np.uint32(0x7FFFFF)).astype(jnp.int32).astype(jnp.float32) * jnp.float32(2.0**-85)
    sub = _f32(_f32_bits(mant) | sign)
    is_sub = (u32 & _INF32) == 0
    return jnp.where(is_sub, sub, _f32(jnp.where(is_sub, u32, u32 + _SCALE_EXP)))


def _downscale_bits(s: Array) -> Array:
    """Bits of $s\\cdot2^{-64}$ for a float32 $s$ that is 0 or a multiple of $2^{-85}$ with $|s|<2^{5}$."""
    u = _f32_bits(s)
    sign, mag = u & _SIGN32, u & _ABS32
    normal = mag >= np.uint32((127 - 62) << 23)  # |s| >= 2^-62  ⇔  |s|·2^-64 >= 2^-126
    m = (jnp.abs(s) * jnp.float32(2.0**85)).astype(jnp.int32).astype(jnp.uint32)
    return sign | jnp.where(normal, mag - _SCALE_EXP, jnp.where(mag == 0, 0, m))


def _add_bits(a: Array, b: Array) -> Array:
    """IEEE float32 bits of $\\mathrm{fl}_{32}(a+b)$ (RNE, gradual underflow) from bits, on any backend.

    If both $|a|,|b|<2^{-60}$ the add is done on $2^{64}a, 2^{64}b$ (normal operands; a subnormal true sum is
    exact, so scaling commutes with rounding) and the result scaled back with integers. Otherwise a subnormal
    operand is below half a float32 ulp of the other one and the sum is 0 or $\\ge2^{-84}$, so FTZ/DAZ cannot
    change the result.
    """
    small = ((a & _ABS32) < _SMALL) & ((b & _ABS32) < _SMALL)
    scaled = _downscale_bits(_upscale(a) + _upscale(b))
    return jnp.where(small, scaled, _f32_bits(_f32(a) + _f32(b)))


def _as_delta(w: Array, delta: ArrayLike) -> Array:
    if isinstance(delta, float | int):
        delta = np.float32(delta)
    if _dtype(delta) != jnp.float32:
        raise TypeError(f"delta: expected float32, got {_dtype(delta)}")
    delta = jnp.asarray(delta)
    if delta.shape not in ((), w.shape):
        raise ValueError(f"w, delta: shapes differ, {w.shape} vs {delta.shape}")
    return jnp.broadcast_to(delta, w.shape)


def realized(w: ArrayLike, delta: ArrayLike) -> Array:
    """Whether storing $\\mathrm{bf16}(\\mathrm{fl}_{32}(w+\\delta))$ changes the stored bits of $w$ (Cor 3.6, exact).

    Same semantics as `optax.apply_updates` on a bf16 parameter with a float32 update, but independent of the
    backend's subnormal flushing (see the module docstring). Bits, not values: $w=-0$ with $\\delta=+0$ is
    realized ($-0+0=+0$), and so is $w=+0$ with any $\\delta<0$ (the result is $-0$ or below).

    Args:
      w: bf16 array `*s` (stored weights). Exact for every finite `w`; for $w=\\pm\\infty$ True iff the sum is
        NaN ($\\delta$ NaN or $\\mp\\infty$); for NaN `w` False (NaN payloads are not modelled).
      delta: float32 array `*s` or scalar (the update); any float32, NaN and ±inf included.

    Returns:
      bool array `*s`.

    Example:
      >>> import ml_dtypes, numpy as np
      >>> w = np.array([1.0, 1.0078125], ml_dtypes.bfloat16)  # even and odd mantissa
      >>> realized(w, np.float32(2.0**-8)).tolist()  # exactly half a gap: ties to even
      [False, True]
    """
    w = _bf16(w, "w")
    delta = _as_delta(w, delta)
    wb, db = _wide(w), _f32_bits(delta)
    s = _add_bits(wb, db)
    changed = _rne_bits(s) != (wb >> 16).astype(jnp.uint16)
    s_nan = (s & _ABS32) > _INF32
    w_nan = (wb & _ABS32) > _INF32
    return jnp.where(_finite_bits(wb), changed, s_nan & ~w_nan)


def min_realizing_update(w: ArrayLike, direction: int | ArrayLike) -> Array:
    """Smallest float32 $t\\ge0$ such that `realized(w, direction * t)` (the exact Cor 3.6 threshold).

    Exact: `realized(w, d*t)` is monotone in $t\\ge0$ (both roundings are monotone), so $t$ is found by bisection
    over the 2^31 non-negative float32 codes with the exact `realized` (31 steps). Hence `realized(w, d*t)` is
    True and, for $t>0$, `realized(w, d*nextafter(t, 0))` is False. Closed forms (tested), for normal $|w|\\ge2^{-90}$:

    - $\\tfrac12\\mathrm{ULP}(w)\\,(1-2^{-16})$ at an odd mantissa: exactly half a gap rounds to the even
      neighbour, and the float32 add already rounds $w+\\delta$ up to that half gap from $2^{-16}$ below;
    - the float32 after $\\tfrac12\\mathrm{ULP}(w)\\,(1+2^{-16})$ at an even mantissa;
    - toward zero at a binade edge $|w|=2^e$, $e>-126$ (gap below half as wide): the float32 after
      $\\tfrac14\\mathrm{ULP}(w)\\,(1+2^{-16})$;
    - subnormal $w$ (the add is exact): $\\tfrac12\\mathrm{ULP}=2^{-134}$, plus $2^{-149}$ at even mantissas;
    - zeros: $(+0,-1)\\mapsto2^{-149}$ (result $-0$), $(-0,+1)\\mapsto0$ ($-0+0=+0$), otherwise
      $2^{-134}+2^{-149}$; max-finite toward $+\\infty$: $2^{119}-2^{103}$ (overflow).

    Args:
      w: bf16 array `*s`; exact for every finite code, NaN for ±inf and NaN.
      direction: +1 (updates toward $+\\infty$) or -1 (toward $-\\infty$), a Python int (validated) or an
        integer scalar array (traced: any value other than -1 means +1).

    Returns:
      float32 array `*s` (a magnitude; may be a float32 subnormal, see the module docstring).

    Example:
      >>> import ml_dtypes, numpy as np
      >>> t = min_realizing_update(np.array([1.0], ml_dtypes.bfloat16), -1)  # toward 0 from a binade edge
      >>> float(t[0]) == 2.0**-9 * (1 + 2.0**-16) + 2.0**-32
      True
    """
    if isinstance(direction, int) and direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    return _min_realizing_update(_bf16(w, "w"), jnp.asarray(direction, jnp.int32))


@jax.jit
def _min_realizing_update(w: Array, direction: Array) -> Array:
    sign = jnp.where(direction == -1, _SIGN32, np.uint32(0))

    def step(_, lohi):
        lo, hi = lohi
        mid = lo + (hi - lo + 1) // 2  # in (lo, hi]: never the virtual code -1
        hit = realized(w, _f32(mid.astype(jnp.uint32) | sign))
        return jnp.where(hit, lo, mid), jnp.where(hit, mid, hi)

    # invariant: code lo does not realize (-1 is virtual), code hi does (delta = ±inf, for finite w)
    lo = jnp.full(w.shape, -1, jnp.int32)
    hi = jnp.full(w.shape, 0x7F800000, jnp.int32)
    _, hi = lax.fori_loop(0, 31, step, (lo, hi))
    t = _f32(hi.astype(jnp.uint32))
    return jnp.where(_finite_bits(_wide(w)), t, jnp.float32(jnp.nan))


def bitwise_unchanged(w: ArrayLike, w_hat: ArrayLike) -> Array:
    """Elementwise equality of the uint16 codes (so +0 ≠ −0, and a NaN equals only its own bits).

    Example:
      >>> import ml_dtypes, numpy as np
      >>> w = np.array([0.0, 1.0, 1.0], ml_dtypes.bfloat16)
      >>> w_hat = np.array([-0.0, 1.0, 1.0078125], ml_dtypes.bfloat16)
      >>> bitwise_unchanged(w, w_hat).tolist()
      [False, True, False]
    """
    w, w_hat = _bf16(w, "w"), _bf16(w_hat, "w_hat")
    _same_shape(w, w_hat, "w, w_hat")
    return to_bits(w) == to_bits(w_hat)


def unchanged(w: ArrayLike, w_hat: ArrayLike, eta: float | ArrayLike = DOMAIN.eta_paper) -> Array:
    """Rule (1) of Def 2.1: $|\\hat w-w|\\le\\eta\\max(|w|,|\\hat w|)$, elementwise (exact for $\\eta<2^{-8}$).

    Both values are widened to float32 (exact); pairs with both magnitudes below $2^{-60}$ are first scaled by
    $2^{64}$ (the rule is homogeneous), so subnormals are compared exactly on every backend. For
    $\\eta<2^{-8}$ this is bitwise equality except that $(\\pm0,\\mp0)$ is unchanged (Prop E.3, Cor E.4; the
    paper's sufficient bound is $2^{-9}$); at $\\eta=2^{-8}$ the adjacent pair $(2^{e+1}-2^{e-7},2^{e+1})$ is
    already "unchanged" (Lemma E.1's boundary equality). `eta` is used as a float32 (rounded to nearest), so a
    Python $\\eta$ within $2^{-33}$ below $2^{-8}$ already counts as $2^{-8}$. For $\\mathrm{fl}_{32}(\\eta)\\ge2^{-8}$
    the rule is float32 arithmetic, not exact: $|\\hat w-w|$ and $\\eta\\max$ are each rounded once, so pairs whose
    relative gap lies within about $2^{-23}$ of $\\eta$ (and, for $\\eta\\ge1$, opposite-sign pairs of very different
    magnitude) can get the other verdict than in real arithmetic.

    Args:
      w, w_hat: bf16 arrays of one shape `*s`. A pair with a non-finite entry is never unchanged (rule (1) is
        undefined there; count those with `count_nonfinite` / `change_counts`).
      eta: relative tolerance $\\eta\\ge0$ (default $10^{-3}$, the paper's).

    Returns:
      bool array `*s`.

    Example:
      >>> import ml_dtypes, numpy as np
      >>> w = np.array([0.0, 1.0, 1.0], ml_dtypes.bfloat16)
      >>> w_hat = np.array([-0.0, 1.0, 1.0078125], ml_dtypes.bfloat16)  # ±0, equal, one ULP apart
      >>> unchanged(w, w_hat).tolist()
      [True, True, False]
    """
    w, w_hat = _bf16(w, "w"), _bf16(w_hat, "w_hat")
    _same_shape(w, w_hat, "w, w_hat")
    if isinstance(eta, float | int) and not 0 <= eta < np.inf:
        raise ValueError(f"eta must be finite and >= 0, got {eta}")
    a, b = _wide(w), _wide(w_hat)
    small = ((a & _ABS32) < _SMALL) & ((b & _ABS32) < _SMALL)
    x = jnp.where(small, _upscale(a), _f32(a))
    y = jnp.where(small, _upscale(b), _f32(b))
    m = jnp.maximum(jnp.abs(x), jnp.abs(y))
    rule = jnp.abs(y - x) <= jnp.asarray(eta, jnp.float32) * m
    return rule & _finite_bits(a) & _finite_bits(b)


class ChangeCount(NamedTuple):
    """Per-tensor change statistics (int32 scalars; a pytree, so jit/vmap-able).

    Attributes:
      changed: finite pairs that rule (1) calls changed.
      bit_changed: finite pairs whose codes differ (= `changed` + signed-zero flips, for $\\eta<2^{-8}$).
      nonfinite: pairs where either entry is NaN or ±inf (excluded from both counts above).
      size: number of entries.
    """

    changed: Array
    bit_changed: Array
    nonfinite: Array
    size: Array


def change_counts(
    w0: ArrayLike, w1: ArrayLike, eta: float | ArrayLike = DOMAIN.eta_paper
) -> ChangeCount:
    """Counts of changed / bit-changed / non-finite entries between two bf16 tensors (Def 2.2, per tensor).

    Args:
      w0, w1: bf16 arrays of one shape, fewer than 2^31 entries (int32 counts); any codes, non-finite included.
      eta: tolerance of rule (1) (see `unchanged`).

    Returns:
      `ChangeCount` of int32 scalars; the tensor's sparsity is `1 - changed / size` when `nonfinite == 0`.

    Example:
      >>> import ml_dtypes, numpy as np
      >>> w0 = np.array([0.0, 1.0, 1.0, 2.0], ml_dtypes.bfloat16)
      >>> w1 = np.array([-0.0, 1.0, 1.0078125, np.inf], ml_dtypes.bfloat16)
      >>> {k: int(v) for k, v in change_counts(w0, w1)._asdict().items()}
      {'changed': 1, 'bit_changed': 2, 'nonfinite': 1, 'size': 4}
    """
    w0, w1 = _bf16(w0, "w0"), _bf16(w1, "w1")
    _same_shape(w0, w1, "w0, w1")
    if w0.size >= 2**31:
        raise ValueError(f"tensor of {w0.size} entries is too large for int32 counts; split it")
    finite = _finite_bits(_wide(w0)) & _finite_bits(_wide(w1))

    def count(mask: Array) -> Array:
        return jnp.sum(mask & finite, dtype=jnp.int32)

    return ChangeCount(
        changed=count(~unchanged(w0, w1, eta)),
        bit_changed=count(~bitwise_unchanged(w0, w1)),
        nonfinite=jnp.sum(~finite, dtype=jnp.int32),
        size=jnp.asarray(w0.size, jnp.int32),
    )


def update_sparsity(theta0, theta1, eta: float = DOMAIN.eta_paper) -> float:
    """bf16-aware update sparsity of Def 2.2, eq. (2): $1-\\|\\theta^1-\\theta^0\\|^{bf16}_{0,\\eta}/n$.

    Host-side (returns a Python float in [0, 1]; each tensor's counts are one jitted `change_counts`).

    Args:
      theta0, theta1: bf16 arrays of one shape, or pytrees (nested dicts) of them with equal structure.
      eta: tolerance of rule (1), default $10^{-3}$.

    Raises:
      ValueError: structures or shapes differ (the message names the key); TypeError: a non-bf16 leaf.
      NonFiniteError: a NaN/inf entry (rule (1) is undefined there; use `change_counts` to count them).

    Example:
      >>> import ml_dtypes, numpy as np
      >>> bf16 = ml_dtypes.bfloat16
      >>> theta0 = {"q": np.array([1.0, 2.0, 3.0, 4.0], bf16), "k": np.array([0.5], bf16)}
      >>> theta1 = {"q": np.array([1.0, 2.0, 3.0, 4.03125], bf16), "k": np.array([0.5], bf16)}
      >>> update_sparsity(theta0, theta1)  # one of five entries moved
      0.8
    """
    if not 0 <= eta < np.inf:
        raise ValueError(f"eta must be finite and >= 0, got {eta}")
    leaves0, tree0 = jax.tree_util.tree_flatten_with_path(theta0)
    leaves1, tree1 = jax.tree_util.tree_flatten_with_path(theta1)
    if tree0 != tree1:
        k0 = {jax.tree_util.keystr(p) for p, _ in leaves0}
        k1 = {jax.tree_util.keystr(p) for p, _ in leaves1}
        raise ValueError(
            f"theta0 and theta1 have different structures: only in theta0 {sorted(k0 - k1)}, "
            f"only in theta1 {sorted(k1 - k0)}"
        )
    changed = total = 0
    for (path, a), (_, b) in zip(leaves0, leaves1, strict=True):
        name = jax.tree_util.keystr(path) or "<array>"
        for x in (a, b):
            if _dtype(x) != jnp.bfloat16:
                raise TypeError(f"{name}: expected bfloat16, got {_dtype(x)}")
        a, b = jnp.asarray(a), jnp.asarray(b)
        if a.shape != b.shape:
            raise ValueError(f"{name}: shapes differ, {a.shape} vs {b.shape}")
        c = _change_counts_jit(a, b, eta)
        if int(c.nonfinite):
            raise NonFiniteError(f"{name}: {int(c.nonfinite)} non-finite entries (NaN/inf)")
        changed, total = changed + int(c.changed), total + int(c.size)
    if total == 0:
        raise ValueError("update_sparsity: no parameters")
    return 1.0 - changed / total


_change_counts_jit = jax.jit(change_counts)

"""The one definition of "unchanged" for a stored weight (Def 2.1, M2), used by every count in threegate.

Def 2.1 compares the *stored* values of a weight before and after training. For bf16 (and every IEEE format)
the rule used everywhere in threegate is:

$$\\mathrm{unchanged}(w_0, w_1) \\iff \\mathrm{code}(w_0) = \\mathrm{code}(w_1)
\\;\\lor\\; w_0, w_1 \\in \\{+0, -0\\}.$$

That is, the stored bit patterns are equal, except that a signed-zero flip ($+0 \\leftrightarrow -0$) is
**unchanged**. Why this ±0 rule:

- it is rule (1) of Def 2.1 itself, $|\\hat w - w| \\le \\eta\\max(|w|, |\\hat w|)$: for $(\\pm0, \\mp0)$ both sides
  are 0, so the pair is unchanged for every $\\eta$. On finite bf16 pairs and the paper's $\\eta = 10^{-3}$
  (any $\\eta < 2^{-8}$), rule (1) *is* this predicate (Prop E.3 / Cor E.4; `threegate.bf16.unchanged`
  computes rule (1) in float arithmetic and agrees with it there, see `proofs_numeric/prop_e_3.py`);
- $+0$ and $-0$ are the same value ($+0 = -0$ in IEEE arithmetic and in the float64 upcast that `compare` uses
  for pairs of different dtypes), and no forward pass can tell them apart in a matmul;
- a flip can arise without any learning: `-0 + 0.0` is `+0` in round-to-nearest, so an update that is exactly
  zero (a frozen entry of a masked run written back through `w + 0`) would otherwise count as a change.

Non-finite codes: a NaN is unchanged only against its own bit pattern, $\\pm\\infty$ only against itself. Counts
that must exclude non-finite pairs (`compare`, rule (1)) do so themselves. The strict bit comparison, where
$+0 \\ne -0$, stays available as `threegate.bf16.bitwise_unchanged` (for the proofs of App. E).

One elementwise predicate, `codes_unchanged`, holds the rule; it is written with array operators only, so the
same function runs on NumPy arrays (the host-side streaming pass of `compare`, per chunk), on jax arrays under
`jit` (the trainer's logged `sparsity`), and on a float64/NumPy reference in the tests.
`unchanged_mask` / `unchanged_mask_np` / `count_unchanged` are the float-array forms around it.

Shapes: `w0`, `w1` are arrays of one shape `*s` and one floating dtype (2, 4 or 8 bytes wide).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.typing import ArrayLike

__all__ = ["codes_unchanged", "count_unchanged", "unchanged_mask", "unchanged_mask_np"]


def codes_unchanged(a: Any, b: Any) -> Any:
    """Elementwise rule on stored codes: $a = b$, or both are signed zeros (module docstring).

    Args:
      a, b: unsigned-integer bit patterns of one dtype (uint16 for bf16/f16, uint32 for f32, uint64 for f64) and
        one shape, as NumPy arrays or jax arrays (jit-safe: array operators only).

    Returns:
      bool array of the same shape and array library.

    Example:
      >>> import numpy as np
      >>> a = np.array([0x0000, 0x8000, 0x3F80, 0x3F80], np.uint16)  # +0, -0, 1.0, 1.0
      >>> b = np.array([0x8000, 0x0000, 0x3F80, 0x3F81], np.uint16)  # -0, +0, 1.0, 1.0078125
      >>> codes_unchanged(a, b).tolist()
      [True, True, True, False]
    """
    if a.dtype != b.dtype:
        raise TypeError(f"codes must have one dtype, got {a.dtype} and {b.dtype}")
    if np.dtype(a.dtype).kind != "u":
        raise TypeError(f"codes must be unsigned integers, got {a.dtype}")
    magnitude = np.dtype(a.dtype).type(np.iinfo(a.dtype).max >> 1)  # every bit but the sign
    return (a == b) | (((a | b) & magnitude) == 0)


def _uint(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind != "f" and dtype.name != "bfloat16":
        raise TypeError(f"expected a floating dtype, got {dtype}")
    if dtype.itemsize not in (2, 4, 8):
        raise TypeError(f"expected a 2, 4 or 8 byte float, got {dtype}")
    return np.dtype(f"u{dtype.itemsize}")


def _check(w0: Any, w1: Any) -> None:
    if w0.dtype != w1.dtype:
        raise TypeError(f"w0 and w1 must have one dtype, got {w0.dtype} and {w1.dtype}")
    if w0.shape != w1.shape:
        raise ValueError(f"w0 and w1 must have the same shape, got {w0.shape} and {w1.shape}")


def unchanged_mask(w0: ArrayLike, w1: ArrayLike) -> Array:
    """Def 2.1 elementwise on jax arrays (jit-safe): True where the stored value did not change.

    Example:
      >>> import jax.numpy as jnp
      >>> w0 = jnp.array([0.0, 1.0, 1.0], jnp.bfloat16)
      >>> w1 = jnp.array([-0.0, 1.0, 1.0078125], jnp.bfloat16)
      >>> unchanged_mask(w0, w1).tolist()
      [True, True, False]
    """
    w0, w1 = jnp.asarray(w0), jnp.asarray(w1)
    _check(w0, w1)
    uint = _uint(w0.dtype)
    return codes_unchanged(
        jax.lax.bitcast_convert_type(w0, uint), jax.lax.bitcast_convert_type(w1, uint)
    )


def unchanged_mask_np(w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """Def 2.1 elementwise on NumPy arrays (host side, no device transfer): the same rule as `unchanged_mask`.

    Example:
      >>> import ml_dtypes, numpy as np
      >>> w0 = np.array([0.0, 1.0, 1.0], ml_dtypes.bfloat16)
      >>> w1 = np.array([-0.0, 1.0, 1.0078125], ml_dtypes.bfloat16)
      >>> unchanged_mask_np(w0, w1).tolist()
      [True, True, False]
    """
    w0, w1 = np.asarray(w0), np.asarray(w1)
    _check(w0, w1)
    uint = _uint(w0.dtype)
    return codes_unchanged(np.ascontiguousarray(w0).view(uint), np.ascontiguousarray(w1).view(uint))


def count_unchanged(w0: ArrayLike, w1: ArrayLike) -> Array:
    """Number of unchanged entries (Def 2.1) as an int32 scalar (jit-safe; fewer than $2^{31}$ entries).

    Example:
      >>> import jax.numpy as jnp
      >>> int(count_unchanged(jnp.array([0.0, 2.0], jnp.bfloat16), jnp.array([-0.0, 3.0], jnp.bfloat16)))
      1
    """
    return jnp.sum(unchanged_mask(w0, w1), dtype=jnp.int32)

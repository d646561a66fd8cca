"""Shared array aliases and result types.

Shape names mean the same thing everywhere: `m n` a weight matrix (HF `nn.Linear.weight` layout, `[out, in]`),
`k` a rank, `a` a categorical support (actions / tokens), `p` a flat parameter vector.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

__all__ = ["Basis", "BoundCheck", "Logits", "Matrix"]

Matrix = Float[Array, "m n"]
Basis = Float[Array, "m k"]
Logits = Float[Array, "*b a"]


class BoundCheck(NamedTuple):
    """The verdict on one inequality `lhs <= rhs`, as data (jit- and vmap-able).

    Attributes:
      lhs: the bounded quantity.
      rhs: the bound.
      premise: whether the theorem's premise holds on this instance (e.g. a positive gap). A bound is only
        claimed where `premise` is true; where it is false the pair is still returned, never divided by zero.
    """

    lhs: Float[Array, "*b"]
    rhs: Float[Array, "*b"]
    premise: Bool[Array, "*b"]

    @property
    def ratio(self) -> jax.Array:
        """lhs / rhs (inf where rhs == 0 < lhs, 0 where both are 0)."""
        safe = jnp.where(self.rhs == 0, 1, self.rhs)
        return jnp.where(self.rhs == 0, jnp.where(self.lhs == 0, 0.0, jnp.inf), self.lhs / safe)

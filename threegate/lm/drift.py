r"""Drift efficiency: how much of a coordinate's travel under the optimizer ends up as net displacement.

For a master coordinate with realised moves $\delta_1,\dots,\delta_T$ (float32, $\delta_t=\theta_t-\theta_{t-1}$):

$$e = \frac{|\sum_t \delta_t|}{\sum_t |\delta_t|} = \frac{|\theta_T-\theta_0|}{\sum_t|\delta_t|} \in [0, 1],$$

1 when every move has the same sign, near 0 when the moves cancel (a random walk of $T$ equal steps has
$e\approx\sqrt{2/(\pi T)}$). Whether a stored bf16 weight changes depends on $|\theta_T-\theta_0|$ against half its
ULP (Gate III), so at a given learning rate and step count the drift efficiency is what separates the precision
account of sparsity (steps below the rounding threshold) from an objective-driven one (steps that cancel or add up).
The trainer accumulates $\sum_t|\delta_t|$ (`TrainConfig.track_drift`, `TrainState.travel`).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

__all__ = ["drift_efficiency", "drift_efficiency_map"]


def drift_efficiency(
    master: PyTree[Float[Array, "..."]],
    master0: PyTree[Float[Array, "..."]],
    travel: PyTree[Float[Array, "..."]],
) -> Float[Array, ""]:
    """The pooled efficiency $\\sum|\\theta_T-\\theta_0| / \\sum\\sum_t|\\delta_t|$ over every coordinate of the
    trees (float32 sums; 1.0 when nothing moved)."""
    net = sum(
        jnp.sum(jnp.abs(a - b))
        for a, b in zip(jax.tree.leaves(master), jax.tree.leaves(master0), strict=True)
    )
    path = sum(jnp.sum(t) for t in jax.tree.leaves(travel))
    return jnp.where(path > 0, net / jnp.where(path > 0, path, 1.0), 1.0)


def drift_efficiency_map(
    w: Float[Array, "..."], w0: Float[Array, "..."], travel: Float[Array, "..."]
) -> Float[Array, "..."]:
    """Per-coordinate $e$ of one tensor; NaN where the coordinate never moved ($\\sum_t|\\delta_t|=0$)."""
    net = jnp.abs(w - w0)
    return jnp.where(travel > 0, net / jnp.where(travel > 0, travel, 1.0), jnp.nan)

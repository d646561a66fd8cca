"""Policy curvature along families of weight directions: is it higher on the paper's "principal weights"?

The paper (§4) uses $M_{princ}$ (M8, the top-α entries of the rank-k reconstruction $|W^{(k)}|$) as a stand-in for
the high-curvature directions RLVR avoids, and never measures curvature. Here it is measured: for one weight matrix
$W$ of a policy $\\pi_\\theta$ and a unit direction $D$ ($\\|D\\|_F = 1$) in that matrix, the token-wise Fisher quadratic
form (Lemma F.5's $F$, the Gauss–Newton of the policy's KL)

$$ q(D) = D^\\top F D = \\frac{1}{T}\\sum_t \\mathrm{Var}_{y\\sim\\pi_t}\\big(\\dot z_{t,y}\\big),
   \\qquad \\dot z_t = \\partial z_t/\\partial W \\cdot D, $$

over the $T$ real completion tokens of a fixed batch — one `jax.jvp` of the logits per direction, no Fisher matrix
(`threegate.kl.fisher_form_categorical`). $\\tfrac12 q(D)\\varepsilon^2$ is the KL a step $\\varepsilon D$ costs to second
order, so $q$ is the curvature that Gate I's leash sees.

Direction families (`unit_directions`), Gaussian entries then normalised, so each family's mean of $q$ is the
average Fisher curvature over that family's span:

* "principal": supported on $M_{princ}(W, k, α)$; "nonprincipal": on its complement (equal sizes at α = ½);
* "subspace": $U_k Z V_k^\\top$ (inside the top-k singular subspaces); "orthogonal": $(I-U_kU_k^\\top)Z(I-V_kV_k^\\top)$;
* "isotropic": a dense Gaussian direction — the random baseline every family is read against.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from threegate.kl import fisher_form_categorical
from threegate.stats import mean_ci

__all__ = ["FAMILIES", "fisher_along", "tensor_curvature", "unit_directions"]

#: The direction families, in report order.
FAMILIES = ("principal", "nonprincipal", "subspace", "orthogonal", "isotropic")


def _unit(d: jax.Array) -> jax.Array:
    return d / jnp.sqrt(jnp.sum(d * d, axis=(-2, -1), keepdims=True))


def unit_directions(
    w: ArrayLike, k: int, alpha: float, key: jax.Array, n: int
) -> dict[str, Float[Array, "n m p"]]:
    """`n` unit-Frobenius directions of every family of `FAMILIES` for the matrix `w` `[m, p]` (float32).

    The families share one Gaussian draw per direction index (paired across families). Raises `ValueError` for
    a rank `k` outside $1 \\le k < \\min(m, p)$ or `n < 1`.
    """
    from threegate.masks import principal_mask

    w = jnp.asarray(w, jnp.float32)
    if w.ndim != 2:
        raise ValueError(f"w must be a matrix, got shape {w.shape}")
    m, p = w.shape
    if not 1 <= k < min(m, p):
        raise ValueError(f"k must satisfy 1 <= k < min(m, n) = {min(m, p)}, got {k}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = jax.random.normal(key, (n, m, p), jnp.float32)
    u, _, vt = jnp.linalg.svd(w, full_matrices=False)
    uk, vk = u[:, :k], vt[:k].T
    princ = principal_mask(w, k, alpha)
    pu = lambda x: uk @ (uk.T @ x)  # noqa: E731
    pv = lambda x: (x @ vk) @ vk.T  # noqa: E731
    inside = jax.vmap(lambda x: pv(pu(x)))(z)
    outside = jax.vmap(lambda x: (x - pu(x)) - pv(x - pu(x)))(z)
    return {
        "principal": _unit(jnp.where(princ, z, 0.0)),
        "nonprincipal": _unit(jnp.where(princ, 0.0, z)),
        "subspace": _unit(inside),
        "orthogonal": _unit(outside),
        "isotropic": _unit(z),
    }


def fisher_along(
    logits_fn: Callable[[jax.Array], jax.Array],
    w: ArrayLike,
    directions: ArrayLike,
    token_weights: ArrayLike,
) -> Float[Array, " n"]:
    """$q(D_i) = \\sum_t c_t\\,\\mathrm{Var}_{\\pi_t}(\\partial z_t/\\partial W\\cdot D_i) / \\sum_t c_t$ for each direction.

    Args:
      logits_fn: $W \\mapsto z$, logits `[*t, V]` of the fixed batch as a function of the one matrix.
      w: the matrix at which the Fisher is taken.
      directions: `[n, *w.shape]` tangents (any norm: $q$ is quadratic in $D$).
      token_weights: `[*t]` non-negative weights (the completion mask), not all zero.

    Returns:
      `[n]` quadratic forms, computed one direction at a time (`lax.map`: one jvp's memory).
    """
    w = jnp.asarray(w)
    c = jnp.asarray(token_weights, jnp.float32)

    def one(d):
        z, dz = jax.jvp(logits_fn, (w,), (d.astype(w.dtype),))
        f = fisher_form_categorical(z.astype(jnp.float32), dz.astype(jnp.float32))
        return jnp.sum(c * f) / jnp.sum(c)

    return jax.lax.map(one, jnp.asarray(directions))


def _mean_ci(x: np.ndarray) -> dict:
    r = mean_ci(x)
    return {"mean": r.mean, "ci": [r.lo, r.hi], "n": int(x.size)}


def tensor_curvature(
    q_fn: Callable[[jax.Array], jax.Array],
    w: ArrayLike,
    *,
    k: int,
    alpha: float,
    key: jax.Array,
    n: int,
) -> dict:
    """One tensor's curvature record: per family the $q$ values with mean and 95% CI, and the paired ratios.

    `q_fn` maps directions `[n, *w.shape]` to their quadratic forms `[n]` (e.g. `fisher_along` with the logits
    function and token weights bound; jit it once per shape).

    `ratios`: "principal/nonprincipal", "subspace/orthogonal", "principal/isotropic" — the ratio of family means.
    `log_ratio_ci`: a Student-t 95% CI of the mean paired log ratio over direction indices (the families share
    their Gaussian draws), for the first two ratios.
    """
    dirs = unit_directions(w, k, alpha, key, n)
    q = {f: np.asarray(q_fn(dirs[f]), np.float64) for f in FAMILIES}
    rec = {"k": k, "alpha": alpha, "directions": n, "families": {}}
    for f in FAMILIES:
        rec["families"][f] = {"values": q[f].tolist(), **_mean_ci(q[f])}

    def ratio(a, b):
        mb = q[b].mean()
        return float(q[a].mean() / mb) if mb > 0 else None

    rec["ratios"] = {
        "principal/nonprincipal": ratio("principal", "nonprincipal"),
        "subspace/orthogonal": ratio("subspace", "orthogonal"),
        "principal/isotropic": ratio("principal", "isotropic"),
    }
    rec["log_ratio_ci"] = {}
    for a, b in (("principal", "nonprincipal"), ("subspace", "orthogonal")):
        ok = (q[a] > 0) & (q[b] > 0)
        if ok.sum() >= 2:
            c = _mean_ci(np.log(q[a][ok]) - np.log(q[b][ok]))
            rec["log_ratio_ci"][f"{a}/{b}"] = c
        else:
            rec["log_ratio_ci"][f"{a}/{b}"] = None
    rec["finite"] = all(math.isfinite(v) for f in FAMILIES for v in q[f])
    return rec

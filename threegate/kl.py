"""Gate I (KL anchor): KL estimators, categorical KL/TV from logits, Pinsker, the Gibbs tilt.

Shape conventions: a categorical distribution is given by its logits, an array `[*b, a]` whose last axis `a` is
the support (actions / tokens); reductions run over that axis and keep the batch axes `*b`. Logits may be
`-inf` (probability zero) but not `+inf` or NaN. Per-token estimators take log-probabilities of *sampled* tokens,
any shape, elementwise.

Zero-probability convention of `kl_categorical`: $0\\log 0 = 0$ (a zero of $p$ contributes nothing, whatever $q$),
and $D_{KL}(p\\|q)=+\\infty$ as soon as $p(y)>0=q(y)$ for some $y$. `tv_categorical` is always finite.

Input validation: shapes and dtypes are checked at trace time (`ValueError`/`TypeError`). Finiteness is a value,
so it is checked only on concrete (non-traced) inputs, where `+inf`/NaN logits raise `NonFiniteError`; under
`jax.jit` such inputs propagate NaN, as every jax reduction does.

References: Zhu et al., "The Path Not Taken: RLVR Provably Learns Off the Principals", arXiv 2511.08567, Sec. 3.1 and
App. F.2 (Prop 3.1, Lemmas F.2, F.6); J. Schulman, "Approximating KL divergence" (2020) for the k1/k3 estimators.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array, Float

from threegate._types import BoundCheck
from threegate.errors import NonFiniteError

__all__ = [
    "check_logits",
    "fisher_form_categorical",
    "gibbs_tilt",
    "kl_categorical",
    "kl_k1",
    "kl_k3",
    "pinsker_bound",
    "pinsker_check",
    "tv_categorical",
]

# Taylor coefficients 1/n! for n = 2..21 of e^d - 1 - d (used for |d| < 1/2; truncation < 1e-26 relative).
_EXPM1_M_X_COEFFS = tuple(
    1.0 / float(np.prod(np.arange(1, n + 1, dtype=np.float64))) for n in range(2, 22)
)
_SERIES_RADIUS = 0.5


def _as_float(x: ArrayLike, name: str) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating array, got dtype {x.dtype}")
    return x


def _same_shape(a: Array, b: Array, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"{names} must have the same dtype, got {a.dtype} and {b.dtype}")


def check_logits(logits: ArrayLike, name: str = "logits") -> Array:
    """Validate logits `[*b, a]`: floating, at least 1-D, non-empty; `+inf`/NaN raise when concrete.

    Returns the logits as a jax array. `-inf` entries are allowed (probability zero), but a row of all `-inf`
    is not a distribution and raises too (when concrete).

    Raises:
      TypeError: non-floating dtype.
      ValueError: 0-d or empty support.
      NonFiniteError: NaN or `+inf` entries, or a row without a finite entry (concrete inputs only).

    Example:
      >>> import jax.numpy as jnp
      >>> check_logits(jnp.array([0.0, -jnp.inf])).shape  # -inf is probability zero
      (2,)
      >>> check_logits(jnp.array([0.0, jnp.inf]))
      Traceback (most recent call last):
      ...
      threegate.errors.NonFiniteError: logits contain NaN or +inf (use -inf for zero probability)
    """
    x = _as_float(logits, name)
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have shape [*b, a] with a >= 1, got {x.shape}")
    if not isinstance(x, jax.core.Tracer):
        host = np.asarray(x)
        if np.isnan(host).any() or np.isposinf(host).any():
            raise NonFiniteError(f"{name} contain NaN or +inf (use -inf for zero probability)")
        if not np.isfinite(host).any(axis=-1).all():
            raise NonFiniteError(f"{name} has a row with no finite entry (all probabilities zero)")
    return x


def kl_k1(logp: ArrayLike, logp_ref: ArrayLike) -> Array:
    """Per-token k1 estimator of $D_{KL}(\\pi\\|\\pi_{ref})$: $k_1 = \\log\\pi(y) - \\log\\pi_{ref}(y)$.

    With $y\\sim\\pi$ it is unbiased, $\\mathbb E_\\pi[k_1]=D_{KL}(\\pi\\|\\pi_{ref})$, but individual values can be negative.

    Args:
      logp: $\\log\\pi(y)$ of the sampled tokens, any shape, floating.
      logp_ref: $\\log\\pi_{ref}(y)$ of the same tokens, same shape and dtype.

    Returns:
      The elementwise estimate, same shape and dtype.

    Example:
      >>> float(kl_k1(jnp.log(jnp.array(0.5)), jnp.log(jnp.array(0.25))))  # doctest: +ELLIPSIS
      0.693...
    """
    lp, lr = _as_float(logp, "logp"), _as_float(logp_ref, "logp_ref")
    _same_shape(lp, lr, "logp and logp_ref")
    return lp - lr


def _expm1_minus_x(d: Array) -> Array:
    """$e^d - 1 - d \\ge 0$ without cancellation: Taylor series for $|d| < 1/2$, `expm1(d) - d` elsewhere."""
    small = jnp.abs(d) < _SERIES_RADIUS
    ds = jnp.where(small, d, jnp.zeros_like(d))
    acc = jnp.zeros_like(d)
    for c in reversed(_EXPM1_M_X_COEFFS):
        acc = acc * ds + c
    series = acc * ds * ds
    dl = jnp.where(small, jnp.ones_like(d), d)
    return jnp.where(small, series, jnp.expm1(dl) - dl)


def kl_k3(logp: ArrayLike, logp_ref: ArrayLike) -> Array:
    """Per-token k3 estimator of $D_{KL}(\\pi\\|\\pi_{ref})$: $k_3=(\\rho-1)-\\log\\rho$, $\\rho=\\pi_{ref}(y)/\\pi(y)$.

    With $y\\sim\\pi$ it is unbiased ($\\mathbb E_\\pi[\\rho]=1$) and every value is $\\ge 0$ (since $e^d\\ge 1+d$).
    Computed as $e^d-1-d$ with $d=\\log\\pi_{ref}(y)-\\log\\pi(y)$, by a Taylor series for $|d|<1/2$ (no
    cancellation: relative accuracy of a few eps even at $d=10^{-8}$) and `expm1(d) - d` elsewhere;
    $+\\infty$ when $\\rho$ overflows.

    Args:
      logp: $\\log\\pi(y)$ of tokens sampled from $\\pi$, any shape, floating.
      logp_ref: $\\log\\pi_{ref}(y)$ of the same tokens, same shape and dtype.

    Returns:
      The elementwise estimate, same shape and dtype, $\\ge 0$.

    Example:
      >>> float(kl_k3(jnp.array(0.0), jnp.array(0.0)))
      0.0
    """
    lp, lr = _as_float(logp, "logp"), _as_float(logp_ref, "logp_ref")
    _same_shape(lp, lr, "logp and logp_ref")
    return _expm1_minus_x(lr - lp)


def _log_softmax_pair(p_logits: ArrayLike, q_logits: ArrayLike) -> tuple[Array, Array]:
    p = check_logits(p_logits, "p_logits")
    q = check_logits(q_logits, "q_logits")
    _same_shape(p, q, "p_logits and q_logits")
    return jax.nn.log_softmax(p, axis=-1), jax.nn.log_softmax(q, axis=-1)


def _kl_near(p: Array, q: Array) -> Array:
    """KL for finite logits with small $|d_c|$, $d_c=d-\\mathbb E_q d$, $d=\\ell_p-\\ell_q$ (no cancellation).

    With $L=\\log\\mathbb E_q e^{d_c}=\\mathrm{log1p}(\\mathbb E_q[e^{d_c}-1-d_c])$: $p-q=q\\,\\mathrm{expm1}(d_c-L)$ and
    $D_{KL}(p\\|q)=\\sum_y(p-q)(y)\\,d_c(y)-L$, every term accurate to a few eps relative to $D_{KL}$ itself, where the
    textbook $\\sum p(\\log p-\\log q)$ has absolute error $\\sim\\varepsilon|\\log p|$ (relative $\\varepsilon/D_{KL}$).
    """
    qn = jax.nn.softmax(q, axis=-1)
    d = p - q
    dc = d - jnp.sum(qn * d, axis=-1, keepdims=True)
    big_l = jnp.log1p(jnp.sum(qn * _expm1_minus_x(dc), axis=-1, keepdims=True))
    diff = qn * jnp.expm1(dc - big_l)
    return jnp.sum(diff * dc, axis=-1) - big_l[..., 0]


def kl_categorical(p_logits: ArrayLike, q_logits: ArrayLike) -> Float[Array, "*b"]:
    """$D_{KL}(p\\|q)=\\sum_y p(y)\\,(\\log p(y)-\\log q(y))$ for categoricals given by logits.

    Computed through `log_softmax` (no `log(0)`), exact in the limits: $0\\log 0=0$ and $+\\infty$ when
    $p(y)>0=q(y)$. Rows with finite logits whose centred difference $d_c$ (see below) is at most 1 in size use a
    cancellation-free form (relative accuracy a few eps even for $D_{KL}\\sim10^{-12}$): with
    $d=\\ell_p-\\ell_q$, $d_c=d-\\mathbb E_q d$, $L=\\log\\mathbb E_q e^{d_c}$, $D_{KL}=\\sum_y q(y)\\,\\mathrm{expm1}(d_c-L)\\,d_c-L$.
    Clamped at 0 from below.

    Args:
      p_logits: logits of $p$, shape `[*b, a]`.
      q_logits: logits of $q$, same shape and dtype.

    Returns:
      $D_{KL}(p\\|q)$, shape `[*b]`.

    Example:
      >>> float(kl_categorical(jnp.log(jnp.array([0.5, 0.5])), jnp.log(jnp.array([0.25, 0.75]))))  # doctest: +ELLIPSIS
      0.143...
    """
    logp, logq = _log_softmax_pair(p_logits, q_logits)
    p = jnp.exp(logp)
    diff = jnp.where(p > 0, logp - logq, jnp.zeros_like(logp))
    textbook = jnp.sum(jnp.where(p > 0, p * diff, jnp.zeros_like(p)), axis=-1)
    finite = jnp.all(jnp.isfinite(logp) & jnp.isfinite(logq), axis=-1, keepdims=True)
    lp_safe = jnp.where(finite, logp, jnp.zeros_like(logp))
    lq_safe = jnp.where(finite, logq, jnp.zeros_like(logq))
    d = lp_safe - lq_safe
    dc = d - jnp.sum(jnp.exp(lq_safe) * d, axis=-1, keepdims=True)
    near = finite[..., 0] & (jnp.max(jnp.abs(dc), axis=-1) <= 1)
    kl = jnp.maximum(jnp.where(near, _kl_near(lp_safe, lq_safe), textbook), 0)
    bad = jnp.any(jnp.isnan(logp) | jnp.isnan(logq), axis=-1)  # NaN in, NaN out (traced inputs)
    return jnp.where(bad, jnp.full_like(kl, jnp.nan), kl)


def fisher_form_categorical(
    logits: Float[ArrayLike, "*b a"], tangent: Float[ArrayLike, "*b a"]
) -> Float[Array, "*b"]:
    """$\\Delta^\\top F\\Delta$ of a categorical $\\pi=\\mathrm{softmax}(z(\\theta))$ from the logits' directional derivative.

    With $\\dot z = \\partial z/\\partial\\theta\\cdot\\Delta$ (one `jax.jvp`, no Fisher matrix), the score along $\\Delta$
    is $\\dot z_y-\\mathbb E_\\pi\\dot z$, so $\\Delta^\\top F\\Delta=\\mathrm{Var}_{y\\sim\\pi}(\\dot z_y)$ (Lemma F.5's $F$).
    Computed as $\\mathbb E_\\pi[(\\dot z-\\mathbb E_\\pi\\dot z)^2]$ (centred first: no cancellation).

    Args:
      logits: $z$ at $\\theta$, `[*b, a]`.
      tangent: $\\dot z$, same shape.

    Returns:
      `[*b]`, non-negative.

    Example:
      >>> import jax.numpy as jnp
      >>> float(fisher_form_categorical(jnp.zeros(2), jnp.array([1.0, 0.0])))  # Var of (1, 0) at (1/2, 1/2)
      0.25
    """
    z = check_logits(logits, "logits")
    dz = _as_float(tangent, "tangent")
    _same_shape(z, dz, "logits and tangent")
    pi = jax.nn.softmax(z, axis=-1)
    centred = dz - jnp.sum(pi * dz, axis=-1, keepdims=True)
    return jnp.sum(pi * centred * centred, axis=-1)


def tv_categorical(p_logits: ArrayLike, q_logits: ArrayLike) -> Float[Array, "*b"]:
    """Total variation $\\mathrm{TV}(p,q)=\\tfrac12\\sum_y|p(y)-q(y)|\\in[0,1]$ from logits.

    Args:
      p_logits: logits of $p$, shape `[*b, a]`.
      q_logits: logits of $q$, same shape and dtype.

    Returns:
      TV, shape `[*b]`.

    Example:
      >>> float(tv_categorical(jnp.log(jnp.array([0.5, 0.5])), jnp.log(jnp.array([0.25, 0.75]))))
      0.25
    """
    logp, logq = _log_softmax_pair(p_logits, q_logits)
    return 0.5 * jnp.sum(jnp.abs(jnp.exp(logp) - jnp.exp(logq)), axis=-1)


def pinsker_bound(kl: ArrayLike) -> Array:
    """Pinsker's bound on total variation, $\\mathrm{TV}(p,q)\\le\\sqrt{D_{KL}(p\\|q)/2}$ (Lemma F.6).

    Args:
      kl: $D_{KL}(p\\|q)\\ge 0$ (either direction bounds TV, since TV is symmetric), any shape.

    Returns:
      $\\sqrt{\\mathrm{kl}/2}$, same shape.

    Example:
      >>> import jax.numpy as jnp
      >>> float(pinsker_bound(jnp.array(0.5)))
      0.5
    """
    k = _as_float(kl, "kl")
    return jnp.sqrt(jnp.maximum(k, 0) / 2)


def pinsker_check(p_logits: ArrayLike, q_logits: ArrayLike) -> BoundCheck:
    """Pinsker's inequality as data: `lhs` = TV(p, q), `rhs` = $\\sqrt{D_{KL}(p\\|q)/2}$, premise always true.

    Tight to first order for near-equal distributions with a two-point difference.

    Example:
      >>> import jax.numpy as jnp
      >>> c = pinsker_check(jnp.log(jnp.array([0.5, 0.5])), jnp.log(jnp.array([0.25, 0.75])))
      >>> round(float(c.lhs), 4), round(float(c.rhs), 4), bool(c.lhs <= c.rhs)
      (0.25, 0.2682, True)
    """
    tv = tv_categorical(p_logits, q_logits)
    rhs = pinsker_bound(kl_categorical(p_logits, q_logits))
    return BoundCheck(lhs=tv, rhs=rhs, premise=jnp.ones(tv.shape, dtype=bool))


def gibbs_tilt(q_logits: ArrayLike, reward: ArrayLike, beta: ArrayLike) -> Array:
    """Log-probabilities of the Gibbs tilt $\\tilde q_\\beta\\propto q\\,e^{R/\\beta}$ (Lemma F.2, Prop 3.1).

    $\\tilde q_\\beta$ is the unique maximiser over $\\pi\\ll q$ of $\\mathbb E_\\pi[R]-\\beta D_{KL}(\\pi\\|q)$.

    Args:
      q_logits: logits of the full-support reference $q$, shape `[*b, a]`.
      reward: $R(y)$, shape `[*b, a]` (or broadcastable only by exact equality), same dtype.
      beta: temperature $\\beta>0$, a scalar (a concrete $\\beta\\le 0$ raises; traced values give inf/NaN).

    Returns:
      $\\log\\tilde q_\\beta$, shape `[*b, a]` (normalised logits).

    Example:
      >>> import math
      >>> import jax.numpy as jnp
      >>> log_q = gibbs_tilt(jnp.zeros(2), jnp.array([1.0, 0.0]), 1 / math.log(3.0))  # e^{R/beta} = (3, 1)
      >>> [round(p, 4) for p in jnp.exp(log_q).tolist()]
      [0.75, 0.25]
    """
    q = check_logits(q_logits, "q_logits")
    r = _as_float(reward, "reward")
    _same_shape(q, r, "q_logits and reward")
    b = jnp.asarray(beta, dtype=q.dtype)
    if b.ndim != 0:
        raise ValueError(f"beta must be a scalar, got shape {b.shape}")
    if not isinstance(b, jax.core.Tracer) and not float(b) > 0:
        raise ValueError(f"beta must be > 0, got {float(b)}")
    return jax.nn.log_softmax(q + r / b, axis=-1)

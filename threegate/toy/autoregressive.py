"""A toy autoregressive policy and the clipped-ratio KL leash of Lemma F.9.

The policy generates $T$ tokens from a vocabulary of $N$; the conditional at step $t$ depends on $t$ and the
previous token (a tabular, first-order policy), with a fixed start state 0:
$\\pi(y_t\\mid y_{<t})=\\mathrm{softmax}(\\ell[t, y_{t-1}])$, $y_0:=0$. Shapes: conditional logits `[T, N, N]`
(step, previous token, next token); sampled sequences `[n, T]` (int32); per-token log-ratios `[n, T]`. Sequences
have the fixed length $T$, so $\\hat{\\mathbb E}[T(x)] = T$.

The sequence KL factorises (chain rule) into
$D_{KL}(\\pi^+\\|\\pi)=\\mathbb E_{\\pi^+}[\\sum_t\\log r_t]=\\sum_t\\sum_s m^+_t(s)\\,D_{KL}(\\pi^+_t(\\cdot|s)\\|\\pi_t(\\cdot|s))$
with $r_t=\\pi^+(y_t|\\cdot)/\\pi(y_t|\\cdot)$ and $m^+_t$ the state marginal under $\\pi^+$, which `ar_kl_exact` evaluates
in $O(TN^2)$ with no sampling.

References: arXiv 2511.08567, Lemma F.9 and the remark after Prop 3.1.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Float, Int

from threegate._numerics import MATMUL_PRECISION, matmul, premise_le
from threegate._types import BoundCheck
from threegate.kl import check_logits, kl_categorical

__all__ = [
    "ar_advantages",
    "ar_expected_return",
    "ar_kl_exact",
    "ar_log_ratios",
    "ar_sample",
    "clip_kl_bound",
    "clip_limited_step",
    "clipped_ratio_check",
    "ratio_band_perturbation",
    "ratio_band_premise",
]


def _check_pair(p_logits: ArrayLike, q_logits: ArrayLike) -> tuple[Array, Array]:
    p = check_logits(p_logits, "p_logits")
    q = check_logits(q_logits, "q_logits")
    if p.ndim != 3 or p.shape[1] != p.shape[2]:
        raise ValueError(f"conditional logits must be [T, N, N], got {p.shape}")
    if p.shape != q.shape:
        raise ValueError(
            f"p_logits and q_logits must have the same shape, got {p.shape} and {q.shape}"
        )
    return p, q


def ar_kl_exact(p_logits: Float[ArrayLike, "T N N"], q_logits: Float[ArrayLike, "T N N"]) -> Array:
    """Exact sequence KL $D_{KL}(\\pi_p\\|\\pi_q)=\\mathbb E_{\\pi_p}[\\sum_t\\log r_t]$ by the chain rule (no sampling)."""
    p, q = _check_pair(p_logits, q_logits)
    n_tok = p.shape[1]
    step_kl = kl_categorical(p, q)  # [T, N]: KL of the conditionals at every (step, previous token)
    trans = jax.nn.softmax(p, axis=-1)  # [T, N, N]

    def step(m, xs):
        kl_t, tr_t = xs
        return matmul(m, tr_t), jnp.dot(m, kl_t, precision=MATMUL_PRECISION)

    m0 = jnp.zeros((n_tok,), p.dtype).at[0].set(1)
    _, per_step = jax.lax.scan(step, m0, (step_kl, trans))
    return jnp.sum(per_step)


def ar_sample(key: Array, logits: Float[ArrayLike, "T N N"], n: int) -> Int[Array, "n T"]:
    """Draw `n` sequences `[n, T]` from the policy with conditional logits `[T, N, N]`."""
    lg = check_logits(logits, "logits")
    keys = jax.random.split(key, lg.shape[0])

    def step(prev, xs):
        k, lg_t = xs
        y = jax.random.categorical(k, lg_t[prev], axis=-1).astype(jnp.int32)
        return y, y

    _, ys = jax.lax.scan(step, jnp.zeros((n,), jnp.int32), (keys, lg))
    return ys.T.astype(jnp.int32)


def ar_log_ratios(
    p_logits: Float[ArrayLike, "T N N"],
    q_logits: Float[ArrayLike, "T N N"],
    tokens: Int[ArrayLike, "n T"],
) -> Float[Array, "n T"]:
    """Per-token $\\log r_t=\\log\\pi_p(y_t|y_{t-1})-\\log\\pi_q(y_t|y_{t-1})$ of sampled sequences `[n, T]`."""
    p, q = _check_pair(p_logits, q_logits)
    y = jnp.asarray(tokens)
    if y.ndim != 2 or y.shape[1] != p.shape[0]:
        raise ValueError(f"tokens must be [n, T] with T = {p.shape[0]}, got {y.shape}")
    lr = jax.nn.log_softmax(p, axis=-1) - jax.nn.log_softmax(q, axis=-1)  # [T, N, N]
    prev = jnp.concatenate([jnp.zeros((y.shape[0], 1), y.dtype), y[:, :-1]], axis=1)
    steps = jnp.arange(p.shape[0])[None, :]
    return lr[steps, prev, y]


def clip_kl_bound(mean_length: ArrayLike, eps: ArrayLike) -> Array:
    """Lemma F.9's bound $\\hat{\\mathbb E}[T]\\cdot\\max\\{-\\log(1-\\varepsilon),\\log(1+\\varepsilon)\\}$ ($0<\\varepsilon<1$)."""
    e = jnp.asarray(eps)
    return jnp.asarray(mean_length, e.dtype) * jnp.maximum(-jnp.log1p(-e), jnp.log1p(e))


def _in_band(log_ratio: Array, e: Array, scale: Array, size: int) -> Array:
    """All of `log_ratio` inside $[\\log(1-\\varepsilon),\\log(1+\\varepsilon)]$ up to rounding (`premise_le`).

    `size` is the vocabulary $N$ (the length of the log-softmax); `scale` `[..., 1]` bounds the magnitudes the log-ratios were computed from (log-softmax rounds relative to the
    log-probabilities themselves): a ratio built exactly on the band's edge stays inside after renormalisation.
    """
    lo = premise_le(jnp.log1p(-e) - log_ratio, 0.0, log_ratio.dtype, size, scale)
    hi = premise_le(log_ratio - jnp.log1p(e), 0.0, log_ratio.dtype, size, scale)
    return jnp.all(lo & hi)


def _log_scale(*logps: Array) -> Array:
    """1 + the largest finite |log-probability| of each conditional, `[..., 1]` (the rounding scale)."""
    mags = [jnp.where(jnp.isfinite(lp), jnp.abs(lp), jnp.zeros_like(lp)) for lp in logps]
    return 1 + jnp.max(jnp.stack(mags), axis=(0, -1))[..., None]


def ratio_band_premise(
    p_logits: Float[ArrayLike, "T N N"], q_logits: Float[ArrayLike, "T N N"], eps: ArrayLike
) -> Array:
    """Whether every conditional ratio $\\pi_p/\\pi_q$ (all steps, states, tokens) lies in $[1-\\varepsilon,1+\\varepsilon]$.

    Decided up to rounding (`threegate._numerics.premise_le`, the slack of the bounds): `ratio_band_perturbation`
    puts ratios exactly on the edge, and log-softmax renormalisation moves them by a few ulps.
    """
    p, q = _check_pair(p_logits, q_logits)
    lp, lq = jax.nn.log_softmax(p, axis=-1), jax.nn.log_softmax(q, axis=-1)
    return _in_band(lp - lq, jnp.asarray(eps, p.dtype), _log_scale(lp, lq), p.shape[-1])


def ratio_band_perturbation(
    logits: Float[ArrayLike, "T N N"], advantage: Float[ArrayLike, "T N N"], eps: ArrayLike
) -> Float[Array, "T N N"]:
    """A policy $\\pi^+=\\pi(1+\\varepsilon c)$ whose token ratios lie exactly in $[1-\\varepsilon,1+\\varepsilon]$.

    $c=(A-\\mathbb E_\\pi A)/\\max|A-\\mathbb E_\\pi A|$ per conditional, so $\\mathbb E_\\pi[c]=0$ (normalised) and
    $|c|\\le1$; the max ratio is exactly $1\\pm\\varepsilon$. This is the small-step, mean-zero-advantage regime in which
    the sequence KL is $\\tfrac12\\varepsilon^2\\sum_t\\mathbb E[\\mathrm{Var}_\\pi c]+O(\\varepsilon^3)$.

    Returns:
      Log-probabilities of $\\pi^+$, `[T, N, N]`.
    """
    lg = check_logits(logits, "logits")
    adv = jnp.asarray(advantage, lg.dtype)
    if adv.shape != lg.shape:
        raise ValueError(f"advantage must have shape {lg.shape}, got {adv.shape}")
    logp = jax.nn.log_softmax(lg, axis=-1)
    centred = adv - jnp.sum(jnp.exp(logp) * adv, axis=-1, keepdims=True)
    scale = jnp.max(jnp.abs(centred), axis=-1, keepdims=True)
    c = centred / jnp.where(scale > 0, scale, jnp.ones_like(scale))
    return logp + jnp.log1p(jnp.asarray(eps, lg.dtype) * c)


def clipped_ratio_check(
    p_logits: Float[ArrayLike, "T N N"],
    q_logits: Float[ArrayLike, "T N N"],
    eps: ArrayLike,
    tokens: Int[ArrayLike, "n T"] | None = None,
) -> BoundCheck:
    """Lemma F.9 as data: $\\hat D_{KL}(\\pi_p\\|\\pi_q)\\le\\hat{\\mathbb E}[T]\\max\\{-\\log(1-\\varepsilon),\\log(1+\\varepsilon)\\}$.

    With `tokens` (sequences sampled from $\\pi_p$): `lhs` is the Monte-Carlo $\\hat{\\mathbb E}[\\sum_t\\log r_t]$ and the
    premise is the paper's "clipping enforces $r_t\\in[1-\\varepsilon,1+\\varepsilon]$ on the batch". Without `tokens`:
    `lhs` is the exact expectation (`ar_kl_exact`) and the premise is the band on every conditional ratio.
    """
    p, q = _check_pair(p_logits, q_logits)
    e = jnp.asarray(eps, p.dtype)
    rhs = clip_kl_bound(p.shape[0], e)
    if tokens is None:
        return BoundCheck(ar_kl_exact(p, q), rhs, ratio_band_premise(p, q, e))
    lr = ar_log_ratios(p, q, tokens)
    scale = _log_scale(jax.nn.log_softmax(p, axis=-1), jax.nn.log_softmax(q, axis=-1))
    return BoundCheck(
        jnp.mean(jnp.sum(lr, axis=1)), rhs, _in_band(lr, e, jnp.max(scale), p.shape[-1])
    )


def _backward(lg: Array, r: Array) -> tuple[Array, Array]:
    """$Q_t(s,y)$ `[T, N, N]` and $V_t(s)$ `[T, N]` by the backward recursion of `ar_advantages`."""
    if lg.ndim != 3 or r.shape != lg.shape[:2]:
        raise ValueError(f"token_reward must be [T, N] for logits {lg.shape}, got {r.shape}")
    probs = jax.nn.softmax(lg, axis=-1)

    def back(v_next, xs):
        pi_t, r_t = xs
        q = jnp.broadcast_to(r_t + v_next, pi_t.shape)  # [N prev, N next]
        v = jnp.sum(pi_t * q, axis=-1)
        return v, (q, v)

    _, (q, v) = jax.lax.scan(back, jnp.zeros(lg.shape[1], lg.dtype), (probs, r), reverse=True)
    return q, v


def ar_advantages(
    logits: Float[ArrayLike, "T N N"], token_reward: Float[ArrayLike, "T N"]
) -> Float[Array, "T N N"]:
    """Exact advantages $A_t(s,y)=Q_t(s,y)-V_t(s)$ of the tabular policy for a per-token reward $r_t(y)$.

    Backward recursion (no sampling): $V_T\\equiv0$, $Q_t(s,y)=r_t(y)+V_{t+1}(y)$,
    $V_t(s)=\\sum_y\\pi_t(y|s)Q_t(s,y)$; the return of a sequence is $\\sum_t r_t(y_t)$ (a verifiable per-token score).
    $\\mathbb E_{\\pi_t(\\cdot|s)}[A_t(s,\\cdot)]=0$ exactly.
    """
    lg = check_logits(logits, "logits")
    q, v = _backward(lg, jnp.asarray(token_reward, lg.dtype))
    return q - v[..., None]


def ar_expected_return(
    logits: Float[ArrayLike, "T N N"], token_reward: Float[ArrayLike, "T N"]
) -> Float[Array, ""]:
    """$\\mathbb E_\\pi[\\sum_t r_t(y_t)]=V_0(0)$ (start state 0), exactly by the recursion of `ar_advantages`."""
    lg = check_logits(logits, "logits")
    return _backward(lg, jnp.asarray(token_reward, lg.dtype))[1][0, 0]


def clip_limited_step(
    logits: Float[ArrayLike, "T N N"], token_reward: Float[ArrayLike, "T N"], eps: ArrayLike
) -> Float[Array, "T N N"]:
    """One β = 0 policy-improvement step held inside the clip band: $\\pi^+=\\pi(1+\\varepsilon c)$, $c\\propto A$.

    The exact advantages (`ar_advantages`) set the direction, and `ratio_band_perturbation` the size: every
    conditional moves until its largest ratio reaches $1\\pm\\varepsilon$, the most a clipped objective lets one
    step move (Lemma F.9's premise holds with equality). Returns normalised log-probabilities `[T, N, N]`.
    """
    return ratio_band_perturbation(logits, ar_advantages(logits, token_reward), eps)

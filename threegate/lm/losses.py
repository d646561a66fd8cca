"""Training losses of the RL lab: SFT cross-entropy and the policy-gradient family (GRPO, DAPO, REINFORCE++).

Shape conventions (E*): `B` sequences (completions), laid out as `P` prompts × `G` completions per prompt,
prompt-major (`B = P·G`, row `i·G + j` is completion `j` of prompt `i`); `N` completion tokens. Per-token arrays
are `[B, N]` (`logp` = $\\log\\pi_\\theta(y_t\\mid x, y_{<t})$ of the *sampled* tokens, `mask` = which of the `N` slots
are real tokens, i.e. up to and including EOS); rewards are `[P, G]` or `[B]`. All losses are *minimised*, pure, and
jit/vmap-safe; normalisers are guarded so an all-masked batch gives 0, never NaN.

Objectives (paper §3, eq. (3)–(4), App. F.1): with token ratio $w_t = \\pi_\\theta/\\pi_{old}$ and advantage $\\hat A$,
the clipped surrogate per token is $\\min(w_t\\hat A,\\ \\mathrm{clip}(w_t, 1-\\varepsilon_{low}, 1+\\varepsilon_{high})\\hat A)$,
averaged either per sequence then over sequences (GRPO, "sequence-mean") or over all tokens of the batch
($1/\\sum_i|y_i|$, DAPO's token-level normalisation). An optional reference-KL penalty $\\beta\\,\\mathrm{KL}$ uses the
per-token k1 or k3 estimator of `threegate.kl` with the same normalisation.

References: Shao et al. 2024 (GRPO, DeepSeekMath); Yu et al. 2025 (DAPO: clip-higher, token-level loss, dynamic
sampling); Hu 2025 (REINFORCE++); Schulman et al. 2017 (PPO); Zhu et al. arXiv 2511.08567 §3, App. C.1, F.1.
"""

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array, Bool, Float

from threegate.kl import kl_k1, kl_k3

__all__ = [
    "DEFAULT_ADV_EPS",
    "PGLoss",
    "batch_normalized_advantages",
    "clipped_pg_loss",
    "dynamic_sampling_mask",
    "group_advantages",
    "masked_mean",
    "sft_loss",
    "token_kl",
]

#: $\\epsilon$ in $(r-\\bar r)/(\\mathrm{std}+\\epsilon)$ (the value verl and TRL use).
DEFAULT_ADV_EPS = 1e-6

Normalization = Literal["sequence", "token"]


def _check_tokens(logp: Array, mask: Array, name: str) -> None:
    if logp.ndim != 2:
        raise ValueError(f"{name} must be [B, N], got shape {logp.shape}")
    if mask.shape != logp.shape:
        raise ValueError(f"mask must have the shape of {name} {logp.shape}, got {mask.shape}")
    if mask.dtype != jnp.bool_:
        raise TypeError(f"mask must be bool, got {mask.dtype}")


def masked_mean(
    x: Float[ArrayLike, "b n"],
    mask: Bool[ArrayLike, "b n"],
    normalization: Normalization = "token",
    seq_weight: Float[ArrayLike, " b"] | None = None,
) -> Float[Array, ""]:
    """Mean of per-token values over the real tokens, in one of the two normalisations.

    "token": $\\sum_i s_i\\sum_t x_{i,t}\\,/\\,\\sum_i s_i|y_i|$ (DAPO). "sequence": $\\sum_i s_i\\frac1{|y_i|}\\sum_t x_{i,t}
    \\,/\\,\\sum_i s_i$ (GRPO). $s_i$ = `seq_weight` (default 1; 0 drops a sequence from sums *and* denominators),
    $|y_i|$ = number of true entries of row $i$ of `mask`. Empty denominators count as 1 (result 0).
    """
    x, mask = jnp.asarray(x), jnp.asarray(mask)
    _check_tokens(x, mask, "x")
    s = jnp.ones(x.shape[:1], x.dtype) if seq_weight is None else jnp.asarray(seq_weight, x.dtype)
    xm = jnp.where(mask, x, jnp.zeros_like(x))
    lengths = jnp.sum(mask, axis=1).astype(x.dtype)
    if normalization == "token":
        return jnp.sum(s * jnp.sum(xm, axis=1)) / jnp.maximum(jnp.sum(s * lengths), 1)
    if normalization == "sequence":
        per_seq = jnp.sum(xm, axis=1) / jnp.maximum(lengths, 1)
        return jnp.sum(s * per_seq) / jnp.maximum(jnp.sum(s), 1)
    raise ValueError(f"normalization must be 'token' or 'sequence', got {normalization!r}")


def sft_loss(logp: Float[ArrayLike, "b n"], mask: Bool[ArrayLike, "b n"]) -> Float[Array, ""]:
    """Cross-entropy on reference answers: $-\\sum_{i,t} m_{i,t}\\log\\pi_\\theta(y^*_{i,t}|\\cdot)/\\sum m$.

    Args:
      logp: log-probabilities of the reference tokens `[B, N]` (teacher forcing).
      mask: which tokens count `[B, N]` (the answer and its EOS, not the prompt or padding).
    """
    return -masked_mean(logp, mask, "token")


def group_advantages(
    rewards: Float[ArrayLike, "p g"], eps: float = DEFAULT_ADV_EPS
) -> Float[Array, "p g"]:
    """GRPO advantages $\\hat A_{i,j} = (r_{i,j} - \\mathrm{mean}_j r_{i,\\cdot})/(\\mathrm{std}_j r_{i,\\cdot} + \\epsilon)$.

    The std is the unbiased sample std over the group ($G-1$ in the denominator, as `torch.std` in verl), so a
    group needs $G\\ge 2$. A group whose rewards are all equal gets advantage 0.

    Args:
      rewards: `[P, G]`, one row per prompt.
      eps: $\\epsilon$.
    """
    r = jnp.asarray(rewards)
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"rewards must be [P, G] with G >= 2, got shape {r.shape}")
    mean = jnp.mean(r, axis=1, keepdims=True)
    std = jnp.std(r, axis=1, keepdims=True, ddof=1)
    return (r - mean) / (std + eps)


def batch_normalized_advantages(
    rewards: Float[ArrayLike, " b"], eps: float = DEFAULT_ADV_EPS
) -> Float[Array, " b"]:
    """REINFORCE++ advantages: rewards whitened over the whole batch, $(r-\\bar r)/(\\mathrm{std}(r)+\\epsilon)$.

    No critic and no per-prompt baseline: the batch mean is the baseline and the batch std (population,
    $1/B$) the scale, over all `B` sequences.
    """
    r = jnp.asarray(rewards)
    if r.ndim != 1 or r.shape[0] < 2:
        raise ValueError(f"rewards must be [B] with B >= 2, got shape {r.shape}")
    return (r - jnp.mean(r)) / (jnp.std(r) + eps)


def dynamic_sampling_mask(rewards: Float[ArrayLike, "p g"]) -> Bool[Array, " p"]:
    """DAPO dynamic sampling: keep a group iff its rewards are not all equal (all-correct or all-wrong groups
    carry zero advantage and only dilute the batch).

    The trainer refills the batch with such groups first (`threegate.lm.batch.refill_keep`); groups that
    are still all-equal after the refill get weight 0 (they leave both the sums and the token-count normaliser).
    """
    r = jnp.asarray(rewards)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [P, G], got shape {r.shape}")
    return jnp.any(r != r[:, :1], axis=1)


def token_kl(
    logp: Float[ArrayLike, "b n"],
    logp_ref: Float[ArrayLike, "b n"],
    estimator: Literal["k1", "k3"],
) -> Float[Array, "b n"]:
    """Per-token estimate of $D_{KL}(\\pi_\\theta\\|\\pi_{ref})$ on tokens sampled from $\\pi_\\theta$ (k1 or k3)."""
    if estimator == "k1":
        return kl_k1(logp, logp_ref)
    if estimator == "k3":
        return kl_k3(logp, logp_ref)
    raise ValueError(f"kl estimator must be 'k1' or 'k3', got {estimator!r}")


class PGLoss(NamedTuple):
    """Clipped policy-gradient loss and its diagnostics (all scalars).

    Attributes:
      loss: the minimised total, $-\\text{surrogate} + \\beta\\,\\mathrm{KL}$.
      pg_loss: $-$surrogate alone.
      kl: the normalised KL penalty term (before $\\beta$).
      clip_frac: fraction of real tokens where the clipped branch is active (gradient zeroed).
      ratio_mean: token mean of $w_t$.
    """

    loss: Float[Array, ""]
    pg_loss: Float[Array, ""]
    kl: Float[Array, ""]
    clip_frac: Float[Array, ""]
    ratio_mean: Float[Array, ""]


def clipped_pg_loss(
    logp: Float[ArrayLike, "b n"],
    logp_old: Float[ArrayLike, "b n"],
    advantages: Float[ArrayLike, "b n"],
    mask: Bool[ArrayLike, "b n"],
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    normalization: Normalization = "sequence",
    seq_weight: Float[ArrayLike, " b"] | None = None,
    logp_ref: Float[ArrayLike, "b n"] | None = None,
    beta: float = 0.0,
    kl_estimator: Literal["k1", "k3"] = "k3",
) -> PGLoss:
    """PPO-style clipped surrogate with asymmetric clip range, as GRPO (symmetric, "sequence") and DAPO
    (clip-higher $\\varepsilon_{low}=0.2$, $\\varepsilon_{high}=0.28$, "token") use it.

    Per token, with $w_t=\\exp(\\log\\pi_\\theta-\\log\\pi_{old})$:
    $\\ell_t = -\\min\\big(w_t\\hat A_t,\\ \\mathrm{clip}(w_t,1-\\varepsilon_{low},1+\\varepsilon_{high})\\hat A_t\\big)
    + \\beta\\,k(\\log\\pi_\\theta, \\log\\pi_{ref})$, reduced by `masked_mean(·, mask, normalization, seq_weight)`.
    For $\\hat A>0$ the gradient vanishes once $w_t>1+\\varepsilon_{high}$, for $\\hat A<0$ once $w_t<1-\\varepsilon_{low}$.

    Args:
      logp: $\\log\\pi_\\theta$ of the sampled tokens `[B, N]` (differentiated).
      logp_old: $\\log\\pi_{old}$ (the sampling policy) `[B, N]`, treated as a constant.
      advantages: $\\hat A$ per token `[B, N]` (broadcast a sequence advantage with `a[:, None]`).
      mask: real completion tokens `[B, N]`.
      eps_low, eps_high: clip range; require $0\\le\\varepsilon_{low}<1$, $\\varepsilon_{high}\\ge0$.
      normalization: "sequence" (GRPO) or "token" (DAPO).
      seq_weight: per-sequence weight `[B]` (dynamic sampling passes 0/1); default all 1.
      logp_ref: $\\log\\pi_{ref}$ `[B, N]` for the KL penalty (required when `beta > 0`).
      beta: KL coefficient $\\beta\\ge 0$ (eq. (3)).
      kl_estimator: "k1" or "k3" (see `threegate.kl`).
    """
    if not 0.0 <= eps_low < 1.0 or eps_high < 0.0:
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    logp, mask = jnp.asarray(logp), jnp.asarray(mask)
    _check_tokens(logp, mask, "logp")
    logp_old = jax.lax.stop_gradient(jnp.asarray(logp_old, logp.dtype))
    adv = jax.lax.stop_gradient(jnp.asarray(advantages, logp.dtype))
    if logp_old.shape != logp.shape or adv.shape != logp.shape:
        raise ValueError(
            f"logp_old {logp_old.shape} and advantages {adv.shape} must match logp {logp.shape}"
        )
    ratio = jnp.exp(jnp.where(mask, logp - logp_old, jnp.zeros_like(logp)))
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high)
    surrogate = jnp.minimum(ratio * adv, clipped * adv)
    pg_loss = -masked_mean(surrogate, mask, normalization, seq_weight)
    is_clipped = ((adv > 0) & (ratio > 1.0 + eps_high)) | ((adv < 0) & (ratio < 1.0 - eps_low))
    clip_frac = masked_mean(is_clipped.astype(logp.dtype), mask, "token", seq_weight)
    ratio_mean = masked_mean(ratio, mask, "token", seq_weight)
    if logp_ref is None:
        if beta > 0:
            raise ValueError("beta > 0 needs logp_ref")
        kl = jnp.zeros((), logp.dtype)
    else:
        ref = jax.lax.stop_gradient(jnp.asarray(logp_ref, logp.dtype))
        kl = masked_mean(token_kl(logp, ref, kl_estimator), mask, normalization, seq_weight)
    return PGLoss(pg_loss + beta * kl, pg_loss, kl, clip_frac, ratio_mean)

"""The training algorithms of the RL lab as a registry: each one is its advantages, its loss and a few settings.

An `Algorithm` is a `NamedTuple` of two pure functions and the facts the trainer needs about them:

* `advantages(rewards, correct, group, dynamic_sampling) -> (adv, keep)`: per-sequence advantages $\\hat A_i$ and
  weights $s_i$ (`[B]` each, prompt-major, `B = P·G`);
* `loss(terms, settings) -> (loss, clip_frac)`: the minimised loss of one minibatch from the log-probabilities of
  the tokens it trains on (`LossTerms`) and the run's clip/KL settings (`LossSettings`).

`threegate.lm.train.make_train` calls only these two, so adding an algorithm is one entry of `ALGORITHMS`:

| name | trains on | advantage | loss |
| --- | --- | --- | --- |
| `sft` | references | 1 | cross-entropy on the reference answers |
| `grpo` | samples (G per prompt) | group-normalised | clipped surrogate, sequence-mean |
| `dapo` | samples (G per prompt) | group-normalised, all-equal groups weight 0 | clip-higher surrogate, token-mean |
| `reinforce` | samples (G per prompt) | batch-whitened (REINFORCE++) | clipped surrogate, token-mean |
| `rft` | samples (G per prompt) | 1, weight 1 on correct samples only | cross-entropy on the correct samples |

`rft` is on-policy SFT (rejection-sampling fine-tuning, RFT/STaR): sample G completions per prompt from the
policy, keep the ones the verifier accepts, and minimise their token-mean negative log-likelihood,
$-\\sum_i c_i\\sum_t\\log\\pi_\\theta(y_{i,t}|\\cdot)/\\sum_i c_i|y_i|$ with $c_i\\in\\{0,1\\}$ the verdict. A batch with no
correct sample has loss 0 and gradient 0 (only weight decay moves the weights). Its log-probabilities are at
temperature 1, as SFT's: it fits the policy itself, not the tempered sampler.

Shapes: `B` sequences, `N` tokens per sequence (E*, as in `threegate.lm.losses`).
"""

from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from threegate.lm.losses import (
    Normalization,
    batch_normalized_advantages,
    clipped_pg_loss,
    dynamic_sampling_mask,
    group_advantages,
    masked_mean,
    sft_loss,
)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "LossSettings",
    "LossTerms",
    "batch_advantages",
    "correct_only",
    "cross_entropy",
    "dapo_advantages",
    "grpo_advantages",
    "policy_gradient",
    "uniform",
    "weighted_cross_entropy",
]

Advantages = tuple[Float[Array, " b"], Float[Array, " b"]]


class LossTerms(NamedTuple):
    """What a loss sees of one minibatch.

    Attributes:
      logp: $\\log\\pi_\\theta$ of the trained tokens `[B, N]` (differentiated): the reference answers or the samples.
      mask: which of them are real tokens `[B, N]`.
      logp_old: $\\log\\pi_{old}$ of the samples `[B, N]`, or None: the policy being differentiated sampled them
        (one update per step), so $\\log\\pi_{old}$ is `logp` itself, stop-gradient.
      logp_ref: $\\log\\pi_{ref}$ of the samples `[B, N]` for the KL penalty, or None.
      advantages: $\\hat A$ per sequence `[B]`.
      keep: sequence weights $s_i$ `[B]` (0 drops a sequence from sums and normalisers).
    """

    logp: Float[Array, "b n"]
    mask: Bool[Array, "b n"]
    logp_old: Float[Array, "b n"] | None
    logp_ref: Float[Array, "b n"] | None
    advantages: Float[Array, " b"]
    keep: Float[Array, " b"]


class LossSettings(NamedTuple):
    """The run's loss settings (`TrainConfig.loss_settings`): clip range, normalisation, KL penalty."""

    eps_low: float
    eps_high: float
    normalization: Normalization
    beta: float
    kl_estimator: Literal["k1", "k3"]


LossFn = Callable[[LossTerms, LossSettings], tuple[Float[Array, ""], Float[Array, ""]]]
AdvantageFn = Callable[[Float[Array, " b"], Bool[Array, " b"], int, bool], Advantages]


class Algorithm(NamedTuple):
    """One training algorithm.

    Attributes:
      advantages: `(rewards [B], correct [B], group G, dynamic_sampling) -> (adv [B], keep [B])`.
      loss: `(LossTerms, LossSettings) -> (loss, clip_frac)`.
      trains_on: "references" (teacher-forced reference answers) or "samples" (the policy's completions).
      samples_groups: draw `group_size` completions per prompt (else one monitoring sample each).
      min_group: the smallest `group_size` the advantages are defined for.
      uses_ratio: the loss needs $\\log\\pi_{old}$ (PPO ratio), so several updates per rollout need a pass of
        the sampling policy of their own.
      tempered: log-probabilities at the sampling temperature (policy gradient), else at temperature 1.
      normalization: "sequence" or "token" (`threegate.lm.losses.masked_mean`).
      eps_high: default upper clip $\\varepsilon_{high}$ (None: $\\varepsilon_{low}$, a symmetric range).
      refills: DAPO's dynamic sampling: oversample and keep groups with mixed rewards first.
    """

    advantages: AdvantageFn
    loss: LossFn
    trains_on: Literal["references", "samples"]
    samples_groups: bool
    min_group: int
    uses_ratio: bool
    tempered: bool
    normalization: Normalization
    eps_high: float | None
    refills: bool


# ------------------------------------------------------------------------------------------- advantages


def uniform(
    rewards: Float[Array, " b"], correct: Bool[Array, " b"], group: int, dynamic_sampling: bool
) -> Advantages:
    """Advantage 1 and weight 1 for every sequence (SFT)."""
    ones = jnp.ones(rewards.shape, jnp.float32)
    return ones, ones


def grpo_advantages(
    rewards: Float[Array, " b"], correct: Bool[Array, " b"], group: int, dynamic_sampling: bool
) -> Advantages:
    """Group-normalised advantages (`group_advantages` over `[B/G, G]`), weight 1."""
    adv = group_advantages(rewards.reshape(-1, group)).reshape(-1)
    return adv, jnp.ones_like(rewards)


def dapo_advantages(
    rewards: Float[Array, " b"], correct: Bool[Array, " b"], group: int, dynamic_sampling: bool
) -> Advantages:
    """GRPO's advantages; with dynamic sampling, groups whose rewards are all equal get weight 0."""
    r = rewards.reshape(-1, group)
    adv = group_advantages(r).reshape(-1)
    if dynamic_sampling:
        return adv, jnp.repeat(dynamic_sampling_mask(r), group).astype(rewards.dtype)
    return adv, jnp.ones_like(rewards)


def batch_advantages(
    rewards: Float[Array, " b"], correct: Bool[Array, " b"], group: int, dynamic_sampling: bool
) -> Advantages:
    """REINFORCE++: rewards whitened over the batch (`batch_normalized_advantages`), weight 1."""
    return batch_normalized_advantages(rewards), jnp.ones_like(rewards)


def correct_only(
    rewards: Float[Array, " b"], correct: Bool[Array, " b"], group: int, dynamic_sampling: bool
) -> Advantages:
    """Rejection sampling: advantage 1, weight 1 on the samples the verifier accepts and 0 on the others."""
    return jnp.ones(rewards.shape, jnp.float32), correct.astype(jnp.float32)


# ------------------------------------------------------------------------------------------------ losses


def cross_entropy(
    terms: LossTerms, settings: LossSettings
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """Token-mean negative log-likelihood of every sequence (`sft_loss`); nothing is clipped."""
    return sft_loss(terms.logp, terms.mask), jnp.zeros((), jnp.float32)


def weighted_cross_entropy(
    terms: LossTerms, settings: LossSettings
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """$-\\sum_i s_i\\sum_t\\log\\pi_{i,t}/\\sum_i s_i|y_i|$: cross-entropy on the sequences of weight `keep`
    (0 when every weight is 0)."""
    return -masked_mean(terms.logp, terms.mask, "token", terms.keep), jnp.zeros((), jnp.float32)


def policy_gradient(
    terms: LossTerms, settings: LossSettings
) -> tuple[Float[Array, ""], Float[Array, ""]]:
    """The clipped surrogate with the optional KL penalty (`clipped_pg_loss`), and its clip fraction."""
    logp_old = terms.logp_old
    if logp_old is None:  # one update per step: the sampling policy is this one (ratio exactly 1)
        logp_old = jax.lax.stop_gradient(terms.logp)
    out = clipped_pg_loss(
        terms.logp,
        logp_old,
        jnp.broadcast_to(terms.advantages[:, None], terms.logp.shape),
        terms.mask,
        eps_low=settings.eps_low,
        eps_high=settings.eps_high,
        normalization=settings.normalization,
        seq_weight=terms.keep,
        logp_ref=terms.logp_ref,
        beta=settings.beta,
        kl_estimator=settings.kl_estimator,
    )
    return out.loss, out.clip_frac


def _rl(advantages: AdvantageFn, normalization: Normalization, **kw) -> Algorithm:
    settings = dict(
        trains_on="samples",
        samples_groups=True,
        min_group=2,
        uses_ratio=True,
        tempered=True,
        eps_high=None,
        refills=False,
    )
    return Algorithm(advantages, policy_gradient, normalization=normalization, **(settings | kw))


#: The registry: `TrainConfig.algo` names one of these.
ALGORITHMS: dict[str, Algorithm] = {
    "sft": Algorithm(
        uniform,
        cross_entropy,
        trains_on="references",
        samples_groups=False,
        min_group=1,
        uses_ratio=False,
        tempered=False,
        normalization="token",
        eps_high=None,
        refills=False,
    ),
    "grpo": _rl(grpo_advantages, "sequence"),
    "dapo": _rl(dapo_advantages, "token", eps_high=0.28, refills=True),
    "reinforce": _rl(batch_advantages, "token"),
    "rft": Algorithm(
        correct_only,
        weighted_cross_entropy,
        trains_on="samples",
        samples_groups=True,
        min_group=1,
        uses_ratio=False,
        tempered=False,
        normalization="token",
        eps_high=None,
        refills=False,
    ),
}

"""One step's batch: problems drawn, completions rolled out, verified — and DAPO's refill rule, once.

A batch is drawn in *rounds*. Round `r` draws `P` problems with key `k_prob` (`fold_in(k_prob, r)` for r > 0),
repeats each `G` times, rolls out with `k_roll` (likewise folded), and scores the completions. Without DAPO's
dynamic sampling one round is the batch. With it (paper App. C.1), rounds are drawn until `P` groups whose rewards
are not all equal ("mixed") have been collected, or `dapo_max_rounds` rounds; the batch keeps the mixed groups of
the drawn rounds in sampling order, then all-equal ones (`refill_keep`; `dynamic_sampling_mask` gives those zero
weight). Both drivers use that one rule: the host driver (text tasks, verifier on the host) draws rounds lazily and
stops early; the fused jitted step (jnp tasks) draws all `dapo_max_rounds` rounds at static shape and the rule
discards the rounds the host would not have drawn, so the two give the same batch for the same keys.

Shapes: `P` prompts per step, `G` completions per prompt, `B = P·G` rows (prompt-major), `K` rounds.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from threegate.lm.losses import dynamic_sampling_mask
from threegate.lm.sample import GenerateOutput
from threegate.lm.tasks import Task

__all__ = [
    "Batch",
    "draw_round",
    "host_sample_batch",
    "refill_done",
    "refill_keep",
    "round_keys",
    "sample_batch",
    "select_groups",
    "take_groups",
]

#: `(prompts [B, T], prompt_mask [B, T], key) -> GenerateOutput`: `G` completions per prompt of the current policy.
Rollout = Callable[[Array, Array, PRNGKeyArray], GenerateOutput]


class Batch(NamedTuple):
    """One step's data. `targets` are the SFT reference answers (for RL they repeat `completion`)."""

    prompts: Int[Array, "B T"]
    prompt_mask: Bool[Array, "B T"]
    completion: Int[Array, "B N"]  # sampled from the stored policy
    completion_mask: Bool[Array, "B N"]
    rewards: Float[Array, " B"]
    correct: Bool[Array, " B"]
    targets: Int[Array, "B A"]
    target_mask: Bool[Array, "B A"]


def select_groups(rewards: Float[ArrayLike, "R G"], p: int) -> Int[Array, " p"]:
    """Indices of `p` of the `R ≥ p` groups (rewards `[R, G]`): the mixed groups (rewards not all equal) first,
    in sampling order, then all-equal ones. Static shapes, so it also runs under jit."""
    mixed = dynamic_sampling_mask(rewards)
    return jnp.argsort(~mixed, stable=True)[:p]


def refill_done(rewards: Float[ArrayLike, "R G"], p: int) -> bool:
    """Whether the rounds drawn so far (rewards of their `R` groups) hold `p` mixed groups: the host's stopping
    rule, the same test `refill_keep` applies per round."""
    return int(np.sum(np.asarray(dynamic_sampling_mask(jnp.asarray(rewards))))) >= p


def refill_keep(rewards: Float[ArrayLike, "K P G"], p: int) -> Int[Array, " p"]:
    """DAPO's refill (App. C.1) over `K` rounds of `P = p` groups: round `r` counts as drawn iff the rounds before
    it hold fewer than `p` mixed groups (round 0 always); of the drawn rounds' groups, the mixed ones first in
    sampling order, then all-equal ones (`select_groups`). Returns the kept groups' indices into the `K·P` groups.
    On rounds that were all drawn (the host's lazy loop) this is `select_groups`."""
    rewards = jnp.asarray(rewards)
    k, n, g = rewards.shape
    mixed = dynamic_sampling_mask(rewards.reshape(k * n, g)).reshape(k, n)
    per_round = jnp.sum(mixed, axis=1)
    drawn = (jnp.cumsum(per_round) - per_round) < p
    rank = jnp.where(drawn[:, None], jnp.where(mixed, 0, 1), 2).reshape(-1)
    return jnp.argsort(rank, stable=True)[:p]


def take_groups(b: Batch, keep: Int[ArrayLike, " p"], group: int) -> Batch:
    """The rows of the groups `keep` (each `group` consecutive rows), in that order."""
    rows = (keep[:, None] * group + jnp.arange(group)[None, :]).reshape(-1)
    return jax.tree.map(
        lambda x: x[rows] if isinstance(x, np.ndarray) else jnp.take(x, rows, axis=0), b
    )


def round_keys(
    k_prob: PRNGKeyArray, k_roll: PRNGKeyArray, r: int
) -> tuple[PRNGKeyArray, PRNGKeyArray]:
    """The problem and rollout keys of round `r` (round 0 uses the step's own)."""
    if r == 0:
        return k_prob, k_roll
    return jax.random.fold_in(k_prob, r), jax.random.fold_in(k_roll, r)


def draw_round(
    task: Task,
    roll: Rollout,
    k_prob: PRNGKeyArray,
    k_roll: PRNGKeyArray,
    *,
    prompts: int,
    group: int,
) -> Batch:
    """One round: `prompts` problems, `group` completions each, scored by `task` (on the host, as NumPy arrays,
    when the task is not `jax_native`)."""
    problems = task.sample(k_prob, prompts)
    problems = jax.tree.map(lambda x: jnp.repeat(x, group, axis=0), problems)
    tokens, pmask = task.prompts(problems)
    out = roll(jnp.asarray(tokens), jnp.asarray(pmask), k_roll)
    completion, cmask = out.tokens, out.mask
    if not task.jax_native:
        completion, cmask = np.asarray(completion), np.asarray(cmask)
    rewards, correct = task.score(problems, completion, cmask)
    targets, tmask = task.references(problems)
    return Batch(tokens, pmask, completion, cmask, rewards, correct, targets, tmask)


def _concat(parts: list[Batch]) -> Batch:
    if len(parts) == 1:
        return parts[0]
    cat = np.concatenate if isinstance(parts[0].rewards, np.ndarray) else jnp.concatenate
    return Batch(*(cat(xs) for xs in zip(*parts, strict=True)))


def sample_batch(
    task: Task, roll: Rollout, key: PRNGKeyArray, *, prompts: int, group: int, refill_rounds: int
) -> tuple[Batch, PRNGKeyArray]:
    """The step's batch for a jnp task, under jit: all `refill_rounds` rounds drawn (1: no refill), then
    `refill_keep`. Returns the batch and the update's key."""
    k_prob, k_roll, k_upd = jax.random.split(key, 3)
    parts = [
        draw_round(task, roll, *round_keys(k_prob, k_roll, r), prompts=prompts, group=group)
        for r in range(refill_rounds)
    ]
    b = _concat(parts)
    if refill_rounds > 1:
        b = take_groups(
            b, refill_keep(b.rewards.reshape(refill_rounds, prompts, group), prompts), group
        )
    return b, k_upd


def host_sample_batch(
    task: Task, roll: Rollout, key: PRNGKeyArray, *, prompts: int, group: int, refill_rounds: int
) -> tuple[Batch, PRNGKeyArray, dict[str, float]]:
    """`sample_batch` with the verifier on the host: rounds drawn until `refill_done` (or `refill_rounds`), then
    the same `refill_keep`. Also returns `rollout_seconds` and `sampled_groups` for the log."""
    t0 = time.perf_counter()
    k_prob, k_roll, k_upd = jax.random.split(key, 3)
    parts: list[Batch] = []
    for r in range(refill_rounds):
        parts.append(
            draw_round(task, roll, *round_keys(k_prob, k_roll, r), prompts=prompts, group=group)
        )
        if refill_rounds > 1 and refill_done(
            np.concatenate([p.rewards for p in parts]).reshape(-1, group), prompts
        ):
            break
    b = jax.tree.map(np.asarray, _concat(parts))
    drawn = len(parts)
    if drawn > 1:
        keep = np.asarray(
            refill_keep(jnp.asarray(b.rewards).reshape(drawn, prompts, group), prompts)
        )
        b = take_groups(b, keep, group)
    b = Batch(*(jnp.asarray(x) for x in b))
    timing = {"rollout_seconds": time.perf_counter() - t0, "sampled_groups": float(drawn * prompts)}
    return b, k_upd, timing

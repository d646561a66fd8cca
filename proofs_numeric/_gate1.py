"""Shared pieces of the Gate I checkers (Props 3.1–3.2, Lemmas F.1–F.9): instances and limit records.

Instance generators draw from a NumPy generator and return float64 jax arrays (call them inside
`jax.enable_x64(True)`). `limit_record` turns a sweep of ratios $r(x)$, $x\\to0$, into a record on the limit
$\\lim r\\le1$ by Richardson extrapolation under $r(x)=\\ell+cx+O(x^2)$, with an a-posteriori error estimate (the
change between the last two extrapolants) added to the slack.
"""

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from proofs_numeric.harness import Record, VerifyConfig, holds_le, jsonable
from threegate.kl import gibbs_tilt
from threegate.toy.policy import (
    LeashPoint,
    TanhPolicy,
    fisher,
    leash_point,
    log_probs,
    policy_kl,
    scores,
)

__all__ = [
    "BATCH",
    "BETAS",
    "STEPS",
    "TANH_SHAPE",
    "LinePoint",
    "SweepPoint",
    "TanhSweep",
    "batched",
    "limit_record",
    "line_points",
    "loglinear_as_tanh",
    "random_tanh",
    "richardson",
    "stack",
    "sweep_points",
    "tanh_sweep",
]

#: Inverse temperatures of the β → ∞ sweeps (κ = D(q̃‖π) ∝ β⁻²).
BETAS = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
#: (a, h, p): outcomes, hidden width and parameters of the policy class shared by all Gate I checkers.
TANH_SHAPE = (10, 6, 4)
#: Fixed vmap batch: every batched call pads to a multiple of it, so each function compiles once per process.
BATCH = 16


def stack(items: Sequence[Any]) -> Any:
    """Stack a list of equally-shaped pytrees along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *items)


def batched(fn: Callable[..., Any], items: Sequence[tuple[Any, ...]]) -> Any:
    """`jax.vmap(fn)` over `items` (argument tuples) in padded chunks of `BATCH`; outputs as NumPy arrays."""
    n = len(items)
    padded = list(items) + [items[0]] * (-n % BATCH)
    outs = [fn(*stack(padded[i : i + BATCH])) for i in range(0, len(padded), BATCH)]
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs])[:n], *outs)


def random_tanh(
    rng: np.random.Generator, lin_scale: float = 0.5, tanh_scale: float = 1.5
) -> TanhPolicy:
    a, h, p = TANH_SHAPE
    return TanhPolicy(
        jnp.asarray(rng.normal(size=(a, p)) * lin_scale),
        jnp.asarray(rng.normal(size=(a, h)) * tanh_scale),
        jnp.asarray(rng.normal(size=(h, p)) / np.sqrt(p)),
        jnp.asarray(rng.normal(size=h) * 0.5),
    )


def loglinear_as_tanh(rng: np.random.Generator) -> TanhPolicy:
    """A minimal log-linear policy (centred Gaussian features) in the shared class, with $A=0$."""
    a, h, p = TANH_SHAPE
    phi = rng.normal(size=(a, p))
    return TanhPolicy(
        jnp.asarray(phi - phi.mean(axis=0)),
        jnp.zeros((a, h)),
        jnp.asarray(rng.normal(size=(h, p))),
        jnp.zeros(h),
    )


#: One M-projection with everything the Gate I lemmas need (the library's `LeashPoint`).
SweepPoint = LeashPoint
_sweep_point = leash_point


_sweep_jit = jax.jit(jax.vmap(_sweep_point))


def sweep_points(items: Sequence[tuple[TanhPolicy, Any, Any]]) -> SweepPoint:
    """`SweepPoint`s (NumPy, leading axis = item) of (policy, theta, target logits) triples."""
    return batched(_sweep_jit, items)


class TanhSweep(NamedTuple):
    """The shared β → ∞ sweep with $q=\\pi_\\theta$: instance `i`, inverse temperature `BETAS[j]` at `[i, j]`."""

    kinds: list[str]
    policies: list[TanhPolicy]
    thetas: list[Any]
    rewards: list[Any]
    points: SweepPoint  # arrays with leading axes [n, len(BETAS)]


@functools.lru_cache(maxsize=4)
def tanh_sweep(config: VerifyConfig) -> TanhSweep:
    """Instances of the tanh class with kinds cycling random, random, "span" (R in the span of the scores: the
    Prop 3.1 ratio tends to 1), "aligned" (R = S v_min(F): Delta aligns with the least Fisher direction, F.7 tight);
    each M-projected at every β in `BETAS` (computed once per config and shared by 3.1, F.4, F.7, F.8)."""
    with jax.enable_x64(True):
        rng = config.rng("gate1/tanh-sweep")
        n = config.n(tiny=4, default=20)
        kinds, policies, thetas, rewards, items = [], [], [], [], []
        for i in range(n):
            pol = random_tanh(rng)
            th = jnp.asarray(rng.normal(size=TANH_SHAPE[2]))
            kind = ("random", "random", "span", "aligned")[i % 4]
            s = np.asarray(scores(pol, th))
            pi = np.exp(np.asarray(log_probs(pol, th)))
            if kind == "span":
                r = s @ rng.normal(size=s.shape[1])
            elif kind == "aligned":
                r = s @ np.linalg.eigh(np.asarray(fisher(pol, th)))[1][:, 0]
            else:
                r = rng.normal(size=s.shape[0])
            r = jnp.asarray(r / np.sqrt(pi @ (r - pi @ r) ** 2))  # unit reward variance under pi
            kinds.append(kind)
            policies.append(pol)
            thetas.append(th)
            rewards.append(r)
            items += [(pol, th, gibbs_tilt(pol.logits(th), r, b)) for b in BETAS]
        pts = sweep_points(items)
        pts = jax.tree.map(lambda x: x.reshape(n, len(BETAS), *x.shape[1:]), pts)
        return TanhSweep(kinds, policies, thetas, rewards, pts)


def richardson(x: np.ndarray, r: np.ndarray) -> tuple[float, float]:
    """Limit of r at x → 0 from the last two points, and |change| from the previous pair (error estimate)."""
    x = np.asarray(x, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)

    def pair(i: int, j: int) -> float:
        return float((r[j] * x[i] - r[i] * x[j]) / (x[i] - x[j]))

    lim = pair(-2, -1)
    prev = pair(-3, -2)
    return lim, abs(lim - prev)


def limit_record(
    id: str,
    kind: str,
    x: np.ndarray,
    ratios: np.ndarray,
    instance: Mapping[str, Any],
    *,
    premise: bool = True,
    form: str = "paper",
    extra: Mapping[str, Any] | None = None,
) -> Record:
    """Record `lim_{x→0} ratio(x) <= 1`: lhs = Richardson limit, rhs = 1, slack = its error estimate + tol."""
    lim, err = richardson(x, ratios)
    ok = holds_le(lim, 1.0 + err, np.float64, len(ratios))
    return Record(
        id=id,
        form=form,
        kind=kind,
        instance=jsonable(instance),
        lhs=lim,
        rhs=1.0,
        relation="<=",
        premise=premise,
        holds=ok,
        extra=jsonable(
            {"x": x, "ratios": ratios, "extrapolation_error": err, "last_ratio": ratios[-1]}
            | dict(extra or {})
        ),
    )


#: Step sizes t of the line sweeps Δ = t·d (2^-1 … 2^-14).
STEPS = tuple(2.0**-k for k in range(1, 15))


class LinePoint(NamedTuple):
    """KL along a line: `kl[k]` = D(π_{θ+t_k d} ‖ π_θ) for t_k in `STEPS`, and the Fisher F(θ)."""

    kl: Any
    fisher: Any


def _line(policy, theta, direction) -> LinePoint:
    ts = jnp.asarray(STEPS, dtype=theta.dtype)
    kl = jax.vmap(lambda t: policy_kl(policy, theta + t * direction, theta))(ts)
    return LinePoint(kl, fisher(policy, theta))


_line_jit = jax.jit(jax.vmap(_line))


def line_points(items: Sequence[tuple[TanhPolicy, Any, Any]]) -> LinePoint:
    """`LinePoint`s (NumPy, leading axis = item) of (policy, theta, direction) triples."""
    return batched(_line_jit, items)

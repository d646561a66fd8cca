"""Prop 3.1 (one-step policy-KL leash), arXiv 2511.08567 eq. (5).

Statement: for $\\tilde q_\\beta\\propto q\\,e^{R/\\beta}$ and $\\theta^+\\in\\arg\\min_\\theta D_{KL}(\\tilde q_\\beta\\|\\pi_\\theta)$,
$D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)\\le(1+o(1))\\,D_{KL}(\\tilde q_\\beta\\|\\pi_\\theta)$ as $D_{KL}(\\tilde q_\\beta\\|\\pi_\\theta)\\to0$.

Checks:
- log-linear (exponential-family) class, any target $\\tilde q$: the Pythagorean identity
  $D(\\tilde q\\|\\pi_\\theta)=D(\\tilde q\\|\\pi_{\\theta^+})+D(\\pi_{\\theta^+}\\|\\pi_\\theta)$ (relation "==", to ~1e-15), hence (5)
  with ratio $\\le1$ exactly ("<="); extremal: $R\\in\\mathrm{span}(\\Phi)$ puts $\\tilde q$ in the family, ratio = 1.
- tanh class with $q=\\pi_\\theta$, $\\beta\\in$ `BETAS`: the ratio's limit as $\\beta\\to\\infty$ (Richardson) is $\\le1$; the
  analytic limit is $c^\\top F^{-1}c/\\mathrm{Var}_\\pi R$ with $c=\\mathrm{Cov}_\\pi(\\nabla\\log\\pi,R)$ (a regression $R^2$), equal
  to 1 for $R$ in the span of the scores (adversarial). Rate: $|\\mathrm{ratio}-\\ell|=O(\\sqrt\\kappa)$ (slope ≥ 0.5 in $\\kappa$).
- premise removed: $\\theta^+$ replaced by an overshoot $\\theta+3\\Delta$ (not the M-projection): (5) fails.
"""

import jax
import jax.numpy as jnp
import numpy as np

from proofs_numeric._gate1 import (
    BETAS,
    TANH_SHAPE,
    limit_record,
    loglinear_as_tanh,
    sweep_points,
    tanh_sweep,
)
from proofs_numeric.harness import Record, VerifyConfig, holds_eq, holds_le, rate_record
from threegate.kl import gibbs_tilt
from threegate.toy.policy import leash_ratio_limit, policy_kl

ID = "3.1"
STATEMENT = (
    "D_KL(pi_theta+ || pi_theta) <= (1 + o(1)) D_KL(q~_beta || pi_theta) for the M-projection theta+ "
    "of q~_beta, as D_KL(q~_beta || pi_theta) -> 0 (eq. 5)"
)
KIND = "asymptotic"


def analytic_limit(s: np.ndarray, pi: np.ndarray, reward: np.ndarray) -> float:
    """β → ∞ limit of the ratio for q = π_θ (`threegate.toy.policy.leash_ratio_limit`)."""
    return float(leash_ratio_limit(jnp.asarray(s), jnp.asarray(pi), jnp.asarray(reward)))


def _loglinear_records(config: VerifyConfig) -> list[Record]:
    rng = config.rng("3.1/loglinear")
    n = config.n(tiny=4, default=16)
    a, _, p = TANH_SHAPE
    items, kinds, meta = [], [], []
    for i in range(n):
        pol = loglinear_as_tanh(rng)
        th = jnp.asarray(rng.normal(size=p))
        beta = float([0.3, 1.0, 3.0, 1.0][i % 4])
        if i % 4 == 3:  # extremal: R in span(Phi) puts q~ in the family, so the ratio is exactly 1
            reward, kind = pol.lin @ jnp.asarray(rng.normal(size=p)), "extremal"
        else:
            reward, kind = jnp.asarray(rng.normal(size=a)), "random"
        target = gibbs_tilt(pol.logits(th), reward, beta)
        if i % 8 == 5:  # a target that is no tilt of pi_theta: the identity still holds
            target, beta = jnp.asarray(rng.normal(size=a) * 2), None
        items.append((pol, th, target))
        kinds.append(kind)
        meta.append({"class": "log-linear", "a": a, "p": p, "beta": beta})
    pts = sweep_points(items)
    out = []
    for i in range(n):
        kappa, rhs = pts.kappa[i], pts.resid[i] + pts.step_kl[i]
        ok = bool(pts.ok[i])
        out.append(
            Record(
                ID,
                "paper",
                "identity",
                meta[i],
                kappa,
                rhs,
                "==",
                ok,
                holds_eq(kappa, rhs, np.float64, a, scale=kappa),
                extra={
                    "identity": "D(q~||pi) = D(q~||pi+) + D(pi+||pi)",
                    "abs_residual": kappa - rhs,
                },
            )
        )
        out.append(
            Record(
                ID,
                "paper",
                kinds[i],
                meta[i],
                pts.step_kl[i],
                kappa,
                "<=",
                ok,
                holds_le(pts.step_kl[i], kappa, np.float64, a, scale=kappa),
            )
        )
    pol, th, _ = items[0]
    over = float(policy_kl(pol, th + 3 * jnp.asarray(pts.delta[0]), th))
    out.append(
        Record(
            ID,
            "paper",
            "edge",
            meta[0] | {"premise_removed": "theta+ replaced by theta + 3 Delta"},
            over,
            pts.kappa[0],
            "<=",
            False,
            holds_le(over, pts.kappa[0], np.float64, a),
        )
    )
    return out


def _tanh_records(config: VerifyConfig) -> list[Record]:
    sw = tanh_sweep(config)
    pts = sw.points
    x = 1 / np.asarray(BETAS)
    out = []
    for i, kind in enumerate(sw.kinds):
        ratio = pts.step_kl[i] / pts.kappa[i]
        lim = analytic_limit(pts.scores[i, 0], pts.pi[i, 0], np.asarray(sw.rewards[i]))
        inst = {
            "class": "tanh",
            "shape": TANH_SHAPE,
            "betas": BETAS,
            "q": "pi_theta",
            "reward": kind,
        }
        out.append(
            limit_record(
                ID,
                "adversarial" if kind == "span" else "random",
                x,
                ratio,
                inst,
                premise=bool(pts.ok[i][-4:].all()),
                extra={
                    "analytic_limit": lim,
                    "kappa": pts.kappa[i],
                    "max_finite_beta_ratio": ratio.max(),
                },
            )
        )
        out.append(
            rate_record(
                ID,
                pts.kappa[i][2:],
                np.abs(ratio - lim)[2:],
                expected=0.5,
                slope_tol=0.15,
                at_least=True,
                instance=inst | {"fit": "|ratio - analytic limit| vs kappa"},
            )
        )
    return out


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        return _loglinear_records(config) + _tanh_records(config)

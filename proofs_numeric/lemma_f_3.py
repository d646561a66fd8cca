"""Lemma F.3 (the PG update as a parametric M-projection), arXiv 2511.08567 App. F.2.

Statement: $\\arg\\min_\\theta D_{KL}(\\tilde q_\\beta\\|\\pi_\\theta)=\\arg\\max_\\theta\\mathbb E_{\\tilde q_\\beta}[\\log\\pi_\\theta]$.

Checks (log-linear and tanh classes; Gibbs tilts and arbitrary targets):
- the exact identity $-\\mathbb E_{\\tilde q}[\\log\\pi_\\theta]-D_{KL}(\\tilde q\\|\\pi_\\theta)=H(\\tilde q)$ at the start $\\theta$ (the two
  objectives differ by a $\\theta$-free constant, so their optimisers coincide);
- the two optimisers computed independently: $\\theta_{CE}$ by damped Newton on the cross-entropy
  (`threegate.toy.policy.m_projection`), $\\theta_{KL}$ by SciPy L-BFGS-B on `kl_categorical`; recorded as
  $\\|\\theta_{KL}-\\theta_{CE}\\|\\le2\\|\\nabla f(\\theta_{KL})\\|/m+\\tau$ with $m=\\lambda_{min}(\\nabla^2f(\\theta_{CE}))$ (the
  strong-convexity certificate of "equal to optimiser tolerance", factor 2 for the variation of the curvature);
- premise removed: the reverse (I-projection) $\\arg\\min_\\theta D_{KL}(\\pi_\\theta\\|\\tilde q)$ is a different point.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import minimize

from proofs_numeric._gate1 import TANH_SHAPE, loglinear_as_tanh, random_tanh, sweep_points
from proofs_numeric.harness import Record, VerifyConfig, holds_eq, premise_below
from threegate._numerics import tol
from threegate.kl import gibbs_tilt, kl_categorical

ID = "F.3"
STATEMENT = "argmin_theta D_KL(q~_beta || pi_theta) = argmax_theta E_q~[log pi_theta]"
KIND = "exact"


def _forward(policy, theta, target):
    return kl_categorical(target, policy.logits(theta))


def _reverse(policy, theta, target):
    return kl_categorical(policy.logits(theta), target)


_fwd_vg = jax.jit(jax.value_and_grad(_forward, argnums=1))
_rev_vg = jax.jit(jax.value_and_grad(_reverse, argnums=1))


def _lbfgs(vg, policy, theta0, target) -> np.ndarray:
    def fun(x):
        v, g = vg(policy, jnp.asarray(x), target)
        return float(v), np.asarray(g)

    res = minimize(
        fun,
        np.asarray(theta0),
        jac=True,
        method="L-BFGS-B",
        options={
            "gtol": tol(np.float64, theta0.shape[0], c=1000.0),
            "ftol": 0.0,
            "maxiter": 400,
            "maxcor": 20,
        },
    )
    return res.x


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("F.3")
    n = config.n(tiny=3, default=20)
    a, _, p = TANH_SHAPE
    out = []
    with jax.enable_x64(True):
        items, meta = [], []
        for i in range(n):
            loglin = i % 2 == 0
            pol = loglinear_as_tanh(rng) if loglin else random_tanh(rng)
            th = jnp.asarray(rng.normal(size=p))
            if i % 5 == 4:
                tgt, what = jnp.asarray(rng.normal(size=a) * 2), "arbitrary"
            else:
                beta = (0.5, 2.0, 10.0, 1.0)[i % 4]
                tgt, what = (
                    gibbs_tilt(pol.logits(th), jnp.asarray(rng.normal(size=a)), beta),
                    f"tilt beta={beta}",
                )
            items.append((pol, th, tgt))
            meta.append(
                {"class": "log-linear" if loglin else "tanh", "shape": TANH_SHAPE, "target": what}
            )
        pts = sweep_points(items)
        # restarted at theta_CE (already stationary): the Hessians there, and the sweep's KL at fresh points
        at_ce = sweep_points(
            [(pol, th + jnp.asarray(pts.delta[i]), tgt) for i, (pol, th, tgt) in enumerate(items)]
        )
        for i, (pol, th, tgt) in enumerate(items):
            theta_ce = np.asarray(th) + pts.delta[i]
            theta_kl = _lbfgs(_fwd_vg, pol, th, tgt)
            g_kl = np.linalg.norm(np.asarray(_fwd_vg(pol, jnp.asarray(theta_kl), tgt)[1]))
            hess_ce = -np.einsum(
                "a,apq->pq", at_ce.q[i], at_ce.hessians[i]
            )  # Hessian of f at theta_CE
            ev_ce = np.linalg.eigvalsh(hess_ce)
            m = float(ev_ce[0])
            gap = float(np.linalg.norm(theta_kl - theta_ce))
            bound = 2 * g_kl / m + tol(np.float64, p) * (1 + np.linalg.norm(theta_ce))
            premise = bool(pts.ok[i]) and premise_below(0.0, m, np.float64, p, np.abs(ev_ce).max())
            out.append(
                Record(
                    ID,
                    "paper",
                    "random",
                    meta[i] | {"statement": "||theta_KL - theta_CE|| <= 2 ||grad|| / m"},
                    gap,
                    bound,
                    "<=",
                    premise,
                    gap <= bound,
                    extra={"m": m, "grad_kl": g_kl},
                )
            )
            ent = float(-np.sum(pts.q[i] * np.log(pts.q[i])))
            diff = float(-pts.q[i] @ np.log(pts.pi[i]) - pts.kappa[i])  # CE(theta) - KL at theta
            out.append(
                Record(
                    ID,
                    "paper",
                    "identity",
                    meta[i] | {"statement": "CE(theta) - KL(q~||pi_theta) = H(q~)"},
                    diff,
                    ent,
                    "==",
                    True,
                    holds_eq(diff, ent, np.float64, a, scale=ent + 1),
                )
            )
            if i == 0:
                theta_i = _lbfgs(_rev_vg, pol, th, tgt)
                gap_i = float(np.linalg.norm(theta_i - theta_ce))
                out.append(
                    Record(
                        ID,
                        "paper",
                        "edge",
                        meta[i] | {"premise_removed": "reverse KL (I-projection)"},
                        gap_i,
                        bound,
                        "<=",
                        False,
                        gap_i <= bound,
                    )
                )
    return out

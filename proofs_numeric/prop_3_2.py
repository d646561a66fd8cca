"""Prop 3.2 (policy-KL leash ⇒ weight bound), arXiv 2511.08567 eq. (6).

Statement: if $D_{KL}(\\pi_{\\theta+\\Delta}\\|\\pi_\\theta)\\le K$ and $F(\\theta)\\succeq\\mu I$ on the update subspace, then for
small $K$: $\\|\\Delta\\|_{F(\\theta)}\\le\\sqrt{2K}(1+o(1))$ and $\\|\\Delta\\|_2\\le\\sqrt{2K/\\mu}(1+o(1))$.

Checks: minimal log-linear and tanh policies (Fisher non-singular, $\\mu=\\lambda_{min}(F)$), $\\Delta=t\\,d$ with
$t=2^{-1}\\dots2^{-14}$ and $K=D_{KL}(\\pi_{\\theta+\\Delta}\\|\\pi_\\theta)$ (the tightest budget). Both ratios
$\\|\\Delta\\|_F/\\sqrt{2K}$ and $\\|\\Delta\\|_2/\\sqrt{2K/\\mu}$ have limits $\\le1$ (Richardson in $t$); the first is 1 for every
$d$, the second is 1 for $d=v_{min}(F)$ (extremal). Adversarial: the direction with the largest first ratio at
$t=1/2$ among 48 random ones. Rate: $|\\|\\Delta\\|_F/\\sqrt{2K}-1|=O(\\sqrt K)$ (slope $\\ge0.5$ against $K$).
Premise removed: $\\mu=\\lambda_{max}(F)$ (so $F\\succeq\\mu I$ fails) with $d=v_{min}$: the second limit is
$\\sqrt{\\lambda_{max}/\\lambda_{min}}>1$.
"""

import jax
import jax.numpy as jnp
import numpy as np

from proofs_numeric._gate1 import (
    STEPS,
    TANH_SHAPE,
    limit_record,
    line_points,
    loglinear_as_tanh,
    random_tanh,
)
from proofs_numeric.harness import Record, VerifyConfig, premise_below, rate_record

ID = "3.2"
STATEMENT = (
    "D_KL(pi_theta+Delta || pi_theta) <= K and F >= mu I imply ||Delta||_F <= sqrt(2K)(1 + o(1)) and "
    "||Delta||_2 <= sqrt(2K/mu)(1 + o(1)) (eq. 6)"
)
KIND = "asymptotic"


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("3.2")
    n = config.n(tiny=4, default=12)
    p = TANH_SHAPE[2]
    with jax.enable_x64(True):
        policies = [loglinear_as_tanh(rng) if i % 2 == 0 else random_tanh(rng) for i in range(n)]
        thetas = [jnp.asarray(rng.normal(size=p)) for _ in range(n)]
        base = line_points(
            [
                (pol, th, jnp.asarray(_unit(rng.normal(size=p))))
                for pol, th in zip(policies, thetas, strict=True)
            ]
        )
        kinds, dirs = [], []
        for i in range(n):
            evecs = np.linalg.eigh(base.fisher[i])[1]
            if i % 3 == 1:
                kinds.append("extremal")
                dirs.append(evecs[:, 0])
            elif (
                i % 3 == 2
            ):  # search: the direction with the largest ||Delta||_F / sqrt(2K) at t = 1/2
                cands = [_unit(rng.normal(size=p)) for _ in range(48)]
                pts = line_points([(policies[i], thetas[i], jnp.asarray(c)) for c in cands])
                quad = np.einsum("cp,cpq,cq->c", np.asarray(cands), pts.fisher, np.asarray(cands))
                kinds.append("adversarial")
                dirs.append(cands[int(np.argmax(STEPS[0] ** 2 * quad / (2 * pts.kl[:, 0])))])
            else:
                kinds.append("random")
                dirs.append(_unit(rng.normal(size=p)))
        pts = line_points(
            [(pol, th, jnp.asarray(d)) for pol, th, d in zip(policies, thetas, dirs, strict=True)]
        )
    t = np.asarray(STEPS)
    out = []
    for i in range(n):
        fisher, k, d = pts.fisher[i], pts.kl[i], dirs[i]
        mu_all = np.linalg.eigvalsh(fisher)
        r_fisher = t * np.sqrt(d @ fisher @ d) / np.sqrt(2 * k)
        r_euclid = t / np.sqrt(2 * k / mu_all[0])
        inst = {
            "class": "log-linear" if i % 2 == 0 else "tanh",
            "shape": TANH_SHAPE,
            "direction": kinds[i],
            "steps": "2^-1..2^-14",
            "mu": mu_all[0],
        }
        premise = premise_below(0.0, mu_all[0], np.float64, p, mu_all[-1])
        out.append(
            limit_record(
                ID,
                kinds[i],
                t,
                r_fisher,
                inst | {"bound": "||Delta||_F <= sqrt(2K)"},
                premise=premise,
                extra={"max_finite_K_ratio": r_fisher.max()},
            )
        )
        out.append(
            limit_record(
                ID,
                kinds[i],
                t,
                r_euclid,
                inst | {"bound": "||Delta||_2 <= sqrt(2K/mu)"},
                premise=premise,
                extra={"max_finite_K_ratio": r_euclid.max()},
            )
        )
        out.append(
            rate_record(
                ID,
                k[-6:],
                np.abs(r_fisher - 1)[-6:],
                expected=0.5,
                slope_tol=0.15,
                at_least=True,
                instance=inst | {"fit": "| ||Delta||_F / sqrt(2K) - 1 | vs K"},
            )
        )
        if kinds[i] == "extremal" and len(out) < 10:
            wrong = t / np.sqrt(2 * k / mu_all[-1])
            out.append(
                limit_record(
                    ID,
                    "edge",
                    t,
                    wrong,
                    inst | {"premise_removed": "mu = lambda_max(F)"},
                    premise=False,
                )
            )
    return out

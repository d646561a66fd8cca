"""Lemma F.5 (quadratic expansion of the policy KL), arXiv 2511.08567 App. F.2.

Statement: $D_{KL}(\\pi_{\\theta+\\Delta}\\|\\pi_\\theta)=\\tfrac12\\Delta^\\top F(\\theta)\\Delta+O(\\|\\Delta\\|^3)$,
$F(\\theta)=-\\mathbb E_{\\pi_\\theta}[\\nabla^2\\log\\pi_\\theta]$.

Checks: tanh and log-linear policies, a fixed direction $d$ (random, or the Fisher's least / largest eigenvector),
$\\Delta=t\\,d$ with $t=2^{-1}\\dots2^{-14}$; the residual $|D_{KL}-\\tfrac12\\Delta^\\top F\\Delta|$ has log-log slope $\\ge3$
against $t$ (generically $\\approx 3$; the KL is computed by the cancellation-free form of `kl_categorical`, so the
residual stays above rounding down to $t=2^{-14}$). Premise removed: $F$ replaced by $2F$ — slope 2.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from proofs_numeric._gate1 import STEPS, TANH_SHAPE, line_points, loglinear_as_tanh, random_tanh
from proofs_numeric.harness import Record, VerifyConfig, fit_loglog_slope, jsonable, rate_record

ID = "F.5"
STATEMENT = "D_KL(pi_theta+Delta || pi_theta) = 1/2 Delta^T F(theta) Delta + O(||Delta||^3)"
KIND = "asymptotic"
N_FIT = 8


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("F.5")
    n = config.n(tiny=4, default=20)
    p = TANH_SHAPE[2]
    with jax.enable_x64(True):
        policies = [loglinear_as_tanh(rng) if i % 4 == 3 else random_tanh(rng) for i in range(n)]
        thetas = [jnp.asarray(rng.normal(size=p)) for _ in range(n)]
        dirs = [rng.normal(size=p) for _ in range(n)]
        dirs = [d / np.linalg.norm(d) for d in dirs]
        pts = line_points(
            [(a, b, jnp.asarray(c)) for a, b, c in zip(policies, thetas, dirs, strict=True)]
        )
    t = np.asarray(STEPS)
    out = []
    for i in range(n):
        quad = 0.5 * t**2 * (dirs[i] @ pts.fisher[i] @ dirs[i])
        res = np.abs(pts.kl[i] - quad)
        inst = {
            "class": "log-linear" if i % 4 == 3 else "tanh",
            "shape": TANH_SHAPE,
            "steps": "2^-1..2^-14",
        }
        rec = rate_record(
            ID, t[-N_FIT:], res[-N_FIT:], expected=3.0, slope_tol=0.25, at_least=True, instance=inst
        )
        out.append(
            dataclasses.replace(rec, extra={**rec.extra, "residual_over_t3": jsonable(res / t**3)})
        )
    wrong = fit_loglog_slope(
        t[-N_FIT:], np.abs(pts.kl[0] - t**2 * (dirs[0] @ pts.fisher[0] @ dirs[0]))[-N_FIT:]
    ).slope
    out.append(
        Record(
            ID,
            "paper",
            "edge",
            {"premise_removed": "F replaced by 2F", "relation": "3 <= slope"},
            3.0,
            wrong,
            "<=",
            False,
            wrong >= 3.0 - 0.25,
        )
    )
    return out

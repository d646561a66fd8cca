"""Lemma F.4 (local Pythagorean identity for the M-projection), arXiv 2511.08567 App. F.2.

Statement: with $f(\\theta)=D_{KL}(\\tilde q_\\beta\\|\\pi_\\theta)$, $\\theta^+\\in\\arg\\min f$, $\\Delta=\\theta^+-\\theta$ small,
$f(\\theta)-f(\\theta^+)=\\tfrac12\\Delta^\\top H_{\\tilde q}(\\theta)\\Delta+O(\\|\\Delta\\|^3)$,
$H_{\\tilde q}(\\theta)=-\\mathbb E_{\\tilde q}[\\nabla^2\\log\\pi_\\theta]$.

Checks (shared tanh sweep, $q=\\pi_\\theta$, $\\Delta\\to0$ driven by $\\beta\\to\\infty$): per instance, the residual
$|f(\\theta)-f(\\theta^+)-\\tfrac12\\Delta^\\top H_{\\tilde q}\\Delta|$ against $\\|\\Delta\\|$ has log-log slope $\\ge 3$ (fitted
on the smallest steps; generically $\\approx3$); residual$/\\|\\Delta\\|^3$ is kept in `extra`. $f(\\theta)-f(\\theta^+)$ is computed as
$\\mathbb E_{\\tilde q}[\\log\\pi_{\\theta^+}-\\log\\pi_\\theta]$ (no cancellation of two O(1) numbers).
Premise removed: replacing $H_{\\tilde q}$ by $2H_{\\tilde q}$ makes the residual quadratic (slope 2 < 3).
"""

import dataclasses

import jax
import numpy as np

from proofs_numeric._gate1 import BETAS, TANH_SHAPE, tanh_sweep
from proofs_numeric.harness import Record, VerifyConfig, fit_loglog_slope, jsonable, rate_record

ID = "F.4"
STATEMENT = "f(theta) - f(theta+) = 1/2 Delta^T H_q~(theta) Delta + O(||Delta||^3), f = D_KL(q~_beta || pi_theta)"
KIND = "asymptotic"
#: Points of the β sweep (largest β) used for the rate fits.
N_FIT = 5


def residuals(
    config: VerifyConfig, h_scale: float = 1.0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Kinds, ‖Δ‖ `[n, len(BETAS)]` and |f(θ)-f(θ+) - h_scale·½ΔᵀHΔ| from the shared sweep."""
    sw = tanh_sweep(config)
    pts = sw.points
    hess_q = -np.einsum("nba,nbapq->nbpq", pts.q, pts.hessians)
    quad = 0.5 * np.einsum("nbp,nbpq,nbq->nb", pts.delta, hess_q, pts.delta)
    return sw.kinds, np.linalg.norm(pts.delta, axis=-1), np.abs(pts.f_drop - h_scale * quad)


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        kinds, step, res = residuals(config)
        _, _, res_wrong = residuals(config, h_scale=2.0)
    out = []
    for i, kind in enumerate(kinds):
        inst = {
            "class": "tanh",
            "shape": TANH_SHAPE,
            "betas": BETAS,
            "q": "pi_theta",
            "reward": kind,
        }
        rec = rate_record(
            ID,
            step[i][-N_FIT:],
            res[i][-N_FIT:],
            expected=3.0,
            slope_tol=0.25,
            at_least=True,
            instance=inst,
        )
        c = res[i][-N_FIT:] / step[i][-N_FIT:] ** 3
        out.append(
            dataclasses.replace(rec, extra={**rec.extra, "residual_over_step3": jsonable(c)})
        )
    wrong = fit_loglog_slope(step[0][-4:], res_wrong[0][-4:]).slope
    out.append(
        Record(
            ID,
            "paper",
            "edge",
            {"premise_removed": "H_q~ replaced by 2 H_q~", "relation": "3 <= slope"},
            3.0,
            wrong,
            "<=",
            False,
            wrong >= 3.0 - 0.25,
        )
    )
    return out

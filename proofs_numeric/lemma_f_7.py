"""Lemma F.7 (the cubic remainder is o(f)), arXiv 2511.08567 App. F.2.

Statement: if $H_{\\tilde q}(\\theta)\\succeq mI$ on the update subspace, then for small $\\|\\Delta\\|$,
$\\|\\Delta\\|^2\\le\\frac2m(f(\\theta)-f(\\theta^+))$ to leading order, and $O(\\|\\Delta\\|^3)=o(f(\\theta))$.

Checks (shared tanh sweep, $q=\\pi_\\theta$, $\\beta\\to\\infty$): the ratio $m\\|\\Delta\\|^2/(2(f(\\theta)-f(\\theta^+)))$ with
$m=\\lambda_{min}(H_{\\tilde q}(\\theta))$ has limit $\\le1$ (Richardson); it is 1 for the "aligned" rewards, where $\\Delta$
follows the least-curvature direction (extremal). Rate: the cubic remainder of Lemma F.4 divided by
$f(\\theta)-f(\\theta^+)$ vanishes like $\\sqrt\\kappa$ (slope $\\ge0.5$ against $\\kappa=f(\\theta)$).
Premise removed: $m$ replaced by $\\lambda_{max}(H_{\\tilde q})$ (so $H\\succeq mI$ fails): the limit exceeds 1.
"""

import jax
import numpy as np

from proofs_numeric._gate1 import BETAS, TANH_SHAPE, limit_record, tanh_sweep
from proofs_numeric.harness import Record, VerifyConfig, premise_below, rate_record
from proofs_numeric.lemma_f_4 import residuals

ID = "F.7"
STATEMENT = "||Delta||^2 <= (2/m)(f(theta) - f(theta+)) to leading order if H_q~ >= m I, and O(||Delta||^3) = o(f(theta))"
KIND = "asymptotic"


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        sw = tanh_sweep(config)
        _, _, cubic = residuals(config)
    pts = sw.points
    hess_q = -np.einsum("nba,nbapq->nbpq", pts.q, pts.hessians)
    ev = np.linalg.eigvalsh(hess_q)
    sq = np.sum(pts.delta**2, axis=-1)
    x = 1 / np.asarray(BETAS)
    out = []
    for i, kind in enumerate(sw.kinds):
        m = ev[i, :, 0]
        ratio = m * sq[i] / (2 * pts.f_drop[i])
        mu_ok = [
            premise_below(0.0, mj, np.float64, TANH_SHAPE[2], np.abs(ej).max())
            for mj, ej in zip(m[-4:], ev[i, -4:], strict=True)
        ]
        premise = bool(all(mu_ok) and pts.ok[i][-4:].all())
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
                "extremal" if kind == "aligned" else "random",
                x,
                ratio,
                inst,
                premise=premise,
                extra={"m": m},
            )
        )
        out.append(
            rate_record(
                ID,
                pts.kappa[i][-4:],
                (cubic[i] / pts.f_drop[i])[-4:],
                expected=0.5,
                slope_tol=0.15,
                at_least=True,
                instance=inst | {"fit": "cubic remainder / f vs kappa"},
            )
        )
    wrong = ev[0, :, -1] * sq[0] / (2 * pts.f_drop[0])
    out.append(
        limit_record(
            ID, "edge", x, wrong, {"premise_removed": "m = lambda_max(H_q~)"}, premise=False
        )
    )
    return out

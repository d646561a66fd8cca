"""Cor F.8 (KL budget), arXiv 2511.08567 App. F.2.

Statement: if $D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)\\le K$ then $\\tfrac12\\Delta^\\top F(\\theta)\\Delta\\le K(1+o(1))$.

Checks (shared tanh sweep: $\\Delta=\\theta^+-\\theta$ the M-projection step, $\\beta\\to\\infty$), with the tightest budget
$K=D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)$: the ratio $\\tfrac12\\Delta^\\top F\\Delta/K$ has limit $\\le1$ (it is exactly 1 in the
limit: every instance is extremal), and $|\\mathrm{ratio}-1|=O(\\sqrt K)$ (slope $\\ge0.5$ against $K$). The largest
finite-$K$ ratio (above 1 on some instances: the $o(1)$ is needed) is kept in `extra`.
Premise removed: a budget $K$ below the step's KL ($K=\\tfrac12D_{KL}$): the bound fails.
"""

import jax
import numpy as np

from proofs_numeric._gate1 import BETAS, TANH_SHAPE, limit_record, tanh_sweep
from proofs_numeric.harness import Record, VerifyConfig, rate_record

ID = "F.8"
STATEMENT = "D_KL(pi_theta+ || pi_theta) <= K implies 1/2 Delta^T F(theta) Delta <= K (1 + o(1))"
KIND = "asymptotic"


def quad_over_kl(config: VerifyConfig) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Kinds, K = D(π+‖π) and ½ΔᵀFΔ / K on the shared sweep, `[n, len(BETAS)]`."""
    sw = tanh_sweep(config)
    pts = sw.points
    fisher = np.einsum("nbap,nba,nbaq->nbpq", pts.scores, pts.pi, pts.scores)
    quad = 0.5 * np.einsum("nbp,nbpq,nbq->nb", pts.delta, fisher, pts.delta)
    return sw.kinds, pts.step_kl, quad / pts.step_kl


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        kinds, budget, ratio = quad_over_kl(config)
        ok = tanh_sweep(config).points.ok
    x = 1 / np.asarray(BETAS)
    out = []
    for i, kind in enumerate(kinds):
        inst = {
            "class": "tanh",
            "shape": TANH_SHAPE,
            "betas": BETAS,
            "reward": kind,
            "K": "D(pi+||pi)",
        }
        out.append(
            limit_record(
                ID,
                "extremal",
                x,
                ratio[i],
                inst,
                premise=bool(ok[i][-4:].all()),
                extra={"max_finite_K_ratio": ratio[i].max()},
            )
        )
        out.append(
            rate_record(
                ID,
                budget[i][-4:],
                np.abs(ratio[i] - 1)[-4:],
                expected=0.5,
                slope_tol=0.15,
                at_least=True,
                instance=inst | {"fit": "|ratio - 1| vs K"},
            )
        )
    out.append(
        limit_record(
            ID, "edge", x, 2 * ratio[0], {"premise_removed": "K = D(pi+||pi) / 2"}, premise=False
        )
    )
    return out

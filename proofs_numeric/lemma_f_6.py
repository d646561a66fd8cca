"""Lemma F.6 (Hessian–Fisher proximity), arXiv 2511.08567 App. F.2.

Statement: if $\\|\\nabla^2\\log\\pi_\\theta(y)\\|_{op}\\le L$ for all $y$, then
$\\|H_{\\tilde q}(\\theta)-F(\\theta)\\|_{op}\\le2L\\,\\mathrm{TV}(\\tilde q,\\pi_\\theta)\\le L\\sqrt{2D_{KL}(\\tilde q\\|\\pi_\\theta)}$.

Both inequalities are exact ($H_{\\tilde q}-F=-\\sum_y(\\tilde q-\\pi_\\theta)(y)\\nabla^2\\log\\pi_\\theta(y)$, then Pinsker), checked
with $L=\\max_y\\|\\nabla^2\\log\\pi_\\theta(y)\\|_{op}$ at $\\theta$ on the tanh class (where $\\nabla^2\\log\\pi$ depends on $y$):
- random: Gibbs tilts of $\\pi_\\theta$ ($\\beta\\in\\{0.5,2,10\\}$) and arbitrary targets;
- adversarial: the exact maximiser of $\\|H-F\\|/(2L\\,\\mathrm{TV})$ over targets at fixed $\\theta$ (`worst_target`);
- extremal: a two-outcome quadratic-logit policy with $\\nabla^2\\log\\pi(y)=\\pm L$ and $\\tilde q=(\\tfrac12+\\delta,\\tfrac12-\\delta)$,
  where the first inequality is an equality and the second has ratio $\\to1$ as $\\delta\\to0$;
- premise removed: $L/2$ in place of $L$ on the extremal case: the first inequality fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import rel_entr

from proofs_numeric._gate1 import TANH_SHAPE, random_tanh, sweep_points
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate.kl import gibbs_tilt
from threegate.toy.policy import QuadraticPolicy, logprob_hessians

ID = "F.6"
STATEMENT = "||H_q~(theta) - F(theta)||_op <= 2 L TV(q~, pi_theta) <= L sqrt(2 D_KL(q~ || pi_theta)), L = max_y ||grad^2 log pi(y)||_op"
KIND = "exact"


def _op(m: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvalsh(m))))


def terms(
    hess: np.ndarray, pi: np.ndarray, q: np.ndarray, lip: float
) -> tuple[float, float, float]:
    """(‖H_q - F‖_op, 2 L TV, L sqrt(2 KL(q‖π))) from per-outcome Hessians `[a, p, p]`."""
    diff = -np.einsum("a,apq->pq", q - pi, hess)
    kl = float(np.sum(rel_entr(q, pi)))
    return _op(diff), 2 * lip * 0.5 * float(np.abs(q - pi).sum()), lip * np.sqrt(2 * kl)


def worst_target(hess: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """The target maximising $\\|H_q-F\\|/(2L\\,\\mathrm{TV})$ at fixed $\\theta$, exactly.

    With $w=q-\\pi$ the ratio is $\\|\\sum_y w_y\\nabla^2\\log\\pi(y)\\|/(L\\|w\\|_1)$: scale-free and convex in $w$ on
    $\\{\\sum w=0,\\|w\\|_1\\le2\\}$, whose vertices are $e_i-e_j$; so the maximum is $\\max_{i\\ne j}\\|M_i-M_j\\|/(2L)$,
    attained by $q=\\pi+t(e_i-e_j)$ for any feasible $t>0$.
    """
    a = hess.shape[0]
    best, pair = -1.0, (0, 1)
    for i in range(a):
        for j in range(a):
            if i != j and (v := _op(hess[i] - hess[j])) > best:
                best, pair = v, (i, j)
    q = pi.copy()
    t = 0.5 * pi[pair[1]]
    q[pair[0]] += t
    q[pair[1]] -= t
    return q


def _records(kind, inst, hess, pi, q, lip, premise=True) -> list[Record]:
    a, b, c = terms(hess, pi, q, lip)
    size = hess.shape[0]
    return [
        Record(
            ID,
            "paper",
            kind,
            inst | {"inequality": "||H - F|| <= 2 L TV"},
            a,
            b,
            "<=",
            premise,
            holds_le(a, b, np.float64, size, scale=lip),
        ),
        Record(
            ID,
            "paper",
            kind,
            inst | {"inequality": "2 L TV <= L sqrt(2 KL)"},
            b,
            c,
            "<=",
            premise,
            holds_le(b, c, np.float64, size, scale=lip),
        ),
    ]


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("F.6")
    n = config.n(tiny=3, default=12)
    a, _, p = TANH_SHAPE
    with jax.enable_x64(True):
        items, meta = [], []
        for i in range(n):
            pol, th = random_tanh(rng), jnp.asarray(rng.normal(size=p))
            if i % 4 == 3:
                tgt, what = jnp.asarray(rng.normal(size=a) * 2), "arbitrary target"
            else:
                beta = (0.5, 2.0, 10.0)[i % 4]
                tgt, what = (
                    gibbs_tilt(pol.logits(th), jnp.asarray(rng.normal(size=a)), beta),
                    f"tilt beta={beta}",
                )
            items.append((pol, th, tgt))
            meta.append({"class": "tanh", "shape": TANH_SHAPE, "target": what})
        pts = sweep_points(items)
        quad = QuadraticPolicy(jnp.zeros((2, 1)), jnp.asarray([[[1.5]], [[-1.5]]]))
        hess_x = np.asarray(jax.jit(logprob_hessians)(quad, jnp.zeros(1)))
    out = []
    for i in range(n):
        hess, pi = pts.hessians[i], pts.pi[i]
        lip = max(_op(h) for h in hess)
        out += _records("random", meta[i], hess, pi, pts.q[i], lip)
        if i < config.n(tiny=1, default=6):
            q_adv = worst_target(hess, pi)
            out += _records(
                "adversarial",
                meta[i] | {"target": "exact worst (vertex e_i - e_j)"},
                hess,
                pi,
                q_adv,
                lip,
            )
    pi_x = np.array([0.5, 0.5])
    lip_x = max(_op(h) for h in hess_x)
    for delta in (1e-1, 1e-2, 1e-3):
        q_x = np.array([0.5 + delta, 0.5 - delta])
        inst = {"class": "quadratic logits, a=2, p=1, curvature +-1.5", "delta": delta}
        out += _records("extremal", inst, hess_x, pi_x, q_x, lip_x)
    out += _records(
        "edge",
        inst | {"premise_removed": "L/2 used for L"},
        hess_x,
        pi_x,
        q_x,
        lip_x / 2,
        premise=False,
    )[:1]
    return out

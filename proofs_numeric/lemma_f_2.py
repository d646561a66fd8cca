"""Lemma F.2 (Gibbs variational principle), arXiv 2511.08567 App. F.2.

Statement: for $\\beta>0$ and full-support $q$, $\\max_{\\pi\\ll q}\\{\\mathbb E_\\pi[R]-\\beta D_{KL}(\\pi\\|q)\\}$ is uniquely attained at
$\\tilde q_\\beta=q\\,e^{R/\\beta}/\\mathbb E_q[e^{R/\\beta}]$.

Checks, with $J(\\pi)=\\mathbb E_\\pi R-\\beta D_{KL}(\\pi\\|q)$ and $J(\\tilde q_\\beta)=\\beta\\log\\mathbb E_q e^{R/\\beta}$:
- the exact identity $J(\\tilde q_\\beta)-J(\\pi)=\\beta D_{KL}(\\pi\\|\\tilde q_\\beta)$ ("=="), which gives both maximality and
  uniqueness ($D_{KL}=0$ iff $\\pi=\\tilde q_\\beta$);
- maximality against 64 candidates per instance (random, sparse $\\pi\\ll q$, and perturbations of $\\tilde q_\\beta$ as small
  as 1e-6 — the adversarial ones), recorded as $e^{J(\\pi)/\\beta}\\le e^{J(\\tilde q)/\\beta}=\\mathbb E_q e^{R/\\beta}$, whose
  ratio is $e^{-D_{KL}(\\pi\\|\\tilde q)}$;
- premise removed: $\\beta<0$, where the stationary point $\\tilde q_\\beta$ is a minimum and a vertex beats it.
Support sizes 5, 20, 50; $\\beta\\in\\{0.1,1,10\\}$.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp, rel_entr

from proofs_numeric.harness import Record, VerifyConfig, holds_eq, holds_le
from threegate.kl import gibbs_tilt

ID = "F.2"
STATEMENT = "q~_beta = q exp(R/beta) / E_q exp(R/beta) is the unique maximiser of E_pi R - beta KL(pi || q) over pi << q"
KIND = "exact"


def objective(pi: np.ndarray, q: np.ndarray, reward: np.ndarray, beta: float) -> float:
    """$J(\\pi)=\\mathbb E_\\pi R-\\beta D_{KL}(\\pi\\|q)$ (float64, exact at zeros of $\\pi$)."""
    return float(pi @ reward - beta * rel_entr(pi, q).sum())


def _candidates(rng: np.random.Generator, tilt: np.ndarray, k: int) -> list[tuple[str, np.ndarray]]:
    a = tilt.size
    out = []
    for j in range(k):
        if j % 4 == 0:
            z = rng.normal(size=a) * 2
        elif j % 4 == 1:  # sparse: pi << q with zeros
            z = np.where(rng.uniform(size=a) < 0.5, -np.inf, rng.normal(size=a))
            z[rng.integers(a)] = 0.0
        else:  # adversarial: close to the tilt
            z = np.log(tilt) + rng.normal(size=a) * 10.0 ** -rng.integers(1, 7)
        p = np.exp(z - np.max(z))
        out.append(("adversarial" if j % 4 >= 2 else "random", p / p.sum()))
    return out


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("F.2")
    n = config.n(tiny=3, default=24)
    k = config.n(tiny=8, default=64)
    out = []
    with jax.enable_x64(True):
        for i in range(n):
            a = (5, 20, 50)[i % 3]
            beta = (0.1, 1.0, 10.0)[(i // 3) % 3]
            q_logits, reward = rng.normal(size=a), rng.normal(size=a)
            q = np.exp(q_logits - logsumexp(q_logits))
            tilt = np.exp(np.asarray(gibbs_tilt(jnp.asarray(q_logits), jnp.asarray(reward), beta)))
            j_star = float(beta * logsumexp(reward / beta, b=q))
            inst = {"a": a, "beta": beta}
            cands = _candidates(rng, tilt, k)
            pi0 = cands[0][1]  # a random candidate: the identity at a well-separated point
            j0, kl0 = objective(pi0, q, reward, beta), float(rel_entr(pi0, tilt).sum())
            out.append(
                Record(
                    ID,
                    "paper",
                    "identity",
                    inst | {"statement": "J(q~) - J(pi) = beta KL(pi||q~)"},
                    j_star - j0,
                    beta * kl0,
                    "==",
                    True,
                    holds_eq(j_star - j0, beta * kl0, np.float64, a, scale=abs(j_star) + 1),
                )
            )
            kind, pi = max(cands, key=lambda c: objective(c[1], q, reward, beta))
            j_pi = objective(pi, q, reward, beta)
            kl = float(rel_entr(pi, tilt).sum())
            # both sides divided by E_q e^{R/beta}
            lhs, rhs = np.exp(j_pi / beta - j_star / beta), 1.0
            out.append(
                Record(
                    ID,
                    "paper",
                    kind,
                    inst
                    | {
                        "statement": "exp(J(pi)/beta) <= E_q exp(R/beta)",
                        "of": k,
                        "normalised_by": "E_q exp(R/beta)",
                    },
                    lhs,
                    rhs,
                    "<=",
                    True,
                    holds_le(lhs, rhs, np.float64, a),
                    extra={"kl_to_tilt": kl, "tv_to_tilt": 0.5 * float(np.abs(pi - tilt).sum())},
                )
            )
        a, beta = 5, -1.0
        q_logits, reward = rng.normal(size=a), rng.normal(size=a)
        q = np.exp(q_logits - logsumexp(q_logits))
        stat = q * np.exp(reward / beta)
        stat /= stat.sum()
        vertex = np.eye(a)[int(np.argmax(reward - beta * np.log(q)))]
        out.append(
            Record(
                ID,
                "paper",
                "edge",
                {"a": a, "beta": beta, "premise_removed": "beta < 0"},
                objective(vertex, q, reward, beta),
                objective(stat, q, reward, beta),
                "<=",
                False,
                objective(vertex, q, reward, beta) <= objective(stat, q, reward, beta),
            )
        )
    return out

"""Lemma F.9 (implicit KL leash from ratio clipping, β = 0), arXiv 2511.08567 App. F.2.

Statement: if clipping enforces $r_t=\\pi_{\\theta^+}(y_t|\\cdot)/\\pi_\\theta(y_t|\\cdot)\\in[1-\\varepsilon,1+\\varepsilon]$ on the batch, then
$\\hat D_{KL}(\\pi_{\\theta^+}\\|\\pi_\\theta)\\le\\hat{\\mathbb E}[T]\\max\\{-\\log(1-\\varepsilon),\\log(1+\\varepsilon)\\}$, and $O(\\varepsilon^2)$ in the
small-step regime with mean-zero advantages.

Checks on the toy autoregressive policy of `threegate.toy.autoregressive` ($T=6$, $N=5$):
- random: $\\pi^+=\\pi(1+\\varepsilon c)$ with mean-zero $c$, $|c|\\le1$ (every ratio in the band), both the exact
  expectation and the Monte-Carlo $\\hat{\\mathbb E}_{\\pi^+}[\\sum_t\\log r_t]$ (2048 sequences; given the band on the batch
  this is a deterministic inequality, so no CLT slack is needed);
- extremal: a pair whose in-band tokens all have $r=1+\\varepsilon$ and whose out-of-band tokens have $\\pi^+$-mass
  $10^{-13}$ (never sampled): the batch premise holds and the MC ratio is $\\log(1+\\varepsilon)/(-\\log(1-\\varepsilon))\\to1$;
- rate: exact KL of the mean-zero family against $\\varepsilon=2^{-2}\\dots2^{-10}$, slope 2;
- premise removed: an unrelated $\\pi^+$ (ratios far outside the band): the bound fails.
"""

import jax
import jax.numpy as jnp
import numpy as np

from proofs_numeric.harness import Record, VerifyConfig, holds_le, rate_record
from threegate.toy.autoregressive import (
    ar_sample,
    clipped_ratio_check,
    ratio_band_perturbation,
)

ID = "F.9"
STATEMENT = "r_t in [1-eps, 1+eps] on the batch implies D^_KL(pi+ || pi) <= E^[T] max(-log(1-eps), log(1+eps)); O(eps^2) for small mean-zero steps"
KIND = "exact"
T_LEN, N_TOK, N_SEQ = 6, 5, 2048


def _mc(key, p_logits, q_logits, eps):
    return clipped_ratio_check(p_logits, q_logits, eps, ar_sample(key, p_logits, N_SEQ))


_mc_jit = jax.jit(_mc)
_exact_jit = jax.jit(lambda p, q, e: clipped_ratio_check(p, q, e))


def extremal_pair(
    rng: np.random.Generator, eps: float, mass: float = 1e-13
) -> tuple[np.ndarray, np.ndarray]:
    """(log π⁺, log π): tokens 0..N-2 carry ratio exactly 1+ε, token N-1 keeps π⁺-mass `mass` (ratio ≪ 1-ε)."""
    w = rng.uniform(0.5, 1.5, size=(T_LEN, N_TOK, N_TOK - 1))
    w /= w.sum(axis=-1, keepdims=True)
    pi_s = (1 - mass) / (1 + eps)
    pi = np.concatenate([w * pi_s, np.full((T_LEN, N_TOK, 1), 1 - pi_s)], axis=-1)
    plus = np.concatenate([w * pi_s * (1 + eps), np.full((T_LEN, N_TOK, 1), mass)], axis=-1)
    return np.log(plus), np.log(pi)


def _record(kind, inst, chk, premise=None):
    lhs, rhs = float(chk.lhs), float(chk.rhs)
    prem = bool(chk.premise) if premise is None else premise
    return Record(
        ID, "paper", kind, inst, lhs, rhs, "<=", prem, holds_le(lhs, rhs, np.float64, T_LEN * N_TOK)
    )


def run(config: VerifyConfig) -> list[Record]:
    rng = config.rng("F.9")
    key = config.key("F.9")
    n = config.n(tiny=3, default=12)
    out = []
    with jax.enable_x64(True):
        for i in range(n):
            eps = (0.3, 0.1, 0.03)[i % 3]
            base = jnp.asarray(rng.normal(size=(T_LEN, N_TOK, N_TOK)))
            plus = ratio_band_perturbation(base, jnp.asarray(rng.normal(size=base.shape)), eps)
            inst = {"T": T_LEN, "N": N_TOK, "eps": eps, "pair": "pi (1 + eps c), mean-zero c"}
            out.append(_record("random", inst | {"estimate": "exact"}, _exact_jit(plus, base, eps)))
            key, sub = jax.random.split(key)
            out.append(
                _record(
                    "random", inst | {"estimate": f"MC n={N_SEQ}"}, _mc_jit(sub, plus, base, eps)
                )
            )
        for eps in (0.1, 0.03, 0.01):
            plus, pi = map(jnp.asarray, extremal_pair(rng, eps))
            key, sub = jax.random.split(key)
            inst = {
                "T": T_LEN,
                "N": N_TOK,
                "eps": eps,
                "pair": "ratio 1+eps on sampled tokens",
                "estimate": "MC",
            }
            out.append(_record("extremal", inst, _mc_jit(sub, plus, pi, eps)))
        base = jnp.asarray(rng.normal(size=(T_LEN, N_TOK, N_TOK)))
        adv = jnp.asarray(rng.normal(size=base.shape))
        epss = 2.0 ** -np.arange(2, 11)
        kls = [float(_exact_jit(ratio_band_perturbation(base, adv, e), base, e).lhs) for e in epss]
        out.append(
            rate_record(
                ID,
                epss,
                kls,
                expected=2.0,
                slope_tol=0.1,
                instance={"T": T_LEN, "N": N_TOK, "fit": "exact KL vs eps"},
            )
        )
        other = jnp.asarray(rng.normal(size=base.shape) * 2)
        eps = 0.05
        chk = _exact_jit(other, base, eps)
        out.append(
            _record(
                "edge",
                {"T": T_LEN, "N": N_TOK, "eps": eps, "premise_removed": "unrelated pi+"},
                chk,
            )
        )
    return out

"""Thm 3.3 (constrained subspace rotation via Wedin's sin-Θ theorem), arXiv 2511.08567 eq. (8).

Statement: with $\\gamma_k=\\sigma_k(W_0)-\\sigma_{k+1}(W_0)>0$,
$\\max(\\|\\sin\\Theta(U_k(W_0),U_k(W_+))\\|_2,\\|\\sin\\Theta(V_k(W_0),V_k(W_+))\\|_2)\\le\\|\\Delta W\\|_2/\\gamma_k
\\le\\sqrt{2\\delta_W/\\mu_W}/\\gamma_k$.

Verdict: violated as stated. The unperturbed gap with constant 1 is only first-order correct: on the 2×2 family
$W_0=\\mathrm{diag}(1,0)$, $\\Delta W=[[-a,b],[b,a]]$ the worst ratio is 1.054 (ε=0.3), 1.0051 (0.1), 1.00045 (0.03), an
excess $\\|\\sin\\Theta\\|_2-\\varepsilon\\approx\\varepsilon^3/2$; and for $\\|\\Delta W\\|_2/\\gamma_k\\in(\\tfrac12,1)$ swapping
$\\sigma_k,\\sigma_{k+1}$ gives $\\|\\sin\\Theta\\|_2=1$ (ratio up to 2; the KL chain, whose leash is $\\ge\\|\\Delta W\\|_F$,
up to $\\sqrt2$). Corrected (rigorous Wedin, residuals $\\le\\varepsilon$, $\\delta\\ge\\gamma_k-\\varepsilon$):
$\\|\\sin\\Theta\\|_2\\le\\varepsilon/(\\gamma_k-\\varepsilon)$ for $\\varepsilon=\\|\\Delta W\\|_2<\\gamma_k$, and with the leash
$\\ell=\\sqrt{2\\delta_W/\\mu_W}$ in place of ε ($x/(\\gamma-x)$ is increasing): both hold on every instance.

Records: random / extremal / adversarial instances of `_wedin` (paper and corrected forms, lhs from
`threegate.spectral.wedin_check`), the KL-budget chain with `leash_check`, rates (first-order slope 1 of
$\\|\\sin\\Theta\\|_2$ in ε; slope 3 of the 2×2 excess), and the γ=0 premise-removed edge.
"""

import jax
import numpy as np

from proofs_numeric import _wedin
from proofs_numeric._wedin import chain_records, excess_rate, first_order_rate
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate.spectral import wedin_check

ID = "3.3"
STATEMENT = (
    "max(||sin Theta_U||_2, ||sin Theta_V||_2) <= ||dW||_2/gamma_k <= sqrt(2 delta_W/mu_W)/gamma_k "
    "(Wedin, unperturbed gap, eq. 8)"
)
STATEMENT_CORRECTED = (
    "max ||sin Theta||_2 <= ||dW||_2/(gamma_k - ||dW||_2) <= l/(gamma_k - l), l = sqrt(2 delta_W/mu_W), "
    "when ||dW||_2 < gamma_k"
)
KIND = "exact"


def _pair_records(id: str, inst: _wedin.Instance, extra_info: dict | None = None) -> list[Record]:
    w1 = inst.w0 + inst.dw
    size = max(inst.w0.shape)
    info = inst.info | {"shape": list(inst.w0.shape), "k": inst.k} | (extra_info or {})
    out = []
    for form, lib_form in (("paper", "paper"), ("corrected", "rigorous")):
        chk = wedin_check(inst.w0, w1, inst.k, form=lib_form)
        lhs, rhs, premise = float(chk.lhs), float(chk.rhs), bool(chk.premise)
        if inst.kind == "edge":  # gamma = 0: no bound C*||dW||_2 holds; show it with C = 1
            rhs, premise = float(np.linalg.norm(inst.dw, 2)), False
        out.append(
            Record(
                id,
                form,
                inst.kind,
                info,
                lhs,
                rhs,
                "<=",
                premise,
                holds_le(lhs, rhs, np.float64, size),
            )
        )
    return out


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        rng = config.rng(f"{ID}/chain")
        out: list[Record] = []
        chained = 0
        for inst in _wedin.wedin_instances(config, f"{ID}/instances"):
            pair = _pair_records(ID, inst)
            out += pair
            if _wedin.chainable(inst, chained, config):
                out += chain_records(ID, inst, pair[0].lhs, rng)
                chained += inst.kind == "random"
        out.append(excess_rate(ID, out))
        out.append(first_order_rate(ID, config))
    return out

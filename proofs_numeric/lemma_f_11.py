"""Lemma F.11 (Wedin's sin-Θ theorem), arXiv 2511.08567 App. F.3.

Statement: for $W_+=W_0+\\Delta W$ and any $k$ with $\\gamma_k=\\sigma_k(W_0)-\\sigma_{k+1}(W_0)>0$,
$\\|\\sin\\Theta(U_k(W_0),U_k(W_+))\\|_2\\le\\|\\Delta W\\|_2/\\gamma_k$, and the same for $V_k$.

Verdict: violated as stated, for the same reason as Thm 3.3 (unperturbed gap, constant 1): the 2×2 family exceeds it by
$\\approx\\varepsilon^3/2$ and a $\\sigma_k\\leftrightarrow\\sigma_{k+1}$ swap at $\\|\\Delta W\\|_2/\\gamma_k\\in(\\tfrac12,1)$ gives
$\\|\\sin\\Theta\\|_2=1$. Corrected (rigorous Wedin): each side $\\le\\|\\Delta W\\|_2/(\\gamma_k-\\|\\Delta W\\|_2)$ when
$\\|\\Delta W\\|_2<\\gamma_k$; it holds on every instance.

Records: each instance of `_wedin` gives one record per side (U and V; `side` in the instance) and form; lhs is
`threegate.spectral.sin_theta` of the `top_k` bases, rhs and premise from `wedin_check`. Rates: slope 1 in ε,
slope 3 of the 2×2 excess; plus the γ=0 premise-removed edge.
"""

import jax
import numpy as np

from proofs_numeric import _wedin
from proofs_numeric._wedin import excess_rate, first_order_rate
from proofs_numeric.harness import Record, VerifyConfig, holds_le
from threegate.spectral import sin_theta, top_k, wedin_check

ID = "F.11"
STATEMENT = (
    "||sin Theta(U_k(W0), U_k(W+))||_2 <= ||dW||_2/gamma_k, same for V_k (Wedin, unperturbed gap)"
)
STATEMENT_CORRECTED = "||sin Theta(U_k(W0), U_k(W+))||_2 <= ||dW||_2/(gamma_k - ||dW||_2), same for V_k, when ||dW||_2 < gamma_k"
KIND = "exact"


def _side_records(inst: _wedin.Instance) -> list[Record]:
    w1 = inst.w0 + inst.dw
    size = max(inst.w0.shape)
    t0, t1 = top_k(inst.w0, inst.k), top_k(w1, inst.k)
    sides = {"U": float(sin_theta(t0.u, t1.u)), "V": float(sin_theta(t0.v, t1.v))}
    out = []
    for form, lib_form in (("paper", "paper"), ("corrected", "rigorous")):
        chk = wedin_check(inst.w0, w1, inst.k, form=lib_form)
        rhs, premise = float(chk.rhs), bool(chk.premise)
        if inst.kind == "edge":  # gamma = 0: no bound C*||dW||_2 holds; show it with C = 1
            rhs, premise = float(np.linalg.norm(inst.dw, 2)), False
        for side, lhs in sides.items():
            info = inst.info | {"shape": list(inst.w0.shape), "k": inst.k, "side": side}
            ok = holds_le(lhs, rhs, np.float64, size)
            out.append(Record(ID, form, inst.kind, info, lhs, rhs, "<=", premise, ok))
    return out


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        out: list[Record] = []
        for inst in _wedin.wedin_instances(config, f"{ID}/instances"):
            out += _side_records(inst)
        # the 2x2 family is symmetric (U = V): fit the excess on one side
        out.append(excess_rate(ID, [r for r in out if r.instance.get("side") == "U"]))
        out.append(first_order_rate(ID, config))
    return out

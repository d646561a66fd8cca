"""Cor F.13 (projection stability), arXiv 2511.08567 App. F.3.

Statement: with $\\gamma_k>0$, $\\|U_k(W_0)U_k(W_0)^\\top-U_k(W_+)U_k(W_+)^\\top\\|_2=\\|\\sin\\Theta(U_k(W_0),U_k(W_+))\\|_2
\\le\\sqrt{2\\delta_W/\\mu_W}/\\gamma_k$, and the same for $V_k$.

Verdict: the projector identity is exact (equal-dimension subspaces; agreement to ~1e-15 in float64 here); the bound is
violated as stated, with the caveat of Thm 3.3. The leash $\\ell=\\sqrt{2\\delta_W/\\mu_W}\\ge\\|\\Delta W\\|_F\\ge\\|\\Delta W\\|_2$
absorbs the 2×2 family's $O(\\varepsilon^3)$ excess, but not the $\\sigma_k\\leftrightarrow\\sigma_{k+1}$ swap: with
$S_W=\\mu I$ (tight budget, $\\ell=\\|\\Delta W\\|_F=\\sqrt2\\varepsilon$) and $\\varepsilon/\\gamma_k\\in(\\tfrac12,1/\\sqrt2)$ the
projector distance is 1 while the bound is $<1$ (ratio up to $\\sqrt2$). Corrected: $\\ell/(\\gamma_k-\\ell)$ for
$\\ell<\\gamma_k$, which holds on every instance.

Records: per `_wedin` instance, the identity (relation "==", U and V, from `projector_check`) and the bound in both
forms (KL budget from `_wedin.chain_curvature`, leash from `leash_check`); slope 1 of the distance in ε. Premise
removed: $\\gamma_k=0$ ($W_0=I_2$), where a $10^{-8}$ perturbation turns the projector by 22.5°, far beyond the
leash itself (no bound $C\\ell$ holds).
"""

import jax
import numpy as np

from proofs_numeric import _wedin
from proofs_numeric._wedin import chain_records, first_order_rate
from proofs_numeric.harness import Record, VerifyConfig, holds_eq, holds_le
from threegate.spectral import leash_check, projector_check

ID = "F.13"
STATEMENT = "||U0 U0^T - U+ U+^T||_2 = ||sin Theta(U0, U+)||_2 <= sqrt(2 delta_W/mu_W)/gamma_k (and for V_k)"
STATEMENT_CORRECTED = "||U0 U0^T - U+ U+^T||_2 = ||sin Theta||_2 <= l/(gamma_k - l), l = sqrt(2 delta_W/mu_W) < gamma_k"
KIND = "exact"


def run(config: VerifyConfig) -> list[Record]:
    with jax.enable_x64(True):
        rng = config.rng(f"{ID}/chain")
        out: list[Record] = []
        for inst in _wedin.wedin_instances(config, f"{ID}/instances", search=False):
            chk = projector_check(inst.w0, inst.w0 + inst.dw, inst.k)
            size = max(inst.w0.shape)
            for j, side in enumerate(("U", "V")):
                lhs, rhs = float(chk.lhs[j]), float(chk.rhs[j])
                info = inst.info | {"shape": list(inst.w0.shape), "k": inst.k, "side": side}
                info |= {"identity": "||P0 - P+||_2 = ||sin Theta||_2"}
                ok = holds_eq(lhs, rhs, np.float64, size)
                out.append(Record(ID, "paper", "identity", info, lhs, rhs, "==", True, ok))
                out.append(Record(ID, "corrected", "identity", info, lhs, rhs, "==", True, ok))
            if inst.kind != "edge":
                out += chain_records(ID, inst, float(np.max(chk.lhs)), rng)
            else:  # gamma = 0: no bound C * leash holds; show it with C = 1 in place of 1/gamma_k
                s_w, delta, meta = _wedin.chain_curvature(inst, rng)
                lhs = float(np.max(chk.lhs))
                leash = float(leash_check(inst.dw, s_w, np.float64(delta)).rhs[0])
                info = inst.info | meta | {"shape": list(inst.w0.shape), "bound": "leash (C = 1)"}
                ok = holds_le(lhs, leash, np.float64, size)
                out.append(Record(ID, "paper", "edge", info, lhs, leash, "<=", False, ok))
        out.append(first_order_rate(ID, config))
    return out

"""Wedin instances and records shared by Thm 3.3, Lemma F.11 and Cor F.13.

An instance is `(kind, w0, dw, k, info)` in float64 NumPy, `w0`/`dw` `[m, n]`. Kinds:

- "random": $W_0$ with a prescribed gap $\\gamma_k$ (`_gate2.gap_spectrum`), Gaussian $\\Delta W$ with
  $\\|\\Delta W\\|_2/\\gamma_k$ log-spaced over $[10^{-3}, 0.9]$ (digest B16);
- "extremal": the 2×2 rotation family $W_0=\\mathrm{diag}(1,0)$, $\\Delta W=[[-a,b],[b,a]]$, $(a,b)$ maximizing
  $\\|\\sin\\Theta\\|_2$ at $\\|\\Delta W\\|_2=\\varepsilon$: the paper form is exceeded by $\\approx\\varepsilon^3/2$;
- "adversarial" (swap): $\\Delta W = \\varepsilon(-u_kv_k^\\top + u_{k+1}v_{k+1}^\\top)$ with $\\varepsilon/\\gamma_k\\in(\\tfrac12,1)$
  pushes $\\sigma_k$ below $\\sigma_{k+1}$, so the k-th singular pair leaves the top-k block and
  $\\|\\sin\\Theta\\|_2 = 1 > \\varepsilon/\\gamma_k$: an O(1) violation of the paper form (ratio up to 2);
- "adversarial" (search): Nelder–Mead over the direction of $\\Delta W$ at fixed $\\|\\Delta W\\|_2$, maximizing
  $\\|\\sin\\Theta\\|_2$ (`_gate2.adversarial_search`);
- "edge": $\\gamma_k=0$ (premise removed): a $10^{-8}$ perturbation of $W_0=I_2$ turns the top singular vector by
  22.5°, so no bound $C\\|\\Delta W\\|_2$ holds.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from proofs_numeric import _gate2 as g2
from proofs_numeric.harness import Record, VerifyConfig, holds_le, premise_below, rate_record
from threegate.spectral import leash_check, spectral_gap, wedin_check

__all__ = [
    "Instance",
    "chain_curvature",
    "chain_records",
    "chainable",
    "excess_rate",
    "first_order_rate",
    "swap_dw",
    "wedin_instances",
]

#: ε values of the 2×2 family (digest: ratio 1.054 at 0.3, 1.0051 at 0.1, 1.00045 at 0.03).
TWO_BY_TWO_EPS: tuple[float, ...] = (0.3, 0.1, 0.03, 0.01, 0.003)


class Instance(NamedTuple):
    kind: str
    w0: np.ndarray
    dw: np.ndarray
    k: int
    info: dict[str, Any]


def _random(config: VerifyConfig, rng: np.random.Generator) -> list[Instance]:
    n = config.n(tiny=6, default=24)
    out = []
    for i, rel in enumerate(g2.rel_sweep(n)):
        m, nn, k = g2.shapes(config)[i % len(g2.shapes(config))]
        gap = float(rng.uniform(0.1, 1.0))
        w0 = g2.with_spectrum(rng, m, nn, g2.gap_spectrum(rng, min(m, nn), k, gap))
        dw = g2.exact_norm(rng, m, nn, rel * gap)
        out.append(
            Instance("random", w0, dw, k, {"shape": [m, nn], "k": k, "gap": gap, "rel": rel})
        )
    return out


def _two_by_two(config: VerifyConfig) -> list[Instance]:
    out = []
    for eps in TWO_BY_TWO_EPS[: config.n(tiny=3, default=5)]:
        phi, _ = g2.two_by_two_worst(eps)
        w0, dw = g2.two_by_two(eps, phi)
        info = {
            "family": "2x2 rotation",
            "eps": eps,
            "a": float(-dw[0, 0]),
            "b": float(dw[0, 1]),
            "W0": w0,
            "dW": dw,
            "k": 1,
        }
        out.append(Instance("extremal", w0, dw, 1, info))
    return out


def swap_dw(w0: np.ndarray, k: int, eps: float) -> np.ndarray:
    """$\\varepsilon(-u_kv_k^\\top + u_{k+1}v_{k+1}^\\top)$ in the singular basis of `w0` (so $\\|\\Delta W\\|_2=\\varepsilon$)."""
    u, _, vt = np.linalg.svd(w0, full_matrices=False)
    return eps * (np.outer(u[:, k], vt[k]) - np.outer(u[:, k - 1], vt[k - 1]))


def _swap(config: VerifyConfig, rng: np.random.Generator) -> list[Instance]:
    out = []
    w0 = np.diag([1.0, 0.0])
    for rel in (0.55, 0.75, 0.9)[: config.n(tiny=2, default=3)]:
        dw = np.diag([-rel, rel])
        info = {"family": "2x2 swap", "eps": rel, "W0": w0, "dW": dw, "k": 1, "gap": 1.0}
        out.append(Instance("adversarial", w0, dw, 1, info))
    for i in range(config.n(tiny=1, default=3)):
        m, nn, k = g2.shapes(config)[i % len(g2.shapes(config))]
        if k >= min(m, nn):
            continue
        gap = float(rng.uniform(0.1, 1.0))
        w0 = g2.with_spectrum(rng, m, nn, g2.gap_spectrum(rng, min(m, nn), k, gap))
        rel = float(rng.uniform(0.55, 0.95))
        dw = swap_dw(w0, k, rel * gap)
        info = {
            "family": "swap sigma_k, sigma_k+1",
            "shape": [m, nn],
            "k": k,
            "gap": gap,
            "rel": rel,
        }
        out.append(Instance("adversarial", w0, dw, k, info))
    return out


def _search(config: VerifyConfig, rng: np.random.Generator) -> list[Instance]:
    m, nn, k = 2, 2, 1
    out = []
    for rel in (0.3, 0.1, 0.6)[: config.n(tiny=1, default=3)]:
        gap = 1.0
        w0 = g2.with_spectrum(rng, m, nn, g2.gap_spectrum(rng, 2, k, gap))
        eps = rel * gap

        def direction(x: np.ndarray, eps: float = eps) -> np.ndarray:
            e = x.reshape(m, nn)
            return e * (eps / np.linalg.norm(e, 2))

        def objective(x: np.ndarray, w0: np.ndarray = w0, direction: Callable = direction) -> float:
            return max(g2.sin_theta_np(w0, w0 + direction(x), k))

        x, best = g2.adversarial_search(
            objective, m * nn, rng, starts=2, maxiter=config.n(150, 400)
        )
        info = {"family": "Nelder-Mead over dW direction", "shape": [m, nn], "k": k, "gap": gap}
        info |= {"rel": rel, "search_best_sin": best, "W0": w0}
        out.append(Instance("adversarial", w0, direction(x), k, info))
    return out


def _edge() -> Instance:
    w0 = np.eye(2)
    dw = 1e-8 * np.array([[-1.0, 1.0], [1.0, 1.0]]) / np.sqrt(2.0)
    info = {"premise_removed": "gamma_1 = 0 (sigma_1 = sigma_2)", "W0": w0, "dW": dw, "k": 1}
    return Instance("edge", w0, dw, 1, info)


def wedin_instances(config: VerifyConfig, salt: str, search: bool = True) -> list[Instance]:
    """All Wedin instances for `config` (random, 2×2 extremal, swap, optional search, and the γ=0 edge)."""
    rng = config.rng(salt)
    out = _random(config, rng) + _two_by_two(config) + _swap(config, rng)
    if search:
        out += _search(config, rng)
    return [*out, _edge()]


def chain_curvature(
    inst: Instance, rng: np.random.Generator
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """A KL-budget setting for `inst`: $S_W$ `[mn, mn]` and the tight budget $\\delta_W=\\tfrac12 v^\\top S_W v$.

    Adversarial/extremal instances get $S_W=\\mu I$ (the leash is then exactly $\\|\\Delta W\\|_F$); random ones a
    random SPD $S_W$ with $\\lambda_{\\min}=\\mu$ (`_gate2.leash_setting`).
    """
    return g2.leash_setting(rng, inst.dw, tight=True, iso=inst.kind != "random")


def chainable(inst: Instance, n_random_chained: int, config: VerifyConfig) -> bool:
    """Whether `inst` also gets KL-chain records: the swaps, and the first few random instances."""
    if inst.kind == "adversarial":
        return "swap" in inst.info.get("family", "")
    return inst.kind == "random" and n_random_chained < config.n(3, 8)


def chain_records(id: str, inst: Instance, lhs: float, rng: np.random.Generator) -> list[Record]:
    """Paper and corrected KL-chain records: lhs against $\\ell/\\gamma_k$ and $\\ell/(\\gamma_k-\\ell)$."""
    s_w, delta, meta = chain_curvature(inst, rng)
    leash = float(leash_check(inst.dw, s_w, np.float64(delta)).rhs[0])
    gap = float(spectral_gap(inst.w0, inst.k))
    info = inst.info | meta | {"leash": leash, "chain": True}
    size = max(inst.w0.shape)
    sigma1 = float(np.linalg.norm(inst.w0, 2))
    rig_ok = premise_below(leash, gap, np.float64, size, sigma1)
    rig = leash / (gap - leash) if rig_ok else np.inf
    return [
        Record(
            id,
            "paper",
            inst.kind,
            info,
            lhs,
            leash / gap,
            "<=",
            premise_below(0.0, gap, np.float64, size, sigma1),
            holds_le(lhs, leash / gap, np.float64, size),
        ),
        Record(
            id,
            "corrected",
            inst.kind,
            info,
            lhs,
            rig,
            "<=",
            rig_ok,
            holds_le(lhs, rig, np.float64, size),
        ),
    ]


def first_order_rate(id: str, config: VerifyConfig) -> Record:
    """Slope of $\\|\\sin\\Theta\\|_2$ against $\\|\\Delta W\\|_2\\to0$ along a fixed direction: 1 (Wedin is first order)."""
    rng = config.rng(f"{id}/rate")
    m, n, k = g2.SHAPES[0]
    w0 = g2.with_spectrum(rng, m, n, g2.gap_spectrum(rng, min(m, n), k, 0.5))
    e = g2.exact_norm(rng, m, n, 1.0)
    eps = np.geomspace(1e-7, 1e-2, config.n(5, 8))
    y = [float(wedin_check(w0, w0 + t * e, k, form="paper").lhs) for t in eps]
    return rate_record(
        id, eps, y, 1.0, 0.05, instance={"fit": "sin Theta vs ||dW||_2", "shape": [m, n], "k": k}
    )


def excess_rate(id: str, records: list[Record]) -> Record:
    """Slope of the 2×2 excess $\\|\\sin\\Theta\\|_2-\\varepsilon$ against ε: 3."""
    fam = [
        r
        for r in records
        if r.kind == "extremal" and r.form == "paper" and "chain" not in r.instance
    ]
    eps = [r.instance["eps"] for r in fam]
    excess = [r.lhs - r.rhs for r in fam]
    return rate_record(
        id, eps, excess, 3.0, 0.2, instance={"fit": "2x2 excess sin Theta - eps vs eps"}
    )

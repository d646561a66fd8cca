"""S3: Gate II, model geometry — RL-like steps stay off the principal subspace, SFT-like steps do not (§9.3 S3).

A synthetic "pretrained" block $W_0\\in\\mathbb R^{m\\times n}$ with a power-law spectrum $\\sigma_i\\propto i^{-a}$, random
singular vectors and LLM-like entries (RMS 0.02), stored in bf16. Two fp32-master trajectories from it, with bf16
export at every checkpoint:

* **RL-like**: KL-budgeted natural-gradient steps $\\Delta W=-t\\,S_W^{-1}g$ (`threegate.toy.natural_step`) whose
  curvature $S_W$ is $\\lambda$ on the principal part of the current top-$k$ subspaces and 1 off it, each exactly on
  the budget $\\tfrac12\\langle\\Delta W,S_W\\Delta W\\rangle=\\delta_W$; $g$ = a fixed reward direction plus noise.
* **SFT-like**: gradient steps on $\\tfrac12\\|W-W^\\star\\|_F^2$ (plus the same noise) toward a target $W^\\star$ whose
  top-$k$ singular vectors are rotated and top singular values rescaled — it differs in the principal subspace.
  Each SFT step is scaled to the same $\\|\\Delta W\\|_F$ as the RL step of the same index (same distance, other
  direction).

Along both: max principal angles of the top-$k$ subspaces (M11, from sines, `threegate.spectral.sin_theta`), the
normalized spectral shift (M12), the overlap of the bf16 update mask with $M_{princ}$ (top-α of the rank-$k$
reconstruction) and $M_{low}$ (bottom-α of $|W_0|$) against their random baseline α (M10), and Weyl, Mirsky and
Wedin (paper form Eq. 8 and the rigorous $\\|\\Delta W\\|_2/(\\gamma_k-\\|\\Delta W\\|_2)$). The rigorous bounds are
asserted in tests; the RL-vs-SFT outcomes are the paper's observations (Sec. 4.1–4.2) and are reported.
"""

import functools
import math
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sims._contract import Claim, check_size, verdict_from_interval, write_result
from sims._figs import figure
from threegate import masks
from threegate.records import write_jsonl
from threegate.spectral import (
    mirsky_check,
    sin_theta,
    spectral_shift,
    top_k,
    wedin_check,
    weyl_check,
)
from threegate.stats import normal_interval
from threegate.stored import unchanged_mask
from threegate.toy.natural_step import principal_curvature_quad, principal_natural_step

__all__ = [
    "NAME",
    "SIZES",
    "SUMMARY",
    "GeomSize",
    "Trajectory",
    "checkpoint_metrics",
    "run",
    "trajectories",
]

NAME = "gate2-geometry"
SUMMARY = (
    "S3 Gate II: RL-like (KL-budgeted natural gradient) vs SFT-like steps on a power-law matrix"
)

RUNS = ("rl", "sft")


class GeomSize(NamedTuple):
    """Shape, top-k, steps, seeds, checkpoints, and the dynamics' constants."""

    m: int
    n: int
    k: int
    steps: int
    seeds: int
    every: int  # checkpoint every this many steps
    alpha: float = 0.5  # mask fraction for M_princ and M_low
    power: float = 1.0  # sigma_i ~ i^-power
    lam: float = 100.0  # curvature on the principal part (1 elsewhere)
    delta: float = 0.0  # per-step budget; 0: set from the entry scale (see `_budget`)
    rotate_deg: float = 30.0  # rotation of the target's top-k singular vectors (SFT)
    noise: float = 0.5  # gradient noise relative to the signal


SIZES = {
    "quick": GeomSize(m=64, n=48, k=4, steps=48, seeds=2, every=8),
    "default": GeomSize(m=128, n=96, k=8, steps=160, seeds=3, every=20),
}

#: RMS of the pretrained entries (LLM-like).
ENTRY_RMS = 0.02


def _budget(size: GeomSize) -> float:
    """δ_W such that the whole run moves a typical entry by about bf16's half-ULP at |w| = ENTRY_RMS.

    RMS entry change per step $h/T$ with $h=\\tfrac12\\mathrm{ULP}(0.02)\\approx2^{-9}\\cdot0.02$ and $T$ steps,
    i.e. $\\|\\Delta W\\|_F=\\sqrt{mn}\\,h/T=\\sqrt{2\\delta_W}$: the regime where the bf16 export is partly sparse.
    """
    if size.delta > 0:
        return size.delta
    per_entry = ENTRY_RMS * 2.0**-9 / size.steps
    return 0.5 * (per_entry**2) * size.m * size.n


def base_matrix(rng: np.random.Generator, size: GeomSize) -> np.ndarray:
    """bf16-representable $W_0$ (as float64) with power-law spectrum and RMS entry `ENTRY_RMS`."""
    r = min(size.m, size.n)
    u, _ = np.linalg.qr(rng.normal(size=(size.m, r)))
    v, _ = np.linalg.qr(rng.normal(size=(size.n, r)))
    s = np.arange(1, r + 1, dtype=np.float64) ** -size.power
    s *= ENTRY_RMS * math.sqrt(size.m * size.n) / np.linalg.norm(s)
    w = (u * s) @ v.T
    return np.asarray(
        jnp.asarray(w, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32), np.float64
    )


def sft_target(rng: np.random.Generator, w0: np.ndarray, size: GeomSize) -> np.ndarray:
    """$W^\\star$: $W_0$ with its top-k singular vectors rotated by `rotate_deg` toward fresh directions and its
    top-k singular values rescaled by U(0.7, 1.3) — a change inside the principal subspace."""
    u, s, vt = np.linalg.svd(w0, full_matrices=False)
    k, th = size.k, math.radians(size.rotate_deg)

    def rotate(basis: np.ndarray) -> np.ndarray:
        fresh = rng.normal(size=(basis.shape[0], k))
        fresh -= basis @ (basis.T @ fresh)  # orthogonal to the whole current basis
        fresh, _ = np.linalg.qr(fresh)
        return math.cos(th) * basis[:, :k] + math.sin(th) * fresh

    s_new = s.copy()
    s_new[:k] *= rng.uniform(0.7, 1.3, size=k)
    u_new, v_new = u.copy(), vt.T.copy()
    u_new[:, :k], v_new[:, :k] = rotate(u), rotate(vt.T)
    return (u_new * s_new) @ v_new.T


class Trajectory(NamedTuple):
    """Master weights at the checkpoints and per-step step data, for both runs; leading axes [run, seed, ...]."""

    weights: np.ndarray  # [2, seeds, checkpoints, m, n] float32 masters
    step_norm: np.ndarray  # [2, seeds, steps] ||Delta W||_F
    step_cost: np.ndarray  # [2, seeds, steps] 1/2 <Delta, S Delta>: RL at its current W, SFT at W0


def _simulate(w0, target, signal, key, delta, size: GeomSize):
    f32 = jnp.float32

    def step(carry, k):
        w_rl, w_sft = carry
        noise = jax.random.normal(k, w_rl.shape, f32) * size.noise
        tk = top_k(w_rl, size.k)
        d_rl = principal_natural_step(signal + noise, tk.u, tk.v, size.lam, delta)
        norm = jnp.linalg.norm(d_rl)
        g_sft = (w_sft - target) / jnp.linalg.norm(w_sft - target) + noise / jnp.linalg.norm(signal)
        d_sft = -g_sft * (norm / jnp.linalg.norm(g_sft))
        costs = jnp.stack(
            [
                principal_curvature_quad(d_rl, tk.u, tk.v, size.lam),
                principal_curvature_quad(d_sft, tk0.u, tk0.v, size.lam),
            ]
        )
        new = (w_rl + d_rl, w_sft + d_sft)
        return new, (jnp.stack(new), jnp.stack([norm, jnp.linalg.norm(d_sft)]), costs)

    tk0 = top_k(w0, size.k)  # the pretrained curvature, for the SFT steps' cost
    keys = jax.random.split(key, size.steps)
    _, (ws, norms, costs) = jax.lax.scan(step, (w0, w0), keys)
    idx = jnp.arange(size.every - 1, size.steps, size.every)
    return ws[idx].swapaxes(0, 1), norms.T, costs.T  # [2, C, m, n], [2, steps], [2, steps]


@functools.cache
def _simulate_jit(size: GeomSize):
    return jax.jit(jax.vmap(functools.partial(_simulate, size=size), in_axes=(0, 0, 0, 0, None)))


def trajectories(size: GeomSize, seed: int) -> tuple[np.ndarray, Trajectory]:
    """Base matrices `[seeds, m, n]` (float64, bf16-representable) and both trajectories."""
    rng = np.random.default_rng([seed, 3])
    w0s, targets, signals = [], [], []
    for _ in range(size.seeds):
        w0 = base_matrix(rng, size)
        w0s.append(w0)
        targets.append(sft_target(rng, w0, size))
        signals.append(rng.normal(size=w0.shape))
    keys = jax.random.split(jax.random.key(seed), size.seeds)
    f32 = np.float32
    ws, norms, costs = _simulate_jit(size)(
        jnp.asarray(np.stack(w0s), f32),
        jnp.asarray(np.stack(targets), f32),
        jnp.asarray(np.stack(signals), f32),
        keys,
        jnp.float32(_budget(size)),
    )
    tr = Trajectory(
        weights=np.asarray(ws).swapaxes(0, 1),
        step_norm=np.asarray(norms).swapaxes(0, 1),
        step_cost=np.asarray(costs).swapaxes(0, 1),
    )
    return np.stack(w0s), tr


class CheckpointMetrics(NamedTuple):
    """Geometry of one checkpoint against the base (float64 measurements; masks from the bf16 export)."""

    max_angle_u: jax.Array  # degrees
    max_angle_v: jax.Array
    nss: jax.Array
    density: jax.Array  # of the bf16 update mask
    changed: jax.Array  # |M|
    overlap_princ: jax.Array
    overlap_low: jax.Array
    baseline_princ: jax.Array
    baseline_low: jax.Array
    weyl: jax.Array  # (lhs, rhs)
    mirsky: jax.Array
    wedin_rigorous: jax.Array  # (lhs, rhs, premise)
    wedin_paper: jax.Array


def _degrees(sine: jax.Array) -> jax.Array:
    return jnp.degrees(jnp.arcsin(jnp.clip(sine, 0.0, 1.0)))


@functools.partial(jax.jit, static_argnames=("k", "alpha"))
def checkpoint_metrics(
    w0: jax.Array, w_master: jax.Array, k: int, alpha: float
) -> CheckpointMetrics:
    """Every S3 metric of the fp32 master `w_master` against the bf16-representable base `w0` (float64)."""
    w1 = w_master.astype(w0.dtype)
    t0, t1 = top_k(w0, k), top_k(w1, k)
    stored0 = w0.astype(jnp.float32).astype(jnp.bfloat16)
    stored1 = w_master.astype(jnp.bfloat16)
    mask = ~unchanged_mask(stored0, stored1)
    ov_p = masks.overlap(masks.principal_mask(w0, k, alpha), mask)
    ov_l = masks.overlap(masks.low_magnitude_mask(w0, alpha), mask)
    wy, mi = weyl_check(w0, w1), mirsky_check(w0, w1)
    wr, wp = wedin_check(w0, w1, k, "rigorous"), wedin_check(w0, w1, k, "paper")
    return CheckpointMetrics(
        max_angle_u=_degrees(sin_theta(t0.u, t1.u)),
        max_angle_v=_degrees(sin_theta(t0.v, t1.v)),
        nss=spectral_shift(w0, w1),
        density=masks.density(mask),
        changed=jnp.sum(mask),
        overlap_princ=ov_p.value,
        overlap_low=ov_l.value,
        baseline_princ=ov_p.baseline,
        baseline_low=ov_l.baseline,
        weyl=jnp.stack([wy.lhs, wy.rhs]),
        mirsky=jnp.stack([mi.lhs, mi.rhs]),
        wedin_rigorous=jnp.stack([wr.lhs, wr.rhs, wr.premise.astype(w0.dtype)]),
        wedin_paper=jnp.stack([wp.lhs, wp.rhs, wp.premise.astype(w0.dtype)]),
    )


def measure(w0s: np.ndarray, tr: Trajectory, size: GeomSize) -> dict[str, CheckpointMetrics]:
    """`CheckpointMetrics` per run, NumPy arrays with leading axes [seed, checkpoint]."""
    out = {}
    with jax.enable_x64(True):
        for r, name in enumerate(RUNS):
            per_seed = []
            for s in range(size.seeds):
                w0 = jnp.asarray(w0s[s], jnp.float64)
                rows = [
                    checkpoint_metrics(w0, jnp.asarray(w), size.k, size.alpha)
                    for w in tr.weights[r, s]
                ]
                per_seed.append(
                    jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *rows)
                )
            out[name] = jax.tree.map(lambda *xs: np.stack(xs), *per_seed)
    return out


def _pooled_overlap(m: CheckpointMetrics, field: str, alpha: float) -> tuple[float, float, float]:
    """Overlap pooled over seeds at the last checkpoint, and the 95% CI of (overlap - alpha)."""
    changed = m.changed[:, -1].astype(np.float64)
    inter = getattr(m, field)[:, -1] * changed
    total = changed.sum()
    if total == 0:
        return math.nan, math.nan, math.nan
    value = float(np.nansum(inter) / total)
    lo, hi = normal_interval(value - alpha, math.sqrt(alpha * (1 - alpha) / total))
    return value, lo, hi


def _paired(rl: np.ndarray, sft: np.ndarray) -> str:
    if np.all(rl < sft):
        return "agrees"
    if np.all(rl > sft):
        return "disagrees"
    return "inconclusive"


def _claims(met: dict[str, CheckpointMetrics], size: GeomSize) -> tuple[list[Claim], dict]:
    rl, sft = met["rl"], met["sft"]
    ang = {n: np.maximum(m.max_angle_u[:, -1], m.max_angle_v[:, -1]) for n, m in met.items()}
    nss = {n: m.nss[:, -1] for n, m in met.items()}
    s = size.seeds
    claims = [
        Claim(
            "S3.rl_rotates_less",
            "RL-like updates rotate the top-k singular subspaces much less than SFT at matched update size (Sec. 4.1, Thm 3.3).",
            f"max principal angle (top-{size.k}, U and V) at the end: RL {ang['rl'].mean():.3g} deg vs SFT "
            f"{ang['sft'].mean():.3g} deg (mean of {s} seeds; RL < SFT in {int(np.sum(ang['rl'] < ang['sft']))}/{s}; "
            f"same ||Delta W||_F every step)",
            _paired(ang["rl"], ang["sft"]),
        ),
        Claim(
            "S3.rl_shifts_spectrum_less",
            "RL-like updates barely move the singular values; SFT shifts the spectrum (Sec. 4.1, Cor 3.4).",
            f"normalized spectral shift at the end: RL {nss['rl'].mean():.2e} vs SFT {nss['sft'].mean():.2e} "
            f"(mean of {s} seeds; RL < SFT in {int(np.sum(nss['rl'] < nss['sft']))}/{s})",
            _paired(nss["rl"], nss["sft"]),
        ),
    ]
    a = size.alpha
    for cid, paper, m, field, expect, run in (
        (
            "S3.rl_overlap_principal_subrandom",
            "The RL update mask overlaps the principal weights M_princ less than random (Sec. 4.2, Fig. 5).",
            rl,
            "overlap_princ",
            "negative",
            "RL",
        ),
        (
            "S3.rl_overlap_low_superrandom",
            "The RL update mask overlaps the low-magnitude weights M_low more than random (Sec. 4.2, Fig. 5).",
            rl,
            "overlap_low",
            "positive",
            "RL",
        ),
        (
            "S3.sft_overlap_principal_superrandom",
            "SFT targets principal weights: its update mask overlaps M_princ more than random (Fig. 1c).",
            sft,
            "overlap_princ",
            "positive",
            "SFT",
        ),
    ):
        value, lo, hi = _pooled_overlap(m, field, a)
        dens = float(m.density[:, -1].mean())
        other = _pooled_overlap(sft if run == "RL" else rl, field, a)[0]
        claims.append(
            Claim(
                cid,
                paper,
                f"{run}: Overlap = {value:.3f} vs random baseline {a:.2f} (bf16 mask density {dens:.2f}, pooled "
                f"over {s} seeds; 95% CI of the difference [{lo:+.3f}, {hi:+.3f}]; "
                f"{'SFT' if run == 'RL' else 'RL'}: {other:.3f})",
                verdict_from_interval(lo, hi, expect=expect),
            )
        )
    # Bounds along both trajectories: rigorous forms must hold; the paper form of Wedin is reported.
    worst = {}
    for name in ("weyl", "mirsky", "wedin_rigorous", "wedin_paper"):
        vals = np.concatenate(
            [getattr(m, name).reshape(-1, getattr(m, name).shape[-1]) for m in met.values()]
        )
        prem = vals[:, 2] > 0 if vals.shape[1] == 3 else np.ones(len(vals), bool)
        ratios = vals[prem, 0] / vals[prem, 1]
        worst[name] = float(np.max(ratios)) if ratios.size else math.nan
    n_ck = sum(m.weyl.shape[0] * m.weyl.shape[1] for m in met.values())
    held = all(worst[n] <= 1 + 1e-6 for n in ("weyl", "mirsky", "wedin_rigorous"))
    claims.append(
        Claim(
            "S3.bounds_along_trajectory",
            "Singular values move at most ||Delta W||_2 (Weyl), sum of squares at most ||Delta W||_F^2 (Mirsky), and the top-k subspaces rotate at most ||Delta W||_2/gamma_k (Thm 3.3).",
            f"worst lhs/rhs over {n_ck} checkpoints: Weyl {worst['weyl']:.3f}, Mirsky {worst['mirsky']:.3f}, "
            f"Wedin rigorous {worst['wedin_rigorous']:.3f}, Wedin paper form {worst['wedin_paper']:.3f} (bounds 1)",
            "agrees" if held and worst["wedin_paper"] <= 1 + 1e-6 else "disagrees",
        )
    )
    summary = {"max_angle_deg": ang, "nss": nss, "worst_bound_ratio": worst}
    return claims, summary


def _figures(d: Path, met: dict[str, CheckpointMetrics], size: GeomSize) -> list[str]:
    steps = np.arange(size.every, size.steps + 1, size.every)
    colors = {"rl": "C0", "sft": "C3"}
    with figure(d / "rotation_and_shift.png", ncols=2) as (ax0, ax1):
        for name, m in met.items():
            ang = np.maximum(m.max_angle_u, m.max_angle_v)
            for s in range(size.seeds):
                lab = name.upper() if s == 0 else None
                ax0.semilogy(steps, ang[s], color=colors[name], lw=1, label=lab)
                ax1.semilogy(steps, m.nss[s], color=colors[name], lw=1, label=lab)
        ax0.set(
            xlabel="step", ylabel="max principal angle (deg)", title=f"S3: top-{size.k} rotation"
        )
        ax1.set(xlabel="step", ylabel="normalized spectral shift", title="spectrum drift")
        ax0.legend(fontsize=8)
    with figure(d / "mask_overlap.png") as (ax,):
        for name, m in met.items():
            ax.plot(
                steps,
                m.overlap_princ.mean(axis=0),
                "-",
                color=colors[name],
                label=f"{name.upper()} M_princ",
            )
            ax.plot(
                steps,
                m.overlap_low.mean(axis=0),
                "--",
                color=colors[name],
                label=f"{name.upper()} M_low",
            )
        ax.axhline(size.alpha, color="k", lw=0.6, label="random")
        ax.set(xlabel="step", ylabel="Overlap(M_., M)", title="bf16 update mask vs M_princ / M_low")
        ax.legend(fontsize=7)
    return ["rotation_and_shift.png", "mask_overlap.png"]


def run(out: Path, size: str = "quick", seed: int = 0) -> dict:
    """S3 on the sim contract; writes `out/gate2-geometry/`."""
    check_size(size)
    start = time.perf_counter()
    sz = SIZES[size]
    w0s, tr = trajectories(sz, seed)
    met = measure(w0s, tr, sz)
    d = Path(out) / NAME
    rows = []
    for name, m in met.items():
        for s in range(sz.seeds):
            for c in range(m.nss.shape[1]):
                rows.append(
                    {
                        "run": name,
                        "seed_index": s,
                        "step": (c + 1) * sz.every,
                        **{f: getattr(m, f)[s, c] for f in CheckpointMetrics._fields},
                    }
                )
    write_jsonl(d / "checkpoints.jsonl", rows)
    claims, summary = _claims(met, sz)
    summary["rl_step_cost_over_budget"] = float(np.max(np.abs(tr.step_cost[0] / _budget(sz) - 1)))
    summary["sft_step_cost_over_budget_median"] = float(np.median(tr.step_cost[1] / _budget(sz)))
    figs = _figures(d, met, sz)
    return write_result(
        d,
        name=NAME,
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
        claims=claims,
        figures=figs,
        data=["checkpoints.jsonl"],
        extra={"config": sz._asdict(), "delta": _budget(sz), "summary": summary},
    )

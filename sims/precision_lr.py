"""S1: the Gate III learning-rate test (paper Sec. 2.3, Cor. 3.6; digest §9.3 S1).

A matrix with LLM-like magnitudes ($W_0 \\sim \\mathcal N(0, 0.02^2)$, optionally heavy-tailed) is trained for $T$
Adam steps on a synthetic gradient stream $g_t = \\mu + \\sigma\\,\\xi_t$ (a fixed "signal" $\\mu$ plus Gaussian
noise), then exported to bf16. Two storage regimes:

* `"master"`: fp32 master weights, bf16 only at export (the paper's verl/FSDP runs). A stored weight changes iff
  the *accumulated* update leaves its bf16 rounding cell.
* `"bf16"`: parameters stored in bf16 and rounded after every step (`optax.apply_updates` on bf16 params). A
  per-step update below about half a ULP is lost for good (Cor. 3.6), so sparsity stays high at small learning rates.

Measured per learning rate: bf16 update sparsity (Def. 2.2), the overlap of the update mask with the
low-magnitude mask $M_{low}$ (M10, null = α), and the fraction of per-step updates that `bf16.realized` says are
not realized. Expected (paper): sparsity falls monotonically toward 0 as lr grows; the overlap with $M_{low}$ is
above α (small weights have small ULPs).

Contract (style E12): `make_run(cfg)` returns a pure `run(key, lr) -> PrecisionLRMetrics`, jitted once and vmapped
over learning rates. `run(out, size, seed)` is the `sims._contract` entry (`threegate sim precision-lr`): both
storages, claims with verdicts, `rows.jsonl` and one figure.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sims._contract import Claim, check_size, verdict_from_interval, write_result
from sims._figs import figure
from threegate import bf16, masks
from threegate.records import write_jsonl
from threegate.stats import normal_interval
from threegate.stored import unchanged_mask

__all__ = [
    "NAME",
    "SUMMARY",
    "PrecisionLRConfig",
    "PrecisionLRMetrics",
    "make_run",
    "run",
    "sweep",
]

NAME = "precision-lr"
SUMMARY = (
    "S1 Gate III: bf16 update sparsity against learning rate, fp32-master vs bf16-stored training"
)


@dataclass(frozen=True)
class PrecisionLRConfig:
    """Configuration of the S1 sweep (hashable; defaults follow digest §9.3 S1).

    Attributes:
      m, n: matrix shape.
      steps: Adam steps T.
      lrs: learning rates swept.
      init_std: std of $W_0$ (0.02, as in LLM initialisations).
      heavy_tail: draw $W_0$ from a Student-t(3) scaled to `init_std` instead of a Gaussian.
      signal: scale of the fixed gradient mean μ relative to the noise σ = 1.
      storage: "master" (fp32 master, bf16 export) or "bf16" (bf16 params rounded every step).
      alpha: fraction for the low-magnitude mask.
      b1, b2: Adam moments (the paper's 0.9 / 0.999).

    Matmul precision: no matmuls are measured here (elementwise only).
    """

    m: int = 256
    n: int = 256
    steps: int = 64
    lrs: tuple[float, ...] = (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4)
    init_std: float = 0.02
    heavy_tail: bool = False
    signal: float = 0.3
    storage: Literal["master", "bf16"] = "master"
    alpha: float = 0.5
    b1: float = 0.9
    b2: float = 0.999


class PrecisionLRMetrics(NamedTuple):
    """Per-run metrics (scalars; a leading axis when vmapped over learning rates)."""

    sparsity: jax.Array
    overlap_low: jax.Array
    overlap_low_baseline: jax.Array
    unrealized_step_fraction: jax.Array
    rel_update_fro: jax.Array


def _initial_weights(cfg: PrecisionLRConfig, key: jax.Array) -> jax.Array:
    shape = (cfg.m, cfg.n)
    if cfg.heavy_tail:
        # Student-t with 3 degrees of freedom has variance 3; rescale to init_std.
        w = jax.random.t(key, 3.0, shape) * (cfg.init_std / jnp.sqrt(3.0))
    else:
        w = jax.random.normal(key, shape) * cfg.init_std
    return w.astype(jnp.bfloat16)


def make_run(cfg: PrecisionLRConfig):
    """Build `run(key, lr) -> PrecisionLRMetrics` for one configuration (pure; jit/vmap-able)."""
    if cfg.storage not in ("master", "bf16"):
        raise ValueError(f"storage must be 'master' or 'bf16', got {cfg.storage!r}")

    def run(key: jax.Array, lr: jax.Array) -> PrecisionLRMetrics:
        k_w, k_mu, k_noise = jax.random.split(key, 3)
        w0 = _initial_weights(cfg, k_w)
        mu = cfg.signal * jax.random.normal(k_mu, w0.shape)
        opt = optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
        master = w0.astype(jnp.float32)
        params = master if cfg.storage == "master" else w0
        state = opt.init(master)

        def step(carry, noise_key):
            params, state = carry
            grad = mu + jax.random.normal(noise_key, w0.shape)
            # optax computes b1**count with an int32 count; allow that promotion under strict-dtype configs.
            with jax.numpy_dtype_promotion("standard"):
                update, state = opt.update(grad, state)
            stored = params.astype(jnp.bfloat16)
            lost = jnp.mean((~bf16.realized(stored, update)).astype(jnp.float32))
            # optax.apply_updates semantics, spelled out so that bf16 + f32 needs no implicit promotion:
            # add in float32, store back in the parameter dtype (round-to-nearest-even for bf16).
            params = (params.astype(jnp.float32) + update).astype(params.dtype)
            return (params, state), lost

        keys = jax.random.split(k_noise, cfg.steps)
        (params, _), lost = jax.lax.scan(step, (params, state), keys)
        w1 = params.astype(jnp.bfloat16)
        update_mask = ~unchanged_mask(w0, w1)
        low = masks.low_magnitude_mask(w0.astype(jnp.float32), cfg.alpha)
        ov = masks.overlap(low, update_mask)
        delta = w1.astype(jnp.float32) - w0.astype(jnp.float32)
        rel = jnp.linalg.norm(delta) / jnp.linalg.norm(w0.astype(jnp.float32))
        return PrecisionLRMetrics(
            sparsity=1.0 - jnp.mean(update_mask.astype(jnp.float32)),
            overlap_low=ov.value,
            overlap_low_baseline=ov.baseline,
            unrealized_step_fraction=jnp.mean(lost),
            rel_update_fro=rel,
        )

    return run


def sweep(cfg: PrecisionLRConfig, seed: int = 0) -> list[dict]:
    """Run every learning rate of `cfg` (one compile, vmapped) and return one JSON-able row per lr."""
    run = jax.jit(jax.vmap(make_run(cfg), in_axes=(None, 0)))
    lrs = jnp.asarray(cfg.lrs, dtype=jnp.float32)
    out = jax.device_get(run(jax.random.key(seed), lrs))
    rows = []
    for i, lr in enumerate(cfg.lrs):
        rows.append(
            {
                "lr": lr,
                "storage": cfg.storage,
                "steps": cfg.steps,
                "shape": [cfg.m, cfg.n],
                "seed": seed,
                **{name: float(getattr(out, name)[i]) for name in PrecisionLRMetrics._fields},
            }
        )
    return rows


#: Per size: matrix side, Adam steps, learning rates (quick: what the tests use).
_SIZES = {
    "quick": (64, 24, (1e-7, 1e-6, 1e-5, 1e-4, 1e-3)),
    "default": (256, 64, (1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3)),
}


def _claims(rows: dict[str, list[dict]], n_weights: int) -> list[Claim]:
    master, stored = rows["master"], rows["bf16"]
    sp = np.array([r["sparsity"] for r in master])
    lrs = [r["lr"] for r in master]
    falls = bool(np.all(np.diff(sp) <= 0))
    span = sp[0] - sp[-1]
    fall_verdict = (
        "agrees" if falls and span > 0.5 else ("disagrees" if span < 0 else "inconclusive")
    )
    claims = [
        Claim(
            "S1.sparsity_falls_with_lr",
            "Raising the learning rate lifts sub-ULP updates above threshold: bf16 sparsity largely disappears (Sec. 2.3).",
            f"fp32-master sparsity {sp[0]:.3f} at lr {lrs[0]:.0e} -> {sp[-1]:.3f} at lr {lrs[-1]:.0e}; "
            f"monotone non-increasing: {falls} (null: no dependence on lr)",
            fall_verdict,
        )
    ]
    # Overlap of the update mask with M_low at the transition learning rates, against its alpha null.
    mid = [r for r in master if 0.05 < r["sparsity"] < 0.95]
    if mid:
        r = min(mid, key=lambda r: abs(r["sparsity"] - 0.5))
        changed = max(1.0, (1 - r["sparsity"]) * n_weights)
        base = r["overlap_low_baseline"]
        lo, hi = normal_interval(r["overlap_low"] - base, math.sqrt(base * (1 - base) / changed))
        obs = (
            f"Overlap(M_low, M) = {r['overlap_low']:.3f} vs random {base:.2f} at lr {r['lr']:.0e} "
            f"(sparsity {r['sparsity']:.2f}); 95% CI of the excess [{lo:+.3f}, {hi:+.3f}]"
        )
        verdict = verdict_from_interval(lo, hi, expect="positive")
    else:
        obs, verdict = (
            "no learning rate in the transition regime (0.05 < sparsity < 0.95)",
            "inconclusive",
        )
    claims.append(
        Claim(
            "S1.updates_on_low_magnitude",
            "The update mask over-represents low-magnitude weights: Overlap(M_low, M) above its random baseline (Sec. 4.2).",
            obs,
            verdict,
        )
    )
    # bf16-stored training loses sub-half-ULP updates: more weights unchanged than with an fp32 master.
    sub = [
        (m, b)
        for m, b in zip(master, stored, strict=True)
        if b["unrealized_step_fraction"] > 0.9 and m["sparsity"] < 0.999
    ]
    if sub:
        diffs = []
        for m, b in sub:
            se = math.sqrt(
                (m["sparsity"] * (1 - m["sparsity"]) + b["sparsity"] * (1 - b["sparsity"]))
                / n_weights
            )
            diffs.append((b["sparsity"] - m["sparsity"], se, m["lr"]))
        d, se, lr = min(diffs, key=lambda t: t[0] - 1.96 * t[1])
        lo, hi = normal_interval(d, se)
        obs = (
            f"at the {len(sub)} lr(s) where >90% of per-step updates are below half an ULP, bf16-stored sparsity "
            f"exceeds fp32-master sparsity by at least {d:+.3f} (lr {lr:.0e}; 95% CI [{lo:+.3f}, {hi:+.3f}]; null 0)"
        )
        verdict = verdict_from_interval(lo, hi, expect="positive")
    else:
        obs, verdict = (
            "no learning rate with mostly sub-half-ULP steps and visible change",
            "inconclusive",
        )
    claims.append(
        Claim(
            "S1.bf16_storage_loses_sub_ulp",
            "A stored bf16 weight changes only if its update exceeds about half an ULP (Cor. 3.6): per-step rounding loses sub-ULP updates.",
            obs,
            verdict,
        )
    )
    return claims


def run(out: Path, size: str = "quick", seed: int = 0) -> dict:
    """S1 on the sim contract: both storages over the learning-rate sweep; writes `out/precision-lr/`."""
    check_size(size)
    start = time.perf_counter()
    side, steps, lrs = _SIZES[size]
    rows = {
        storage: sweep(
            PrecisionLRConfig(m=side, n=side, steps=steps, lrs=lrs, storage=storage), seed=seed
        )
        for storage in ("master", "bf16")
    }
    d = Path(out) / NAME
    write_jsonl(d / "rows.jsonl", rows["master"] + rows["bf16"])
    with figure(d / "sparsity_vs_lr.png", ncols=2) as (ax0, ax1):
        for storage, table in rows.items():
            x = [r["lr"] for r in table]
            ax0.semilogx(x, [r["sparsity"] for r in table], "o-", label=storage)
            ax1.semilogx(x, [r["overlap_low"] for r in table], "o-", label=storage)
        ax0.set(xlabel="learning rate", ylabel="bf16 update sparsity", title="S1: sparsity vs lr")
        ax1.axhline(
            rows["master"][0]["overlap_low_baseline"], color="grey", ls="--", label="random"
        )
        ax1.set(xlabel="learning rate", ylabel="Overlap(M_low, M)", title="update mask vs M_low")
        ax0.legend(fontsize=8)
        ax1.legend(fontsize=8)
    return write_result(
        d,
        name=NAME,
        size=size,
        seed=seed,
        seconds=time.perf_counter() - start,
        claims=_claims(rows, side * side),
        figures=["sparsity_vs_lr.png"],
        data=["rows.jsonl"],
        extra={"shape": [side, side], "steps": steps, "lrs": lrs},
    )

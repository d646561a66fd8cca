"""Accelerator check for `threegate compare` (run by `make gpu-check`; also runs, and exits 0, on a CPU-only machine).

1. Prints the JAX backend and devices.
2. Times compare's per-tensor spectral step (base decomposition + principal mask scores, then the tuned
   decomposition, angles, $\\|\\Delta W\\|_2$ and energy share) and the whole per-tensor record on a bf16
   `--shape` matrix pair (default 1536 x 8960, a Qwen2.5-1.5B down_proj) on the accelerator and on the CPU.
3. Checks the sin-Theta floor of float32 matmuls at default vs "highest" precision at a true
   $\\sin\\theta = 10^{-5}$ ($m = 1024$, $k = 8$; shared/style.md §2: default precision floors at about 2e-4 on an
   H100 because of TF32, "highest" keeps 1e-5), and that compare's own angle path reads the planted angle.
4. Writes everything to `--out/gpu_check.json`.

Usage: python scripts/gpu_check.py --out DIR [--shape 1536 8960] [--k 64] [--repeats 2]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np


def _timed(fn, repeats: int) -> dict:
    """First call (compile + run) and the best of the following `repeats` calls, in seconds."""
    t = time.perf_counter()
    fn()
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return {"first_s": first, "best_s": best if repeats else None}


def spectral_timings(shape: tuple[int, int], k: int, repeats: int, device) -> dict:
    from threegate.compare.metrics import tensor_metrics
    from threegate.compare.spectrum import base_spectral, tuned_spectral

    rng = np.random.default_rng(0)
    w0 = (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(ml_dtypes.bfloat16)
    w1 = w0.copy()
    w1.view(np.uint16)[...] += (rng.random(shape, dtype=np.float32) < 0.5).astype(np.uint16)
    with jax.default_device(device):

        def step():
            spec, _ = base_spectral(w0, k, "float32")
            tuned_spectral(w0, w1, spec, "float32")

        def record():
            return tensor_metrics("model.layers.0.mlp.down_proj.weight", w0, w1, k, 0.5)

        out = {
            "spectral_step": _timed(step, repeats),
            "tensor_record": _timed(record, max(1, repeats // 2)),
        }
        rec = record().record
    out["max_angle_u_deg"] = rec["max_angle_u_deg"]
    out["spectral_shift"] = rec["spectral_shift"]
    return out


def sin_theta_floor(device, m: int = 1024, k: int = 8, true_sin: float = 1e-5) -> dict:
    """$\\|(I - UU^\\top)\\tilde U\\|_2$ at a planted angle, float32, default vs "highest" matmul precision."""
    from threegate.spectral import principal_angles

    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((m, k + 1)))
    u = q[:, :k]
    theta = np.arcsin(true_sin)
    u_t = u.copy()
    u_t[:, k - 1] = (
        np.cos(theta) * q[:, k - 1] + np.sin(theta) * q[:, k]
    )  # rotate one direction by theta
    a, b = jnp.asarray(u, jnp.float32), jnp.asarray(u_t, jnp.float32)
    with jax.default_device(device):
        a, b = jax.device_put(a, device), jax.device_put(b, device)
        res = {}
        for prec in ("default", "highest"):
            p = None if prec == "default" else jax.lax.Precision.HIGHEST
            f = jax.jit(
                lambda x, y, p=p: jnp.linalg.norm(
                    y - jnp.matmul(x, jnp.matmul(x.T, y, precision=p), precision=p), 2
                )
            )
            res[prec] = float(f(a, b))
        res["compare_angle_path_sin"] = float(np.sin(np.asarray(principal_angles(a, b)).max()))
    res["true_sin"] = true_sin
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/gpu-check"))
    p.add_argument("--shape", type=int, nargs=2, default=(1536, 8960), metavar=("M", "N"))
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    backend = jax.default_backend()
    devices = jax.devices()
    cpu = jax.devices("cpu")[0]
    print(
        f"backend: {backend}; devices: {', '.join(getattr(d, 'device_kind', str(d)) for d in devices)}"
    )
    shape = tuple(args.shape)
    report: dict = {
        "backend": backend,
        "devices": [getattr(d, "device_kind", str(d)) for d in devices],
        "jax_version": jax.__version__,
        "shape": list(shape),
        "k": args.k,
    }
    targets = [("cpu", cpu)] + ([("accelerator", devices[0])] if backend != "cpu" else [])
    for label, dev in targets:
        t = spectral_timings(shape, args.k, args.repeats, dev)
        report[f"timing_{label}"] = t
        print(
            f"{label:<11} spectral step: first {t['spectral_step']['first_s']:.2f} s, best {t['spectral_step']['best_s']:.2f} s;"
            f" whole record: best {t['tensor_record']['best_s']:.2f} s"
        )
        report[f"sin_theta_{label}"] = s = sin_theta_floor(dev)
        print(
            f"{label:<11} sinΘ at true 1e-5: default {s['default']:.2e}, highest {s['highest']:.2e},"
            f" compare's angle path {s['compare_angle_path_sin']:.2e}"
        )
    if backend != "cpu":
        acc, c = (
            report["timing_accelerator"]["spectral_step"],
            report["timing_cpu"]["spectral_step"],
        )
        report["speedup_spectral_step"] = c["best_s"] / acc["best_s"]
        print(f"accelerator speedup of the spectral step: x{report['speedup_spectral_step']:.1f}")
    else:
        print("no accelerator: CPU numbers only")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

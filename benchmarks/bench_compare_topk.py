"""Benchmark the randomized top-k path (`threegate.compare.topk`) against compare's full decomposition, in one run.

Not a test. For each shape (default 8960x1536 and 8192x8192, Qwen2.5-1.5B's MLP and a 70B-class square) and
spectrum (`flat`: i.i.d. N(0, 0.02^2), like an initialised matrix; `spiked`: the same plus a rank-k part with
decaying singular values, like trained weights' outlier directions), times

* full: `threegate.compare.gram_spectrum(w, k)` (float64 Gram `eigh` with vectors: compare's method);
* top-k: all singular values by `eigvalsh` of the same Gram matrix (compare needs them for NSS and Weyl, and they
  give the certificate its sigma_{k+1}) plus `topk_spectrum(w, k, sigma_next=...)`;

and reports the speed-up, the true max principal angle between the two top-k subspaces (U and V), and the certified
bound. Prints the load average (`os.getloadavg`).

Usage: python benchmarks/bench_compare_topk.py [--k 64] [--iters 4] [--shapes 8960x1536,8192x8192] [--json F]
"""

import argparse
import json
import math
import os
import time

import numpy as np


def _matrix(shape, kind, k, seed=0):
    rng = np.random.default_rng(seed)
    w = (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float64)
    if kind == "spiked":
        m, n = shape
        a = np.linalg.qr(rng.standard_normal((m, k)))[0]
        b = np.linalg.qr(rng.standard_normal((n, k)))[0]
        bulk = 0.02 * (math.sqrt(m) + math.sqrt(n))  # the Gaussian part's top singular value
        w += (a * (bulk * np.geomspace(4.0, 1.5, k))) @ b.T
    return w


def _sin_max(a, b):
    s = np.linalg.svd(a.T @ b, compute_uv=False)
    return float(np.sqrt(max(0.0, 1.0 - float(s.min()) ** 2)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--iters", type=int, default=4)
    p.add_argument("--shapes", default="8960x1536,8192x8192")
    p.add_argument("--kinds", default="flat,spiked")
    p.add_argument("--json")
    args = p.parse_args(argv)
    import jax

    from threegate.compare import gram_spectrum
    from threegate.compare.topk import topk_spectrum

    rows = []
    print(f"load average before: {os.getloadavg()}")
    for shape in [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]:
        for kind in args.kinds.split(","):
            w = _matrix(shape, kind, args.k)
            t0 = time.perf_counter()
            full = gram_spectrum(w, args.k)
            t_full = time.perf_counter() - t0
            t0 = time.perf_counter()
            small = w if shape[0] >= shape[1] else w.T
            with jax.enable_x64(True):
                import jax.numpy as jnp

                g = jnp.asarray(small).T @ jnp.asarray(small)
                lam = np.asarray(jnp.linalg.eigvalsh(g))[::-1]
            s_all = np.sqrt(np.clip(lam, 0, None))
            t_vals = time.perf_counter() - t0
            q = min(shape)
            margin = 4 * math.sqrt(q * np.finfo(np.float64).eps) * s_all[0]  # eigvalsh error bound
            t0 = time.perf_counter()
            top = topk_spectrum(w, args.k, iters=args.iters, sigma_next=s_all[args.k] + margin)
            t_top = time.perf_counter() - t0
            err = max(_sin_max(full.u, top.u), _sin_max(full.v, top.v))
            row = {
                "shape": list(shape),
                "kind": kind,
                "k": args.k,
                "iters": args.iters,
                "full_s": t_full,
                "values_s": t_vals,
                "topk_s": t_top,
                "speedup": t_full / (t_vals + t_top),
                "sin_err_vs_full": err,
                "sin_bound": top.sin_bound,
                "gap_rel": (s_all[args.k - 1] - s_all[args.k]) / s_all[args.k - 1],
            }
            rows.append(row)
            print(
                f"{shape[0]}x{shape[1]} {kind:6s} full {t_full:7.2f} s | values {t_vals:6.2f} s + top-k "
                f"{t_top:6.2f} s = x{row['speedup']:.2f} | sin err {err:.2e} bound "
                f"{'none' if top.sin_bound is None else f'{top.sin_bound:.2e}'} | rel gap {row['gap_rel']:.2e}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark `threegate compare` serial against `--ray` with W local workers, on one synthetic pair, in one run.

Not a test. Builds the Qwen2.5-1.5B-shaped bf16 pair of `benchmarks/bench_compare.py` (its builder; `--layers N`
scales the depth), then runs, each in its own subprocess:

* `threegate compare BASE TUNED --out DIR --no-figures` (serial), and
* the same with `--ray`, after `ray.init(num_cpus=W)` in that process (Ray start-up timed apart).

It writes JSON (`--json`) with both wall times, whether the two runs' `tensors.jsonl`, `pairs.jsonl` and
`summary.json` are the same bytes, and the per-unit costs of both runs from their `costs.jsonl` (wall and CPU
seconds, bytes read, process; `warm` is False for the first unit of a shape in a process, which pays jax's
compilation). From the serial run's warm matrix costs it fits

$$t(m, n) \\approx a\\,mn + b\\,\\max(m,n)\\min(m,n)^2 + c\\,\\min(m,n)^3$$

(bitwise pass and norms, Gram matrix, `eigh`; non-negative least squares) and the blocked pass's seconds per
byte, and extrapolates to a Llama-3.1-70B pair (80 layers, hidden 8192, intermediate 28672, 64/8 heads of 128,
vocab 128256, untied `lm_head`): per-type seconds, the serial total, and the time on N nodes of C workers,
$\\max(T_{serial}/(NC),\\ t_{max})$ with $t_{max}$ the largest single unit (`--plan-workers` sets C).

Usage: python benchmarks/bench_compare_ray.py [--layers N] [--workers 2] [--k 64] [--json out.json]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compare import build  # the shared synthetic-pair builder

_CHILD = """
import json, sys, time
workers = int(sys.argv[1])
ray_start = None
if workers:
    import ray
    t = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - t
from threegate.cli import main
t = time.perf_counter()
rc = main(sys.argv[2:])
print("BENCH " + json.dumps({"rc": rc, "wall_s": time.perf_counter() - t, "ray_start_s": ray_start}))
"""

#: Llama-3.1-70B: name pattern -> (shape, count per layer); embedding and lm_head separately.
HIDDEN70, INTER70, LAYERS70, KV70, VOCAB70 = 8192, 28672, 80, 8 * 128, 128256
SHAPES_70B = {
    "q_proj": (HIDDEN70, HIDDEN70),
    "k_proj": (KV70, HIDDEN70),
    "v_proj": (KV70, HIDDEN70),
    "o_proj": (HIDDEN70, HIDDEN70),
    "gate_proj": (INTER70, HIDDEN70),
    "up_proj": (INTER70, HIDDEN70),
    "down_proj": (HIDDEN70, INTER70),
}


def _child(workers: int, argv: list[str]) -> dict:
    code = [sys.executable, "-c", _CHILD, str(workers), *argv]
    proc = subprocess.run(code, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    return {"rc": proc.returncode, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}


def _costs(out: Path) -> list[dict]:
    """`costs.jsonl` with the tensor's shape and type, and `warm` (not the first of its shape in its process)."""
    from threegate.checkpoints import classify
    from threegate.records import read_jsonl

    recs = {r["name"]: r for r in read_jsonl(out / "tensors.jsonl")}
    seen, rows = set(), []
    for c in read_jsonl(out / "costs.jsonl"):
        shape = recs[c["name"]]["shape"]
        key = (c["pid"], tuple(shape), c["kind"])
        rows.append({**c, "shape": shape, "layer_type": classify(c["name"]), "warm": key in seen})
        seen.add(key)
    return rows


def _by_type(costs: list[dict]) -> dict:
    out = {}
    for t in sorted({c["layer_type"] for c in costs}):
        mine = [c for c in costs if c["layer_type"] == t]
        warm = [c for c in mine if c["warm"]] or mine
        out[t] = {
            "units": len(mine),
            "wall_s_mean_warm": float(np.mean([c["wall_s"] for c in warm])),
            "cpu_s_mean_warm": float(np.mean([c["cpu_s"] for c in warm])),
            "wall_s_total": float(sum(c["wall_s"] for c in mine)),
        }
    return out


def _features(m: int, n: int) -> list[float]:
    lo, hi = min(m, n), max(m, n)
    return [m * n, hi * lo * lo, float(lo) ** 3]


def extrapolate(costs: list[dict], plan_workers: int) -> dict:
    """Fit the per-matrix cost model on warm serial costs; predict a Llama-3.1-70B pair (one tuned)."""
    from scipy.optimize import nnls

    mats = [
        c
        for c in costs
        if c["kind"] == "tensor"
        and c["warm"]
        and len(c["shape"]) == 2
        and c["layer_type"] in SHAPES_70B
    ]
    blocks = [c for c in costs if c["kind"] == "block"]
    if len(mats) < 3:
        return {"error": "fewer than 3 warm matrix costs: run with --layers 2 or more"}
    a = np.array([_features(*c["shape"]) for c in mats])
    y = np.array([c["wall_s"] for c in mats])
    scale = a.max(axis=0)
    coef, _ = nnls(a / scale, y)
    coef = coef / scale
    per_type = {t: float(np.dot(coef, _features(*s))) for t, s in SHAPES_70B.items()}
    per_byte = sum(c["wall_s"] for c in blocks) / max(1, sum(c["bytes_read"] for c in blocks))
    embed_bytes = 2 * VOCAB70 * HIDDEN70 * 2  # base + tuned, bf16
    embed_s = 2 * per_byte * embed_bytes  # embed_tokens and the untied lm_head
    serial = LAYERS70 * sum(per_type.values()) + embed_s
    t_max = max(per_type.values())
    return {
        "model": "Llama-3.1-70B shapes, one tuned checkpoint",
        "fit": {"a_per_mn": coef[0], "b_per_max_min2": coef[1], "c_per_min3": coef[2]},
        "blocked_s_per_byte": per_byte,
        "per_type_s": per_type,
        "embed_and_lm_head_s": embed_s,
        "serial_s": serial,
        "largest_unit_s": t_max,
        "workers_per_node": plan_workers,
        "nodes_s": {str(n): max(serial / (n * plan_workers), t_max) for n in (1, 2, 4, 8, 16)},
    }


def run(layers: int, workers: int, k: int, plan_workers: int, workdir: Path) -> dict:
    res = {"layers": layers, "workers": workers, "k": k, **build(workdir, layers)}
    common = [
        "compare",
        str(workdir / "base"),
        str(workdir / "tuned"),
        "--k",
        str(k),
        "--no-figures",
    ]
    outs = {"serial": workdir / "serial", "ray": workdir / "ray"}
    res["serial"] = _child(0, [*common, "--out", str(outs["serial"])])
    res["ray"] = _child(workers, [*common, "--out", str(outs["ray"]), "--ray"])
    if any(res[m].get("rc") != 0 for m in outs):
        return res
    res["identical_files"] = {
        f: (outs["serial"] / f).read_bytes() == (outs["ray"] / f).read_bytes()
        for f in ("tensors.jsonl", "pairs.jsonl", "summary.json")
    }
    res["speedup"] = res["serial"]["wall_s"] / res["ray"]["wall_s"]
    for mode, out in outs.items():
        costs = _costs(out)
        res[mode]["by_type"] = _by_type(costs)
        res[mode]["units"] = costs
        res[mode]["processes"] = len({c["pid"] for c in costs})
    res["extrapolation_70b"] = extrapolate(res["serial"]["units"], plan_workers)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=2, help="transformer blocks (default 2)")
    p.add_argument("--workers", type=int, default=2, help="local Ray worker CPUs (default 2)")
    p.add_argument("--k", type=int, default=64)
    p.add_argument(
        "--plan-workers", type=int, default=8, help="workers per node in the 70B plan (default 8)"
    )
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--tmp", type=Path, help="folder for the synthetic checkpoints")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        res = run(args.layers, args.workers, args.k, args.plan_workers, Path(tmp))
    res["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    for mode in ("serial", "ray"):
        r = res[mode]
        line = f"{mode:<7} rc={r.get('rc')}"
        if "wall_s" in r:
            line += f" wall {r['wall_s']:.1f} s, {r.get('processes', '?')} process(es)"
        print(line if "error" not in r else f"{line}: {r['error']}")
    if "identical_files" in res:
        print(f"identical files: {res['identical_files']}; speedup x{res['speedup']:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(res[m].get("rc") == 0 for m in ("serial", "ray")) else 1


if __name__ == "__main__":
    sys.exit(main())

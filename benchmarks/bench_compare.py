"""Benchmark `threegate compare` against a naive baseline on a synthetic Qwen2.5-1.5B-shaped bf16 checkpoint pair.

Not a test. Builds base and tuned checkpoints with Qwen2.5-1.5B's tensor shapes (28 layers, hidden 1536,
intermediate 8960, 12 heads / 2 kv heads of dim 128, vocab 151936, tied embeddings; `--layers N` scales the
depth), written tensor by tensor as sharded safetensors into a temporary folder. Then times, each in its own
subprocess (wall time; peak RSS = the subprocess's own VmHWM):

* `threegate compare BASE TUNED --out DIR --no-figures` (streaming, one Gram eigendecomposition per matrix and
  checkpoint, base work reused), and
* a naive baseline: both checkpoints loaded whole, then a full SciPy SVD (`gesdd`) of every matrix of both,
  bitwise sparsity, top-k principal angles and NSS from those SVDs (the embedding's SVD included unless
  `--naive-skip-embed`).

Peak RSS is the child's `VmHWM` (resident high-water mark of its own address space; `ru_maxrss` would inherit
the benchmark's own peak across fork + exec) and, separately, the peak
of anonymous memory (`RssAnon`, sampled every 20 ms). Prints a table and writes JSON (`--json`). `--memory-check` runs compare alone on `--layers 6` (about 1 GiB of
bf16 per checkpoint) and reports the peak RSS against the 900 MB target.

Usage: python benchmarks/bench_compare.py [--layers N] [--k 64] [--json out.json] [--no-naive] [--memory-check]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np

BF16 = ml_dtypes.bfloat16
HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 1536, 8960, 12, 2, 128, 151936


def qwen_shapes(layers: int) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and shapes of Qwen2.5-1.5B (tied embeddings: no lm_head), HF layout."""
    kv = KV_HEADS * HEAD_DIM
    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN))]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (HIDDEN,)),
            (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.q_proj.bias", (HEADS * HEAD_DIM,)),
            (p + "self_attn.k_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.k_proj.bias", (kv,)),
            (p + "self_attn.v_proj.weight", (kv, HIDDEN)),
            (p + "self_attn.v_proj.bias", (kv,)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM)),
            (p + "post_attention_layernorm.weight", (HIDDEN,)),
            (p + "mlp.gate_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTER, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTER)),
        ]
    out.append(("model.norm.weight", (HIDDEN,)))
    return out


def _base_tensor(i: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1000 + i)
    if len(shape) == 1:
        return (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(BF16)
    return (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(BF16)


def _tuned_tensor(i: int, shape: tuple[int, ...]) -> np.ndarray:
    """Base with about half of the entries moved by one ULP (an RL-like 50% sparsity)."""
    w = _base_tensor(i, shape)
    rng = np.random.default_rng(5000 + i)
    bits = w.view(np.uint16)
    bits += (rng.random(shape, dtype=np.float32) < 0.5).astype(np.uint16)
    return w


def build(folder: Path, layers: int) -> dict:
    from threegate.checkpoints import save_safetensors

    shapes = qwen_shapes(layers)
    t0 = time.perf_counter()
    for kind, make in (("base", _base_tensor), ("tuned", _tuned_tensor)):
        items = ((name, make(i, shape)) for i, (name, shape) in enumerate(shapes))
        save_safetensors(items, folder / kind, max_shard_bytes=512 * 2**20)
        (folder / kind / "config.json").write_text(
            json.dumps({"hidden_size": HIDDEN, "num_attention_heads": HEADS, "head_dim": HEAD_DIM})
        )
    params = sum(int(np.prod(s)) for _, s in shapes)
    return {"params": params, "bytes_bf16": 2 * params, "build_s": time.perf_counter() - t0}


_SAMPLER = """
import threading, time
PEAK_ANON = [0]
def _sample():
    while True:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    PEAK_ANON[0] = max(PEAK_ANON[0], int(line.split()[1]))
        time.sleep(0.02)
threading.Thread(target=_sample, daemon=True).start()


def _vm_hwm_mb():
    # VmHWM of this process's own address space. Not ru_maxrss: Linux keeps the parent's high-water mark in
    # ru_maxrss across fork + exec, so a child started from the benchmark (which built the checkpoints) would
    # report the builder's peak, not its own.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
"""

_CHILD_COMPARE = (
    _SAMPLER
    + """
import json, resource, sys, time
from threegate.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
wall = time.perf_counter() - t
print("BENCH " + json.dumps({"rc": rc, "wall_s": wall, "peak_rss_mb": _vm_hwm_mb(),
                             "peak_rss_anon_mb": PEAK_ANON[0] / 1024}))
"""
)

_CHILD_NAIVE = (
    _SAMPLER
    + """
import json, resource, sys, time
import numpy as np, ml_dtypes, scipy.linalg as sla
from safetensors.numpy import load_file
from pathlib import Path
base_dir, tuned_dir, k, skip_embed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
t = time.perf_counter()
def load(d):
    out = {}
    for f in sorted(d.glob("*.safetensors")):
        out.update(load_file(f))
    return out
a, b = load(base_dir), load(tuned_dir)
changed = total = 0
angles, nss = [], []
for name in sorted(a):
    w0, w1 = a[name], b[name]
    changed += int(np.count_nonzero(w0.view(np.uint16) != w1.view(np.uint16)))
    total += w0.size
    if w0.ndim != 2 or (skip_embed and "embed" in name):
        continue
    u0, s0, v0 = sla.svd(w0.astype(np.float32), full_matrices=False)
    u1, s1, v1 = sla.svd(w1.astype(np.float32), full_matrices=False)
    angles.append(float(np.degrees(sla.subspace_angles(u0[:, :k], u1[:, :k])).max()))
    nss.append(float(np.linalg.norm(s1 - s0) / np.linalg.norm(s0)))
wall = time.perf_counter() - t
print("BENCH " + json.dumps({"rc": 0, "wall_s": wall, "peak_rss_mb": _vm_hwm_mb(),
                             "peak_rss_anon_mb": PEAK_ANON[0] / 1024, "sparsity": 1 - changed / total, "matrices": len(angles)}))
"""
)


def _child(code: str, args: list[str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    return {"rc": proc.returncode, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}


def run(
    layers: int, k: int, naive: bool, skip_embed: bool, workdir: Path, extra: list[str]
) -> dict:
    info = build(workdir, layers)
    res = {"layers": layers, "k": k, "compare_args": extra, **info}
    out = workdir / "out"
    res["compare"] = _child(
        _CHILD_COMPARE,
        [
            "compare",
            str(workdir / "base"),
            str(workdir / "tuned"),
            "--out",
            str(out),
            "--k",
            str(k),
            "--no-figures",
            *extra,
        ],
    )
    summary = (
        json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    )
    if summary:
        res["compare"]["sparsity"] = summary["table1"][0]["sparsity"]
    if naive:
        res["naive"] = _child(
            _CHILD_NAIVE,
            [str(workdir / "base"), str(workdir / "tuned"), str(k), "1" if skip_embed else "0"],
        )
        if "wall_s" in res["naive"] and "wall_s" in res["compare"]:
            res["speedup_vs_naive"] = res["naive"]["wall_s"] / res["compare"]["wall_s"]
            res["rss_ratio_naive_over_compare"] = (
                res["naive"]["peak_rss_mb"] / res["compare"]["peak_rss_mb"]
            )
    return res


def _table(res: dict) -> str:
    rows = [
        f"layers={res['layers']}  params={res['params'] / 1e6:.1f}M  bf16={res['bytes_bf16'] / 2**30:.2f} GiB/ckpt"
    ]
    rows.append(f"{'method':<10} {'wall s':>9} {'peak RSS MB':>12} {'anon MB':>8} {'sparsity':>9}")
    for key in ("compare", "naive"):
        r = res.get(key)
        if r is None:
            continue
        if "wall_s" not in r:
            rows.append(f"{key:<10} failed: {r.get('error')}")
            continue
        rows.append(
            f"{key:<10} {r['wall_s']:>9.1f} {r['peak_rss_mb']:>12.0f} {r.get('peak_rss_anon_mb', 0):>8.0f}"
            f" {r.get('sparsity', float('nan')):>9.4f}"
        )
    if "speedup_vs_naive" in res:
        rows.append(
            f"naive/compare: wall x{res['speedup_vs_naive']:.2f}, peak RSS x{res['rss_ratio_naive_over_compare']:.2f}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--layers", type=int, default=28, help="transformer blocks (default 28, the full model)"
    )
    p.add_argument("--k", type=int, default=64)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive baseline")
    p.add_argument("--naive-skip-embed", action="store_true", help="naive: no SVD of the embedding")
    p.add_argument(
        "--memory-check", action="store_true", help="compare only, --layers 6 (~1 GiB bf16)"
    )
    p.add_argument(
        "--compare-args",
        nargs="*",
        default=[],
        help="extra compare arguments, e.g. --compare-args=--no-spectral",
    )
    p.add_argument(
        "--tmp", type=Path, help="folder for the synthetic checkpoints (default: a temp dir)"
    )
    args = p.parse_args(argv)
    if args.memory_check:
        args.layers, args.naive = 6, False
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        res = run(
            args.layers, args.k, args.naive, args.naive_skip_embed, Path(tmp), args.compare_args
        )
    res["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    if args.memory_check:
        res["memory_target_mb"] = 900
        res["memory_ok"] = res["compare"].get("peak_rss_mb", float("inf")) < 900
    print(_table(res))
    if args.memory_check:
        print(
            f"memory check: peak {res['compare'].get('peak_rss_mb', float('nan')):.0f} MB vs 900 MB target"
        )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

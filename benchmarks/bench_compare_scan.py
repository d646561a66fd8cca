"""Benchmark `threegate compare --no-spectral` against a raw bitwise NumPy scan of the same two files, in one run.

Not a test. Builds (or reuses, `--keep`) a bf16 pair of Qwen2.5-1.5B shapes (`bench_compare.build`: 4 layers and
the tied 151936x1536 embedding by default, 0.78 GiB per checkpoint, 1.57 GiB the pair; tuned = half the entries
moved one ULP) in `--dir`, warms the page cache by reading both once, then times, each `--repeat` times
alternately, every one in a fresh subprocess (wall time, process start and imports included):

* raw scan: a Python process that imports NumPy, reads every shard of both checkpoints in 64 MiB blocks and counts
  the differing 16-bit codes (the floor for any tool that reads both files);
* `threegate compare BASE TUNED --out DIR --no-spectral --no-figures` (the command a user runs);
* `compare` in-process parts: CLI start (`threegate --help`: interpreter, imports, parser), and the run's
  own `costs.jsonl` (per tensor wall seconds) summed.

Prints the best time of each, their ratio (the issue's goal: compare <= 3x the scan), the load average
(`os.getloadavg`) before and after, and writes JSON (`--json`). Delete the pair with `--clean` (default unless
`--keep`).

Usage: python benchmarks/bench_compare_scan.py [--layers 4] [--repeat 3] [--dir /tmp/tg_scan] [--keep]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_compare

RAW_SCAN = r"""
import glob, sys
import numpy as np
CH = 64 << 20
diff = 0
for fa in sorted(glob.glob(sys.argv[1] + "/*.safetensors")):
    fb = sys.argv[2] + fa[len(sys.argv[1]):]
    with open(fa, "rb") as a, open(fb, "rb") as b:
        while True:
            x = np.fromfile(a, np.uint16, CH // 2)
            y = np.fromfile(b, np.uint16, CH // 2)
            if x.size == 0:
                break
            diff += int(np.count_nonzero(x != y))
print(diff)
"""


def _threegate() -> list[str]:
    exe = Path(sys.executable).with_name("threegate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "threegate.cli"]


def _timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return wall, res.stdout


def _warm(folder: Path) -> int:
    n = 0
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            while chunk := fh.read(64 << 20):
                n += len(chunk)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--dir", type=Path, help="where the pair lives (default: a new temporary folder)"
    )
    p.add_argument("--keep", action="store_true", help="keep the pair (and reuse it if present)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="tg_scan_"))
    root.mkdir(parents=True, exist_ok=True)
    base, tuned = root / "base", root / "tuned"
    built = None
    if not (base / "model.safetensors.index.json").exists():
        built = bench_compare.build(root, args.layers)
    size = _warm(base) + _warm(tuned)
    load0 = os.getloadavg()
    raw, cmp_, start, units = [], [], [], []
    tg = _threegate()
    for i in range(args.repeat):
        w, _ = _timed([sys.executable, "-c", RAW_SCAN, str(base), str(tuned)])
        raw.append(w)
        out_dir = root / f"out{i}"
        shutil.rmtree(out_dir, ignore_errors=True)
        w, _ = _timed(
            [
                *tg,
                "compare",
                str(base),
                str(tuned),
                "--out",
                str(out_dir),
                "--no-spectral",
                "--no-figures",
            ]
        )
        cmp_.append(w)
        costs = [json.loads(x) for x in (out_dir / "costs.jsonl").read_text().splitlines()]
        units.append(sum(c["wall_s"] for c in costs))
        shutil.rmtree(out_dir)
        start.append(_timed([*tg, "--help"])[0])
    load1 = os.getloadavg()
    res = {
        "pair_bytes": size,
        "pair_gib": size / 2**30,
        "raw_scan_s": min(raw),
        "compare_no_spectral_s": min(cmp_),
        "ratio": min(cmp_) / min(raw),
        "cli_start_s": min(start),
        "compare_units_s": min(units),
        "all": {"raw": raw, "compare": cmp_, "cli_start": start, "units": units},
        "loadavg_before": load0,
        "loadavg_after": load1,
        "build": built,
    }
    print(f"pair: {size / 2**30:.2f} GiB bf16 (page cache warm), best of {args.repeat}")
    print(f"raw NumPy scan (subprocess)         {res['raw_scan_s']:7.2f} s")
    print(
        f"threegate compare --no-spectral      {res['compare_no_spectral_s']:7.2f} s  ({res['ratio']:.2f}x the scan)"
    )
    print(
        f"  of which CLI start (threegate --help) {res['cli_start_s']:5.2f} s, tensor units {res['compare_units_s']:.2f} s"
    )
    print(
        f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

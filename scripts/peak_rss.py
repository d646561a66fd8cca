"""Run a command and report the peak of the summed resident memory of it and all its descendants.

    python scripts/peak_rss.py [--interval 0.5] [--json out.json] -- make test

`/usr/bin/time` reports the largest single process; a pytest-xdist run's memory is its workers together, so this
samples /proc every `--interval` seconds and sums VmRSS over the process tree. Exit status is the command's.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(pid))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    tree, todo, total = _children(), [root], 0
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo += tree.get(pid, [])
    return total / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument("--json", default=None)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give a command after --")
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(args.interval)
    out = {
        "command": " ".join(cmd),
        "returncode": proc.returncode,
        "wall_seconds": time.perf_counter() - start,
        "peak_tree_rss_mb": peak,
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out), file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

"""Re-run the first steps of a committed `threegate train` run from its run.json and compare the records.

    python scripts/replay_run.py reports/smollm2/grpo-s0 --steps 3 --out /tmp/replay-grpo-s0

Builds the run's command line from `run.json` (the first command), with `--steps N`, no evaluation, no gates and a
fresh `--out`, runs it in this process, and prints for every logged field of the first N records the largest
relative difference against the committed `log.jsonl` (timings aside). Discrete fields (reward, accuracy,
response lengths) must agree exactly for the replay to have sampled the same completions. Exit 1 if any field
differs by more than `--rtol`.
"""

import argparse
import json
import sys
from pathlib import Path

TIMINGS = {"seconds", "rollout_seconds", "update_seconds"}
SKIP = {
    "command",
    "func",
    "debug",
    "out",
    "resume",
    "steps",
    "gates",
    "no_eval",
    "no_progress",
    "algo",
}


def command_line(argv: dict, steps: int, out: str) -> list[str]:
    cmd = ["train", argv["algo"]]
    for key, value in argv.items():
        if key in SKIP or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return [*cmd, "--steps", str(steps), "--no-eval", "--no-progress", "--out", out]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override an argv key"
    )
    args = ap.parse_args()
    argv = json.loads((args.run / "run.json").read_text())["argv"]
    for kv in args.set:
        k, v = kv.split("=", 1)
        argv[k] = v
    cmd = command_line(argv, args.steps, args.out)
    print("threegate " + " ".join(cmd), flush=True)
    from threegate.cli import main as cli

    rc = cli(cmd)
    if rc:
        return rc
    old = [json.loads(s) for s in (args.run / "log.jsonl").read_text().splitlines() if s.strip()]
    new = [json.loads(s) for s in (Path(args.out) / "log.jsonl").read_text().splitlines() if s]
    worst = {}
    for a, b in zip(old[: args.steps], new, strict=False):
        for k in sorted(set(a) | set(b)):
            if k in TIMINGS:
                continue
            if k not in a or k not in b:
                worst[k] = float("inf")
                continue
            x, y = float(a[k]), float(b[k])
            d = abs(x - y) / max(abs(x), abs(y), 1e-12) if x != y else 0.0
            worst[k] = max(worst.get(k, 0.0), d)
    for k, d in sorted(worst.items()):
        print(f"{k:>18}  max rel diff {d:.3g}")
    bad = {k: d for k, d in worst.items() if d > args.rtol}
    print(f"replay of {args.run}: {len(new)} steps, {len(bad)} fields beyond rtol {args.rtol}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

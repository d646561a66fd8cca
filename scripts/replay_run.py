"""Re-run the first steps of a committed `threegate train` run from its run.json and compare the records.

    python scripts/replay_run.py reports/smollm2/grpo-s0 --steps 3 --out /tmp/replay-grpo-s0

Reads the run's `RunSpec` from `run.json` (`RunSpec.from_json`; a run.json that predates specs holds the command's
options, read the same way), cuts it to N steps without evaluation or gates, runs it with `run_experiment` into a
fresh `--out`, and prints for every logged field of the first N records the largest
relative difference against the committed `log.jsonl` (timings aside). Discrete fields (reward, accuracy,
response lengths) must agree exactly for the replay to have sampled the same completions. Exit 1 if any field
differs by more than `--rtol`.
"""

import argparse
import json
import sys
from pathlib import Path

TIMINGS = {"seconds", "rollout_seconds", "update_seconds"}


def replay_spec(run: Path, steps: int, overrides: list[str]):
    """The run's `RunSpec` (from run.json: its spec, or the options of a run.json that predates specs, with
    `KEY=VALUE` overrides of those options), cut to `steps` steps without evaluation, gates or checkpoints."""
    import dataclasses

    from threegate.lm.run import RunSpec, spec_from_options

    record = json.loads((run / "run.json").read_text())
    if overrides:
        if "argv" not in record:
            raise SystemExit("--set overrides a command option; this run.json holds a spec only")
        argv = dict(record["argv"])
        for kv in overrides:
            k, v = kv.split("=", 1)
            argv[k] = v
        spec = spec_from_options(**argv)
    else:
        spec = RunSpec.from_json(run / "run.json")
    return dataclasses.replace(
        spec,
        train=dataclasses.replace(spec.train, steps=steps),
        eval=dataclasses.replace(spec.eval, enabled=False),
        gates=0,
        checkpoints=0,
        checkpoint_every=0,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override an option"
    )
    args = ap.parse_args()
    spec = replay_spec(args.run, args.steps, args.set)
    print(spec.to_json(), flush=True)
    from threegate.lm.run import run_experiment

    run_experiment(spec, args.out)
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
